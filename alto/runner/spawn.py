"""How the supervisor starts a run or job process: a new process, or a fork of the warm fork server.

A new interpreter spends seconds importing torch and the engine before a run's first step; the
fork server (alto.runner.forkserver) has imported them once and forks each run in milliseconds.
Either way the child leads its own session (its process group id is its pid), writes to its log,
and the handle returned has what the supervisor needs: pid, poll() and returncode.
"""
from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import BinaryIO, Protocol

logger = logging.getLogger(__name__)

OFF_ENV = "ALTO_FORK_SERVER"    # "0": start every run as a new process
COMMAND_LINE_ROOM = 512         # bytes the server's command line reserves for its children's (see set_command_line)
ANSWER_TIMEOUT_S = 30.0
WARM_UP_TIMEOUT_S = 60.0        # a server still importing after this long is given up for this start


class ChildProcess(Protocol):
    """What the supervisor needs of a started process (subprocess.Popen has it)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...


# How a child is started: (argv, environment, log file) -> a process leading its own session,
# so that its process group id is its pid. The one place to change to start children otherwise.
Spawn = Callable[[list[str], dict[str, str], BinaryIO], ChildProcess]


def spawn_process(argv: list[str], env: dict[str, str], log: BinaryIO) -> subprocess.Popen:
    """Start `argv` (a list of arguments, never a shell string) in a new session, its output
    appended to `log`."""
    return subprocess.Popen([*argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


# One fork server per (interpreter, environment) in a process, shared by its supervisors: it lives
# as long as the process, so it reaps the runs it forked also after their supervisor stopped.
_servers: dict[tuple, ForkServer] = {}
_servers_lock = threading.Lock()


class ForkServerSpawn:
    """A Spawn that forks engine processes (`PYTHON -m alto.…`) from a warm fork server and starts
    everything else (torchrun, another interpreter, any command) with spawn_process, as it does
    engine processes when the server cannot start them.

    The server is started by warm_up() or the first call (which waits for its imports, about what
    a new process would have spent), and again if it died. `server_env` is the environment it
    starts with: what an interpreter reads only at start-up (PYTHONUNBUFFERED, OMP_NUM_THREADS,
    ALTO_KEEP_FREED_MEMORY) is the server's for every forked child.
    """

    def __init__(self, python: str = sys.executable, server_env: dict[str, str] | None = None) -> None:
        self.python = python
        self.server_env = dict(os.environ if server_env is None else server_env)
        self._key = (python, tuple(sorted(self.server_env.items())))

    @property
    def server(self) -> ForkServer | None:
        """The fork server started last for this interpreter and environment (None before the first)."""
        return _servers.get(self._key)

    def warm_up(self) -> ForkServer:
        """The running fork server, started now if there is none (it imports for a few seconds)."""
        with _servers_lock:
            server = _servers.get(self._key)
            if server is None or server.gone:
                server = _servers[self._key] = ForkServer(self.python, self.server_env)
            return server

    def close(self) -> None:
        """Stop the server, if one runs (its children go on; a later call starts a new one)."""
        with _servers_lock:
            server = _servers.pop(self._key, None)
        if server is not None:
            server.close()

    def __call__(self, argv: list[str], env: dict[str, str], log: BinaryIO) -> ChildProcess:
        """Start `argv`. NoAnswer (an OSError) if the server took the request but never answered:
        the run may have started there, so it is not started a second time as a new process."""
        if is_engine_command(argv, self.python):
            try:
                server = self.warm_up()
                if server.wait_ready(WARM_UP_TIMEOUT_S):
                    return server.spawn(argv, env, log)
            except NoAnswer:
                raise
            except OSError as err:
                logger.warning("the fork server could not start %s (%s); starting a new process", argv, err)
        return spawn_process(argv, env, log)


def is_engine_command(argv: list[str], python: str) -> bool:
    """`python -m alto.<module> ...` with the server's interpreter: what the fork server may run."""
    return len(argv) >= 3 and argv[0] == python and argv[1] == "-m" and argv[2].startswith("alto.")


class NoAnswer(OSError):
    """The fork server took a request and did not answer in time; it was stopped. Whether the
    request's process started is unknown."""


