"""The supervisor: queued runs and jobs into OS processes, and the processes' fate back into statuses.

One per database (an flock on `<db>.supervisor.lock` elects it). Each run is its own session
(`python -m alto.train RUN_ID --db PATH`, or `python -m alto.command ...`, which becomes the run's
own command from its preset), so it outlives the app or worker that started it; a
later supervisor adopts such runs by pid. The run process records its own normal endings
(finished, failed, diverged, cancelled); the supervisor records what a dead process cannot:
`crashed`, `failed` before the run could record it, and `stalled` while the heartbeat is late.

Background analysis jobs (the `jobs` table, e.g. flatness) go through the same path
(`python -m <JOB_MODULES[kind]> JOB_ID --db PATH`) and share the slots with runs; being short, a
queued job takes the next free slot before queued runs. What differs between the two is one
`Kind` record each, RUN and JOB: jobs have no heartbeat, so they never stall.

On a machine without GPUs both are forked from a warm fork server (alto.runner.spawn) that has
imported torch and the engine once, so a run starts in a fraction of a second; its process is
the same `python -m alto.train RUN_ID --db PATH` in every respect the supervisor relies on.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from alto import paths
from alto.access.tokens import EDITOR_ENV, VIEWER_ENV
from alto.command import run_argv
from alto.store import Store

from .spawn import OFF_ENV as FORK_SERVER_OFF_ENV
from .spawn import ChildProcess, ForkServerSpawn, Spawn, spawn_process

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
ERROR_CHARS = 4000
StatusCallback = Callable[[dict, str | None, str], None]  # (run, old status, new status)
JOB_MODULES = {"flatness": "alto.probes.flatness_job"}  # job kind -> module run as its process


@dataclass(frozen=True)
class Kind:
    """What differs between supervising a run and a job; everything else is one path."""

    noun: str                                    # "run" / "job": messages, log files, thread names
    unfinished: tuple[str, ...]                  # statuses whose process should be alive
    heartbeat: bool                              # a late heartbeat marks it `stalled`
    argv: Callable[[dict, str, str], list[str]]  # (row, db path, python) -> command; ValueError: cannot run
    module: Callable[[dict], str]                # the module its command line names (see process_alive)
    whole_machine: Callable[[dict], bool]        # uses every GPU (torchrun), not its slot's one
    get: Callable[..., dict]                     # the Store's methods for its table
    select: Callable[..., list[dict]]
    claim_next: Callable[..., dict | None]
    update: Callable[..., None]
    update_if: Callable[..., bool]


def _job_argv(job: dict, db_path: str, python: str) -> list[str]:
    module = JOB_MODULES.get(job["kind"])
    if module is None:
        raise ValueError(f"unknown job kind {job['kind']!r}; known: {', '.join(JOB_MODULES)}")
    return [python, "-m", module, str(job["id"]), "--db", db_path]


RUN = Kind(
    noun="run", unfinished=("running", "stalled"), heartbeat=True,
    argv=lambda run, db_path, python: run_argv(run["id"], db_path, run.get("config") or {}, python),
    module=lambda run: "alto.train",
    whole_machine=lambda run: int((run.get("config") or {}).get("nproc_per_node") or 1) > 1,
    get=Store.get_run, select=Store.list_runs, claim_next=Store.claim_next_queued,
    update=Store.update_run, update_if=Store.update_run_if,
)
JOB = Kind(
    noun="job", unfinished=("running",), heartbeat=False, argv=_job_argv,
    module=lambda job: JOB_MODULES.get(job["kind"], job["kind"]),
    whole_machine=lambda job: False,
    get=Store.get_job, select=Store.list_jobs, claim_next=Store.claim_next_job,
    update=Store.update_job, update_if=Store.update_job_if,
)

# Children of supervisors that were stopped in this process: still reaped by any later tick,
# so a long-lived app never collects zombies.
_orphans: list[ChildProcess] = []
_started: weakref.WeakSet = weakref.WeakSet()  # supervisors whose loop thread was started
_orphans_lock = threading.Lock()


@dataclass
class _Child:
    process: ChildProcess
    gpu: str | None


def _gpu_ids() -> list[str]:
    """CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries ([] without CUDA)."""
    if not Path("/proc/driver/nvidia").exists() and shutil.which("nvidia-smi") is None:
        return []  # no NVIDIA driver: skip importing torch (seconds) just to count zero GPUs
    try:
        import torch
        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA stack means CPU slots
        return []
    if count == 0:
        return []
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return visible[:count] if len(visible) >= count else [str(i) for i in range(count)]


_boot_time: float | None = None


def _process_start(fields: list[str]) -> float:
    """Epoch start time of a process from its /proc stat fields (after the command name)."""
    global _boot_time
    if _boot_time is None:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                _boot_time = float(line.split()[1])
    return (_boot_time or 0.0) + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def process_alive(pid: int | None, run_id: int, started_at: float | None = None, *,
                  module: str = "alto.train") -> bool:
    """Whether `pid` is still the live process of run `run_id` (not a zombie, not a reused pid).

    A match is a process whose command line holds `module` and the run (or job) id, or one that
    already existed when the run started (`alto run` trains in its own process).
    """
    if not pid:
        return False
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # no procfs (macOS): existence is all we can check
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (proc / "stat").read_text()
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return False
    if module.encode() in argv and str(run_id).encode() in argv:
        return True
    return started_at is not None and _process_start(fields) <= started_at + 1.0


def _cuda_of(pid: int | None) -> str | None:
    """CUDA_VISIBLE_DEVICES of a running process (to know which GPU an adopted run holds)."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"CUDA_VISIBLE_DEVICES="):
            return item.split(b"=", 1)[1].decode(errors="replace")
    return None


