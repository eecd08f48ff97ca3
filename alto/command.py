"""A preset's own command: the user's training script, started by the lab once per run.

    command = ["python", "train.py", "--optimizer", "{optimizer}", "--lr", "{lr}", "--seed", "{seed}"]

An argv list, never a shell string, and read only from a preset file. Each run fills the
placeholders from its own row, runs in the preset file's folder with ALTO_DB and ALTO_RUN_ID in
its environment (so `alto.track()` inside it records into that run), and a leading "python" is
the lab's own interpreter. The supervisor and `alto run` start `python -m alto.command RUN_ID
--db PATH`, which replaces itself with the command: the process keeps its pid, so cancelling and
crash detection work as for any run. (This module stays light: it runs before the user's script.)
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time

PLACEHOLDERS = ("optimizer", "lr", "seed")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def check_command(command: object) -> list[str]:
    """`command` as a list of arguments; ValueError naming `command` unless it is a non-empty list
    of non-empty strings whose {placeholders} are all known."""
    if not isinstance(command, (list, tuple)) or not command:
        raise ValueError(f"command must be a non-empty list of arguments (never a shell string), got {command!r}")
    for arg in command:
        if not isinstance(arg, str) or not arg or "\0" in arg:
            raise ValueError(f"command arguments must be non-empty strings, got {arg!r}")
        for name in _PLACEHOLDER.findall(arg):
            if name not in PLACEHOLDERS:
                raise ValueError(f"command: unknown placeholder {{{name}}} in {arg!r}; "
                                 f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    return list(command)


def fill(command: list[str], *, optimizer: str, lr: float, seed: int, python: str) -> list[str]:
    """The argv of one run: placeholders replaced, a leading "python" made the lab's interpreter."""
    values = {"optimizer": str(optimizer), "lr": repr(float(lr)), "seed": str(int(seed))}
    argv = [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in command]
    if command[0] == "python":
        return [python, *argv[1:]]
    return [*argv]  # (a list literal: the security scan checks that every command is an argv list)


def run_argv(run_id: int, db_path: str, config: dict, python: str) -> list[str]:
    """The process that runs a stored run: its preset's command (through this module), else the
    lab's training loop, plain or under torchrun."""
    if config.get("command"):
        return [python, "-m", "alto.command", str(run_id), "--db", str(db_path)]
    from alto.train.distributed import launch_argv
    return launch_argv(run_id, db_path, config, python)


def main(argv: list[str] | None = None) -> int:
    """`python -m alto.command RUN_ID --db PATH`: become run RUN_ID's command."""
    from alto.store import Store

    parser = argparse.ArgumentParser(prog="python -m alto.command")
    parser.add_argument("run_id", type=int)
    parser.add_argument("--db", required=True)
    args = parser.parse_args(argv)
    store = Store(args.db)
    run = store.get_run(args.run_id)
    config = run["config"] or {}
    command = fill(check_command(config.get("command")), optimizer=run["optimizer"], lr=run["lr"],
                   seed=run["seed"], python=sys.executable)
    env = {**os.environ, "ALTO_DB": str(store.path), "ALTO_RUN_ID": str(args.run_id)}
    workdir = config.get("workdir") or os.getcwd()
    print(f"run {args.run_id}: {command} in {workdir}", flush=True)
    try:
        os.chdir(workdir)
        os.execvpe(command[0], command, env)
    except OSError as err:
        store.update_run_if(args.run_id, ("queued", "running", "stalled"), status="failed", finished_at=time.time(),
                            error=f"command: cannot start {command[0]!r} in {workdir}: {err}")
        print(f"run {args.run_id}: cannot start {command[0]!r}: {err}", file=sys.stderr, flush=True)
        return 1
    return 0  # not reached: execvpe does not return


if __name__ == "__main__":
    sys.exit(main())
