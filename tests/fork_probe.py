"""Run by the fork server in tests (`-m fork_probe ARGS`): prints what a forked child looks like."""
import json
import os
import sys
import time
from pathlib import Path

import torch

if sys.argv[1:2] == ["exit"]:
    sys.exit(int(sys.argv[2]) if sys.argv[2].isdigit() else sys.argv[2])
if sys.argv[1:2] == ["raise"]:
    raise RuntimeError("the probe failed on purpose")
if sys.argv[1:2] == ["sleep"]:
    print("sleeping", flush=True)
    time.sleep(60)
print(json.dumps({
    "argv": sys.argv[1:], "cwd": os.getcwd(), "probe_env": os.environ.get("PROBE_ENV"),
    "session_leader": os.getsid(0) == os.getpid(), "pgid": os.getpgid(0), "pid": os.getpid(),
    "threads": torch.get_num_threads(), "name": __name__,
    "cmdline": Path("/proc/self/cmdline").read_bytes().rstrip(b"\0").split(b"\0")[-3:],
}, default=lambda b: b.decode()), flush=True)