def _child_env(gpu: str | None) -> dict[str, str]:
    """Environment of a run or job process: unbuffered output, one thread unless the config
    says otherwise (runs set torch threads themselves), its GPU when it has one, and none of the
    dashboard's access tokens (a run has no use for them)."""
    env = {k: v for k, v in os.environ.items() if k not in (EDITOR_ENV, VIEWER_ENV)}
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def log_tail(path: str | Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a run's log ("" if there is none)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _orphaned(process: ChildProcess) -> bool:
    """A forked child whose fork server ended first: nobody can report its exit status now."""
    return getattr(process, "orphaned", False)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class Supervisor:
    """Launches queued runs and jobs while a slot is free and keeps their statuses true to their processes.

    `db` is a database path or an open Store (then shared with the caller). `spawn` starts each
    child process (see Spawn); by default a ForkServerSpawn when `python` is this interpreter,
    no GPU is used and ALTO_FORK_SERVER is not "0", else spawn_process. GPU runs start as new
    processes: forking them is safe only while nothing touched CUDA in the server, which no test
    on a GPU has checked yet, and a later supervisor reads an adopted run's GPU from its
    /proc/PID/environ, which in a forked child still shows the server's.
    """

    def __init__(
        self,
        db: str | Path | Store,
        *,
        slots: int | None = None,
        heartbeat_timeout_s: float = 60.0,
        poll_s: float = 0.5,
        grace_s: float = 5.0,
        log_dir: Path | None = None,
        python: str = sys.executable,
        on_change: StatusCallback | None = None,
        spawn: Spawn | None = None,
    ) -> None:
        self.store = db if isinstance(db, Store) else Store(db)
        self.db_path = self.store.path
        self.gpus = _gpu_ids()
        self.slots = slots if slots is not None else max(1, len(self.gpus))
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.log_dir = Path(log_dir) if log_dir else paths.log_dir(self.db_path)
        self.python = python
        self.on_change = on_change
        if spawn is None:
            forking = python == sys.executable and not self.gpus and os.environ.get(FORK_SERVER_OFF_ENV) != "0"
            spawn = ForkServerSpawn(python, _child_env(None)) if forking else spawn_process
        self.spawn = spawn
        self.lock_path = paths.lock_path(self.db_path)
        self._lock_fd: int | None = None
        self._children: dict[tuple[str, int], _Child] = {}  # (kind noun, id) -> the process this instance started
        self._cancels: dict[tuple[str, int], threading.Thread] = {}
        self._mutex = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watched: dict[int, str] = {}

    # -- leadership and the loop ---------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._lock_fd is not None

    def try_lead(self) -> bool:
        """Take the database's supervisor lock if nobody holds it; True if this instance has it."""
        if self._lock_fd is not None:
            return True
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def start(self) -> bool:
        """Run the loop in a daemon thread; True if this instance leads.

        While another supervisor leads, the loop only waits for its lock (claims nothing) and
        takes over once it is freed, e.g. when `alto worker` stops.
        """
        leader = self.try_lead()
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.serve, name="alto-supervisor", daemon=True)
            self._thread.start()
            _started.add(self)
        return leader

    @staticmethod
    def stop_all() -> None:
        """Stop every supervisor loop started in this process (their runs keep running)."""
        for supervisor in list(_started):
            supervisor.stop()

    def serve(self) -> None:
        """Tick every poll_s until request_stop()/stop() (the loop of start() and `alto worker`)."""
        if isinstance(self.spawn, ForkServerSpawn):
            try:
                self.spawn.warm_up()  # it imports while nothing is queued yet
            except OSError:
                log.exception("could not start the fork server; runs start as new processes")
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a busy or briefly unreadable database must not end the loop
                log.exception("supervisor tick failed for %s", self.db_path)
            self._stop.wait(self.poll_s)

    def request_stop(self) -> None:
        """Ask serve() to return after the current tick (safe from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        """Stop the loop and give up the lock; running children keep running."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)
        self._thread = None
        with self._mutex:
            with _orphans_lock:
                _orphans.extend(c.process for c in self._children.values())
            self._children.clear()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing drops the flock
                self._lock_fd = None

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tick(self) -> None:
        """One iteration: reconcile unfinished runs and jobs, then launch queued jobs and runs
        into free slots (jobs first: they take seconds)."""
        if not self.try_lead():
            return
        with _orphans_lock:
            _orphans[:] = [p for p in _orphans if p.poll() is None and not _orphaned(p)]
        with self._mutex:
            busy = self._reconcile(RUN) + self._reconcile(JOB)
            for kind in (JOB, RUN):
                while len(busy) < self.slots:
                    row = kind.claim_next(self.store)
                    if row is None:
                        break
                    gpu = self._pick_gpu(busy)
                    if self._launch(kind, row, gpu):
                        busy.append(gpu)
        if self.on_change is not None:
            self._report_changes()

    # -- reconcile -----------------------------------------------------------------

    def _reconcile(self, kind: Kind) -> list[str | None]:
        """Fix statuses of dead or silent runs (or jobs); returns the GPU (or None) of each live one."""
        mine = {row_id: child for (noun, row_id), child in self._children.items() if noun == kind.noun}
        for row_id, child in list(mine.items()):
            child.process.poll()  # reaps: no zombies
            if _orphaned(child.process):  # follow it by pid, as after a restart
                del mine[row_id], self._children[(kind.noun, row_id)]
        busy: list[str | None] = []
        now = time.time()
        for row in kind.select(self.store, status=list(kind.unfinished)):
            child = mine.get(row["id"])
            if child is not None:
                alive = child.process.returncode is None
            else:
                alive = process_alive(row["pid"], row["id"], row["started_at"], module=kind.module(row))
            if alive:
                busy.append(child.gpu if child else (_cuda_of(row["pid"]) if self.gpus else None))
                if kind.heartbeat:
                    self._check_heartbeat(kind, row, now)
            elif self._cancelling(kind, row["id"]):
                continue  # its cancel thread records the ending (and whether it had to kill)
            elif child is not None or row["pid"] or self._silent(row, now):
                self._record_death(kind, row, child, now)
        # One that has recorded its end frees its slot even while its process is still exiting:
        # the next run spends its first seconds importing, not computing.
        for row_id, child in mine.items():
            if child.process.returncode is not None:
                del self._children[(kind.noun, row_id)]
        return busy

    def _cancelling(self, kind: Kind, row_id: int) -> bool:
        waiter = self._cancels.get((kind.noun, row_id))
        return waiter is not None and waiter.is_alive()

    def _silent(self, row: dict, now: float) -> bool:
        """Claimed without a pid for longer than the heartbeat timeout: its process never started."""
        beat = row.get("heartbeat_at") or row["started_at"] or 0.0
        return now - beat > self.heartbeat_timeout_s

    def _check_heartbeat(self, kind: Kind, row: dict, now: float) -> None:
        beat = row["heartbeat_at"] or row["started_at"] or now
        late = now - beat > self.heartbeat_timeout_s
        if late and row["status"] == "running":
            kind.update_if(self.store, row["id"], ("running",), status="stalled")
        elif not late and row["status"] == "stalled":
            kind.update_if(self.store, row["id"], ("stalled",), status="running")

    def _record_death(self, kind: Kind, row: dict, child: _Child | None, now: float) -> None:
        noun, code = kind.noun, (child.process.returncode if child else None)
        if code is not None and code > 0:
            status, error = "failed", f"the {noun} process exited with code {code} before recording a result"
        elif code is not None and code < 0:
            status = "crashed"
            error = f"the {noun} process was killed by {_signal_name(code)}"
            if code == -signal.SIGKILL:
                error += " (the kernel's out-of-memory killer sends SIGKILL too)"
        elif code == 0:
            status, error = "crashed", f"the {noun} process exited without recording a result"
        elif row["pid"]:
            status = "crashed"
            error = (f"the {noun} process (pid {row['pid']}) is gone without recording a result: "
                     "killed, out of memory, or the machine restarted")
        else:
            status, error = "crashed", f"the {noun} was claimed but its process never started"
        tail = log_tail(row["log_path"])
        if tail:
            error += f"\n\nLast lines of {row['log_path']}:\n{tail}"[-(ERROR_CHARS - len(error)):]
        if kind.update_if(self.store, row["id"], kind.unfinished, status=status, error=error, finished_at=now):
            log.info("%s %s: %s (%s)", noun, row["id"], status, error.splitlines()[0])

    # -- launch --------------------------------------------------------------------

    def _pick_gpu(self, busy: list[str | None]) -> str | None:
        if not self.gpus:
            return None
        return min(self.gpus, key=lambda g: (busy.count(g), self.gpus.index(g)))

    def _open_log(self, log_path: Path, argv: list[str]) -> BinaryIO:
        """The child's log file (appended), headed by the time and the command."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_path, "ab")
        out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        out.flush()
        return out

    def _launch(self, kind: Kind, row: dict, gpu: str | None) -> bool:
        """Start the process of a claimed run or job; what cannot be started is failed."""
        row_id, log_path = row["id"], self.log_dir / f"{kind.noun}_{row['id']}.log"
        argv: list[str] = []
        try:
            argv = kind.argv(row, str(self.db_path), self.python)
            with self._open_log(log_path, argv) as out:
                process = self.spawn(argv, _child_env(None if kind.whole_machine(row) else gpu), out)
        except (OSError, ValueError) as err:
            error = f"could not start the {kind.noun} process {argv}: {err}" if argv else str(err)
            kind.update_if(self.store, row_id, kind.unfinished, status="failed", finished_at=time.time(), error=error)
            return False
        self._children[(kind.noun, row_id)] = _Child(process, gpu)
        try:  # the child leads its own process group: pgid == pid
            kind.update(self.store, row_id, pid=process.pid, pgid=process.pid, log_path=str(log_path),
                        started_at=time.time())
        except KeyError:  # deleted meanwhile; the child finds no row and exits
            pass
        log.info("%s %s: started pid %s%s", kind.noun, row_id, process.pid, f" on GPU {gpu}" if gpu else "")
        return True

    # -- cancel --------------------------------------------------------------------

    def cancel(self, row_id: int, kind: Kind = RUN) -> bool:
        """Cancel a queued run (or job, with kind=JOB) now, or stop a running one: SIGTERM, then
        SIGKILL after grace_s.

        Returns at once (the stopping happens in a thread); False if it had already ended.
        Works without being the leader: it signals the process group recorded in the database.
        """
        if kind.update_if(self.store, row_id, ("queued",), status="cancelled", finished_at=time.time()):
            return True
        if kind.get(self.store, row_id)["status"] not in kind.unfinished:
            return False
        key = (kind.noun, row_id)
        with self._mutex:  # the reconcile loop sees the thread as soon as it is registered
            if self._cancelling(kind, row_id):
                return True
            waiter = threading.Thread(target=self._terminate, args=(kind, row_id, self._children.get(key)),
                                      name=f"alto-cancel-{kind.noun}-{row_id}", daemon=True)
            self._cancels = {k: t for k, t in self._cancels.items() if t.is_alive()}
            self._cancels[key] = waiter
            waiter.start()
        return True

    def _terminate(self, kind: Kind, row_id: int, child: _Child | None) -> None:
        """Stop the process group, then record `cancelled` (the one writer of a cancel's ending)."""
        try:
            pgid = child.process.pid if child is not None else self._live_pgid(kind, row_id)
            error = "cancelled on request"
            if pgid is not None:
                _signal_group(pgid, signal.SIGTERM)
                _signal_group(pgid, signal.SIGCONT)  # a stopped process handles SIGTERM only once continued
                if not self._wait_gone(pgid, child, self.grace_s):
                    _signal_group(pgid, signal.SIGKILL)
                    self._wait_gone(pgid, child, 2.0)
                    error = (f"cancelled: the {kind.noun} did not stop within {self.grace_s:g} s of SIGTERM "
                             "and was killed")
            # A process that recorded its own ending keeps it. `crashed` too: another supervisor
            # may have seen the stopped process first.
            kind.update_if(self.store, row_id, (*kind.unfinished, "crashed"), status="cancelled",
                           finished_at=time.time(), error=error)
        except Exception:  # noqa: BLE001 - a thread has nobody to raise to
            log.exception("cancelling %s %s failed", kind.noun, row_id)

    def _live_pgid(self, kind: Kind, row_id: int) -> int | None:
        """The process group of another supervisor's child, once it is recorded and verified alive."""
        deadline = time.monotonic() + 10.0
        while True:
            row = kind.get(self.store, row_id)
            if row["status"] not in kind.unfinished:
                return None
            if row["pid"] and row["pgid"]:
                alive = process_alive(row["pid"], row_id, row["started_at"], module=kind.module(row))
                return row["pgid"] if alive else None
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)  # just claimed: the launcher records the pid in a moment

    @staticmethod
    def _wait_gone(pgid: int, child: _Child | None, timeout: float) -> bool:
        """Wait until no process of the group is left; True if it went within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            if child is not None:
                child.process.poll()  # reap the leader, or its zombie keeps the group alive
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    # -- helpers for the UI and the worker -----------------------------------------

    def active_runs(self) -> list[dict]:
        """Runs whose process is running or stalled, oldest first."""
        return self.store.list_runs(status=list(RUN.unfinished))

    def _report_changes(self) -> None:
        """Call on_change(run, old, new) for every status change seen since the last tick."""
        current = {r["id"]: r for r in self.store.list_runs(status=["queued", *RUN.unfinished])}
        for run_id in self._watched.keys() - current.keys():
            try:
                current[run_id] = self.store.get_run(run_id)
            except KeyError:  # deleted
                continue
        for run_id, run in current.items():
            old = self._watched.get(run_id)
            if old != run["status"]:
                self.on_change(run, old, run["status"])
        self._watched = {i: r["status"] for i, r in current.items()
                         if r["status"] in ("queued", *RUN.unfinished)}