class ForkServer:
    """The supervisor's end of one fork server process: requests out, starts and exit statuses in.

    Safe to use from several threads (the supervisor's loop and its cancel threads).
    """

    def __init__(self, python: str, env: dict[str, str]) -> None:
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.process = subprocess.Popen(
                [python, "-m", "alto.runner.forkserver", str(theirs.fileno()), " " * COMMAND_LINE_ROOM],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env={**env, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        self._owner = os.getpid()  # a fork of this process must not talk over the same socket
        self._lock = threading.Lock()
        self._exits: dict[int, int] = {}
        self._requests = 0  # the id of the last request; each answer names the request it answers
        self._ready = False
        self._closed = False

    @property
    def ready(self) -> bool:
        """Imports done and still serving (reads what the server said so far, never waits)."""
        self._receive(wait_s=0.0)
        return self._ready and not self.gone

    @property
    def gone(self) -> bool:
        """The server ended (or failed to import); its children run on, no longer reported."""
        return self._closed or os.getpid() != self._owner

    def wait_ready(self, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.ready and not self.gone and time.monotonic() < deadline:
            self._receive(wait_s=min(0.5, max(0.0, deadline - time.monotonic())))
        return self.ready

    def spawn(self, argv: list[str], env: dict[str, str], log: BinaryIO) -> ForkedProcess:
        """Fork `argv` in the server; its output goes to `log`. OSError if the server cannot;
        NoAnswer if it did not answer within ANSWER_TIMEOUT_S (the server is stopped then)."""
        with self._lock:
            if self.gone:
                raise OSError("the fork server is not running")
            self._requests += 1
            request = json.dumps({"id": self._requests, "argv": argv, "env": env, "cwd": os.getcwd()}).encode()
            socket.send_fds(self._sock, [request], [log.fileno()])
            answer = self._next_answer(self._requests)
            if "started" not in answer:
                raise OSError(answer["error"])
            self._exits.pop(answer["started"], None)  # a reused pid: that earlier child's end was reported already
        return ForkedProcess(answer["started"], self)

    def returncode(self, pid: int) -> int | None:
        """How the forked child `pid` ended, once the server has reported it (None before)."""
        self._receive(wait_s=0.0)
        return self._exits.get(pid)

    def close(self) -> None:
        """Stop the server (its children go on); waits for it to exit."""
        with self._lock:
            self._closed = True
            self._sock.close()
        self.process.wait()

    # -- messages ------------------------------------------------------------------

    def _next_answer(self, request_id: int) -> dict:
        """The server's answer to request `request_id` (lock held); notes reports meanwhile.

        A server too slow to answer is stopped: its late answer would otherwise be taken for the
        next request's, and the run it may have started goes unreported either way."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            message = self._read_one(max(0.0, deadline - time.monotonic()))
            if message is None and self._closed:
                raise OSError("the fork server ended")
            if message is None:
                self._stop()
                raise NoAnswer(f"the fork server did not answer within {ANSWER_TIMEOUT_S:g} s and was stopped; "
                               "the process may have started anyway")
            if message.get("id") == request_id and ("started" in message or "error" in message):
                return message
            if "started" in message:  # cannot happen with one request at a time; never a run's answer
                logger.warning("the fork server answered an earlier request late: %s", message)
            self._note(message)

    def _stop(self) -> None:
        """Stop the server now (lock held): its children lead their own sessions and go on."""
        self._closed = True
        self._sock.close()
        self.process.kill()
        self.process.wait()

    def _receive(self, wait_s: float) -> None:
        """Note every report already sent (waiting up to `wait_s` for the first)."""
        if self.gone:
            return
        with self._lock:
            message = self._read_one(wait_s)
            while message is not None:
                self._note(message)
                message = self._read_one(0.0)

    def _read_one(self, wait_s: float) -> dict | None:
        if self._closed or not select.select([self._sock], [], [], wait_s)[0]:
            return None
        try:
            data = self._sock.recv(1 << 20)
        except OSError:
            data = b""
        if not data:  # the server ended: it reports nothing more
            self._closed = True
            self._sock.close()
            self.process.poll()  # reap it
            return None
        return json.loads(data)

    def _note(self, message: dict) -> None:
        if "exited" in message:
            self._exits[message["exited"]] = message["returncode"]
        elif "ready" in message:
            self._ready = True
        elif "failed" in message:
            logger.warning("the fork server could not start; runs start as new processes:\n%s", message["failed"])


class ForkedProcess:
    """A child of the fork server, as the supervisor sees it (the server reaps it and reports)."""

    def __init__(self, pid: int, server: ForkServer) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._server = server

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.returncode(self.pid)
        return self.returncode

    @property
    def orphaned(self) -> bool:
        """Its fork server ended before reporting its end: its exit status reaches nobody now."""
        return self.poll() is None and self._server.gone
