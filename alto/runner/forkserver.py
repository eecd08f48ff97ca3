"""The fork server: one warm process that has imported torch and the engine, forking a process per run.

`python -m alto.runner.forkserver FD ROOM` is started by the supervisor's side (alto.runner.spawn),
which holds the other end of the Unix socket FD. Messages are JSON, one per datagram:

    supervisor -> server   {"id": N, "argv": [python, "-m", MODULE, ...], "env": {...}, "cwd": PATH}
                           with the child's log file descriptor attached
    server -> supervisor   {"ready": PID} once the imports are done (or {"failed": TRACEBACK});
                           {"started": PID, "id": N} or {"error": TEXT, "id": N} in answer to request N;
                           {"exited": PID, "returncode": N} when a child ends (N < 0: killed by signal -N)

Each child becomes what `python -m MODULE ...` would be: the leader of a new session, stdin from
/dev/null, stdout and stderr to its log, the request's environment, working directory and torch
threads, and its command line rewritten to the request's argv (ps and `process_alive` see the run's
own command), then MODULE runs as __main__. The server stays the children's parent: it reaps them
and reports how they ended. When the supervisor's end closes, the server exits; its children go
on (their own sessions), and init reaps them.

Fork safety: the server imports but never computes. No torch op runs here (an OpenMP or intra-op
thread pool does not survive a fork), CUDA is never touched (a child cannot use CUDA once its
parent initialised the driver), and the only other thread is pyarrow's jemalloc helper, which
jemalloc's own fork handlers take care of.
"""
from __future__ import annotations

import atexit
import importlib
import json
import os
import runpy
import select
import signal
import socket
import sys
import traceback
import warnings
from pathlib import Path

# What runs and jobs import, imported once here. torch._dynamo is what torch.optim.Optimizer
# imports when the first optimizer is built; sklearn.datasets, what the digits loader imports.
PRELOAD = ("alto.train.run", "alto.probes.flatness_job", "torch._dynamo")
PRELOAD_IF_INSTALLED = ("sklearn.datasets",)
MAX_MESSAGE = 1 << 20


def main() -> int:
    from alto.train.memory import keep_freed_memory

    keep_freed_memory()  # children inherit the allocator's settings with its state
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        preload()
    except BaseException:  # noqa: BLE001 - the supervisor falls back to plain processes and logs why
        _send(sock, {"failed": traceback.format_exc()})
        return 1
    _send(sock, {"ready": os.getpid()})
    serve(sock)
    return 0


def preload() -> None:
    """Import what every run imports, once. Raises if that touched CUDA (forking would then be unsafe)."""
    import torch

    for name in PRELOAD:
        importlib.import_module(name)
    for name in PRELOAD_IF_INSTALLED:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    from alto.optim import cpu_kernel

    for dtype in cpu_kernel.DTYPE_FLAGS:  # build or load the optimizers' CPU loop once, for every run
        cpu_kernel.unavailable_reason(dtype)
    if torch.cuda.is_initialized():
        raise RuntimeError("importing the engine initialised CUDA; forked runs could not use it")


def serve(sock: socket.socket) -> None:
    """Fork a child per request and report each child's end, until the supervisor's end closes."""
    wake_r, wake_w = os.pipe()  # SIGCHLD writes a byte here, so select() wakes for a child's end
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # Python 3.12+ warns at every fork of a process with threads; ours is jemalloc's (see above).
    warnings.filterwarnings("ignore", message=r"This process .* is multi-threaded", category=DeprecationWarning)
    try:
        while True:
            readable = select.select([sock, wake_r], [], [], 5.0)[0]
            if wake_r in readable:
                os.read(wake_r, 4096)
            _report_ended(sock)
            if sock in readable:
                message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1)
                if not message:
                    return  # the supervisor's process is gone
                request: dict = {}
                try:
                    request = json.loads(message)
                    answer = _start(request, fds[0], close_in_child=(sock.fileno(), wake_r, wake_w))
                except (OSError, ValueError, KeyError, IndexError) as err:  # a bad request, or fork failed
                    answer = {"error": f"{type(err).__name__}: {err}"}
                finally:
                    for fd in fds:
                        os.close(fd)
                _send(sock, {**answer, "id": request.get("id")})
    except (BrokenPipeError, ConnectionResetError):
        return


def _report_ended(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exited": pid, "returncode": os.waitstatus_to_exitcode(status)})


def _start(request: dict, log_fd: int, close_in_child: tuple[int, ...]) -> dict:
    """Fork the child of one request; {"started": pid} once it leads its own session."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        _become(request, log_fd, ready_w, close_in_child)  # never returns
    os.close(ready_w)
    ready = os.read(ready_r, 1)  # empty: the child died before it was set up
    os.close(ready_r)
    if not ready:
        return {"error": f"the forked process {pid} ended while it was being set up"}
    return {"started": pid}


def _become(request: dict, log_fd: int, ready_w: int, close_in_child: tuple[int, ...]) -> None:
    """In the child: turn into `python -m MODULE ...` as the request describes, run it, exit."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in close_in_child:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(devnull)
        os.close(log_fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        argv = request["argv"]
        set_command_line(argv)
        _set_threads()
        os.write(ready_w, b"1")
        os.close(ready_w)
        sys.argv = [argv[0], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as end:
        code = _exit_code(end)
    except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback, exit status 1
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _exit_code(end: SystemExit) -> int:
    """The exit status the interpreter gives a SystemExit (a message is printed and means 1)."""
    if end.code is None or isinstance(end.code, int):
        return end.code or 0
    print(end.code, file=sys.stderr)
    return 1


def _set_threads() -> None:
    """torch's CPU threads from the child's OMP_NUM_THREADS: OpenMP read the server's at its start."""
    import torch

    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))


def set_command_line(argv: list[str]) -> bool:
    """Rewrite what /proc/self/cmdline shows, within the room the original command line had.

    The kernel reads it from this process's memory between the stat fields arg_start and arg_end,
    and /proc/self/mem may write there. True if it was written (Linux only).
    """
    try:
        stat = Path("/proc/self/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        start, end = int(fields[45]), int(fields[46])  # fields 48 and 49 of proc(5)
        text = b"\0".join(a.encode() for a in argv)[:end - start - 1]
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(text.ljust(end - start, b"\0"))
        return True
    except (OSError, ValueError, IndexError):
        return False


def _send(sock: socket.socket, message: dict) -> None:
    sock.send(json.dumps(message).encode())


if __name__ == "__main__":
    sys.exit(main())
