"""The supervisor: queued runs into OS processes, and the processes' fate back into run statuses.

One per database (an flock on `<db>.supervisor.lock` elects it). Each run is its own session
(`python -m alto.train RUN_ID --db PATH`), so it outlives the app or worker that started it; a
later supervisor adopts such runs by pid. The run process records its own normal endings
(finished, failed, diverged, cancelled); the supervisor records what a dead process cannot:
`crashed`, `failed` before the run could record it, and `stalled` while the heartbeat is late.

Background analysis jobs (the `jobs` table, e.g. flatness) share the slots with runs and are
launched the same way (`python -m <JOB_MODULES[kind]> JOB_ID --db PATH`); being short, a queued job
takes the next free slot before queued runs. Jobs have no heartbeat: a dead job process that did
not record its end becomes `crashed` or `failed`, like a run.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alto import paths
from alto.store import Store
from alto.train.distributed import launch_argv

log = logging.getLogger(__name__)

UNFINISHED = ("running", "stalled")
LOG_TAIL_LINES = 40
ERROR_CHARS = 4000
StatusCallback = Callable[[dict, str | None, str], None]  # (run, old status, new status)
JOB_MODULES = {"flatness": "alto.probes.flatness_job"}  # job kind -> module run as its process

# Children of supervisors that were stopped in this process: still reaped by any later tick,
# so a long-lived app never collects zombies.
_orphans: list[subprocess.Popen] = []
_started: weakref.WeakSet = weakref.WeakSet()  # supervisors whose loop thread was started
_orphans_lock = threading.Lock()


@dataclass
class _Child:
    popen: subprocess.Popen
    gpu: str | None
    cancelled: bool = False


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
    says otherwise (runs set torch threads themselves), and its GPU when it has one."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
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
    """Launches queued runs while a slot is free and keeps run statuses true to their processes.

    `db` is a database path or an open Store (then shared with the caller).
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
    ) -> None:
        # Pass the process's Store when there is one: Store() reads the file's header with
        # open()/close(), and closing any descriptor of the file drops the POSIX locks that
        # the process's open SQLite connections hold on it.
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
        self.lock_path = paths.lock_path(self.db_path)
        self._lock_fd: int | None = None
        self._children: dict[int, _Child] = {}
        self._job_children: dict[int, _Child] = {}
        self._cancels: dict[int, threading.Thread] = {}
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
                _orphans.extend(c.popen for c in [*self._children.values(), *self._job_children.values()])
            self._children.clear()
            self._job_children.clear()
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
            _orphans[:] = [p for p in _orphans if p.poll() is None]
        with self._mutex:
            busy = self._reconcile() + self._reconcile_jobs()
            while len(busy) < self.slots:
                job = self.store.claim_next_job()
                if job is None:
                    break
                gpu = self._pick_gpu(busy)
                if self._launch_job(job, gpu):
                    busy.append(gpu)
            while len(busy) < self.slots:
                run = self.store.claim_next_queued()
                if run is None:
                    break
                gpu = self._pick_gpu(busy)
                if self._launch(run, gpu):
                    busy.append(gpu)
        if self.on_change is not None:
            self._report_changes()

    # -- reconcile -----------------------------------------------------------------

    def _reconcile(self) -> list[str | None]:
        """Fix statuses of dead or silent runs; returns the GPU (or None) of each live run."""
        for child in self._children.values():
            child.popen.poll()  # reaps: no zombies
        busy: list[str | None] = []
        now = time.time()
        for run in self.store.list_runs(status=list(UNFINISHED)):
            run_id = run["id"]
            child = self._children.get(run_id)
            if child is not None:
                alive = child.popen.returncode is None
            else:
                alive = process_alive(run["pid"], run_id, run["started_at"])
            if alive:
                busy.append(child.gpu if child else (_cuda_of(run["pid"]) if self.gpus else None))
                self._check_heartbeat(run, now)
            elif child is not None or run["pid"] or self._silent(run, now):
                self._record_death(run, child, now)
        # A run that has recorded its end frees its slot even while its process is still exiting:
        # the next run spends its first seconds importing, not computing.
        for run_id, child in list(self._children.items()):
            if child.popen.returncode is not None:
                del self._children[run_id]
        return busy

    def _silent(self, run: dict, now: float) -> bool:
        """A running run without a pid whose heartbeat is late: claimed, never started."""
        beat = run["heartbeat_at"] or run["started_at"] or 0.0
        return now - beat > self.heartbeat_timeout_s

    def _check_heartbeat(self, run: dict, now: float) -> None:
        beat = run["heartbeat_at"] or run["started_at"] or now
        late = now - beat > self.heartbeat_timeout_s
        if late and run["status"] == "running":
            self._update_if(run["id"], ("running",), status="stalled")
        elif not late and run["status"] == "stalled":
            self._update_if(run["id"], ("stalled",), status="running")

    def _record_death(self, run: dict, child: _Child | None, now: float) -> None:
        if child is not None and child.cancelled:
            return  # the cancel thread records the ending (and whether it had to kill) once the group is gone
        run_id, tail = run["id"], log_tail(run["log_path"])
        shown = f"\n\nLast lines of {run['log_path']}:\n{tail}" if tail else ""
        code = child.popen.returncode if child else None
        if code is not None and code > 0:
            status, error = "failed", f"the run process exited with code {code} before recording a result"
        elif code is not None and code < 0:
            status = "crashed"
            error = f"the run process was killed by {_signal_name(code)}"
            if code == -signal.SIGKILL:
                error += " (the kernel's out-of-memory killer sends SIGKILL too)"
        elif code == 0:
            status, error = "crashed", "the run process exited without recording a result"
        elif run["pid"]:
            status = "crashed"
            error = (f"the run process (pid {run['pid']}) is gone without recording a result: "
                     "killed, out of memory, or the machine restarted")
        else:
            status, error = "crashed", "the run was claimed but its process never started"
        error += shown[-(ERROR_CHARS - len(error)):] if shown else ""
        if self._update_if(run_id, UNFINISHED, status=status, error=error, finished_at=now):
            log.info("run %s: %s (%s)", run_id, status, error.splitlines()[0])

    def _update_if(self, run_id: int, expected: tuple[str, ...], **fields: object) -> bool:
        return self.store.update_run_if(run_id, expected, **fields)

    # -- launch --------------------------------------------------------------------

    def _pick_gpu(self, busy: list[str | None]) -> str | None:
        if not self.gpus:
            return None
        return min(self.gpus, key=lambda g: (busy.count(g), self.gpus.index(g)))

    def _open_log(self, log_path: Path, argv: list[str]):
        """The child's log file (appended), headed by the time and the command."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_path, "ab")
        out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        out.flush()
        return out

    def _launch(self, run: dict, gpu: str | None) -> bool:
        """Start the process of a claimed run; a launch error fails the run."""
        run_id = run["id"]
        log_path = self.log_dir / f"run_{run_id}.log"
        config = run.get("config") or {}
        # a torchrun run (several processes) uses every GPU of the machine, not its slot's one
        env = _child_env(gpu if (config.get("nproc_per_node") or 1) <= 1 else None)
        argv = launch_argv(run_id, str(self.db_path), config, self.python)
        try:
            with self._open_log(log_path, argv) as out:
                popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as err:
            self._update_if(run_id, UNFINISHED, status="failed", finished_at=time.time(),
                            error=f"could not start the run process {argv}: {err}")
            return False
        self._children[run_id] = _Child(popen, gpu)
        try:  # with a new session the child leads its own process group: pgid == pid
            self.store.update_run(run_id, pid=popen.pid, pgid=popen.pid, log_path=str(log_path),
                                  started_at=time.time())
        except KeyError:  # deleted meanwhile; the child finds no run and exits
            pass
        log.info("run %s: started pid %s%s", run_id, popen.pid, f" on GPU {gpu}" if gpu else "")
        return True

    # -- jobs ----------------------------------------------------------------------

    def _reconcile_jobs(self) -> list[str | None]:
        """Record dead job processes (crashed / failed); returns the GPU (or None) of each live job."""
        for child in self._job_children.values():
            child.popen.poll()
        busy: list[str | None] = []
        now = time.time()
        for job in self.store.list_jobs(status="running"):
            child = self._job_children.get(job["id"])
            if child is not None:
                alive = child.popen.returncode is None
            else:
                module = JOB_MODULES.get(job["kind"], job["kind"])
                alive = process_alive(job["pid"], job["id"], job["started_at"], module=module)
            if alive:
                busy.append(child.gpu if child else (_cuda_of(job["pid"]) if self.gpus else None))
            elif child is not None or job["pid"] or now - (job["started_at"] or 0.0) > self.heartbeat_timeout_s:
                self._record_job_death(job, child, now)
        for job_id, child in list(self._job_children.items()):
            if child.popen.returncode is not None:
                del self._job_children[job_id]
        return busy

    def _record_job_death(self, job: dict, child: _Child | None, now: float) -> None:
        tail = log_tail(job["log_path"])
        shown = f"\n\nLast lines of {job['log_path']}:\n{tail}" if tail else ""
        code = child.popen.returncode if child else None
        if child is not None and child.cancelled:
            status, error = "cancelled", "cancelled: the job process was stopped before it could record it"
        elif code is not None and code > 0:
            status, error = "failed", f"the job process exited with code {code} before recording a result"
        elif code is not None and code < 0:
            status, error = "crashed", f"the job process was killed by {_signal_name(code)}"
        elif code == 0:
            status, error = "crashed", "the job process exited without recording a result"
        elif job["pid"]:
            status, error = "crashed", f"the job process (pid {job['pid']}) is gone without recording a result"
        else:
            status, error = "crashed", "the job was claimed but its process never started"
        error += shown[-(ERROR_CHARS - len(error)):] if shown else ""
        if self._update_job_if(job["id"], ("running",), status=status, error=error, finished_at=now):
            log.info("job %s: %s (%s)", job["id"], status, error.splitlines()[0])

    def _update_job_if(self, job_id: int, expected: tuple[str, ...], **fields: object) -> bool:
        return self.store.update_job_if(job_id, expected, **fields)

    def _launch_job(self, job: dict, gpu: str | None) -> bool:
        """Start the process of a claimed job; an unknown kind or a launch error fails the job."""
        job_id = job["id"]
        module = JOB_MODULES.get(job["kind"])
        if module is None:
            self._update_job_if(job_id, ("running",), status="failed", finished_at=time.time(),
                                error=f"unknown job kind {job['kind']!r}; known: {', '.join(JOB_MODULES)}")
            return False
        log_path = self.log_dir / f"job_{job_id}.log"
        env = _child_env(gpu)
        argv = [self.python, "-m", module, str(job_id), "--db", str(self.db_path)]
        try:
            with self._open_log(log_path, argv) as out:
                popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as err:
            self._update_job_if(job_id, ("running",), status="failed", finished_at=time.time(),
                                error=f"could not start the job process {argv}: {err}")
            return False
        self._job_children[job_id] = _Child(popen, gpu)
        try:
            self.store.update_job(job_id, pid=popen.pid, pgid=popen.pid, log_path=str(log_path),
                                  started_at=time.time())
        except KeyError:  # deleted meanwhile
            pass
        log.info("job %s (%s): started pid %s", job_id, job["kind"], popen.pid)
        return True

    def cancel_job(self, job_id: int) -> bool:
        """Cancel a queued job now, or stop a running one (SIGTERM, then SIGKILL after grace_s).

        Returns at once; False if the job had already ended.
        """
        if self._update_job_if(job_id, ("queued",), status="cancelled", finished_at=time.time()):
            return True
        job = self.store.get_job(job_id)
        if job["status"] != "running":
            return False
        with self._mutex:
            child = self._job_children.get(job_id)
            if child is not None:
                child.cancelled = True
        module = JOB_MODULES.get(job["kind"], job["kind"])
        pgid = child.popen.pid if child is not None else (
            job["pgid"] if process_alive(job["pid"], job_id, job["started_at"], module=module) else None)

        def stop() -> None:
            try:
                if pgid is not None:
                    _signal_group(pgid, signal.SIGTERM)
                    if not self._wait_gone(pgid, child, self.grace_s):
                        _signal_group(pgid, signal.SIGKILL)
                        self._wait_gone(pgid, child, 2.0)
                self._update_job_if(job_id, ("running", "crashed"), status="cancelled",
                                    finished_at=time.time(), error="cancelled on request")
            except Exception:  # noqa: BLE001 - a thread has nobody to raise to
                log.exception("cancelling job %s failed", job_id)

        threading.Thread(target=stop, name=f"alto-cancel-job-{job_id}", daemon=True).start()
        return True

    # -- cancel --------------------------------------------------------------------

    def cancel(self, run_id: int) -> bool:
        """Cancel a queued run now, or stop a running one (SIGTERM, then SIGKILL after grace_s).

        Returns at once (the stopping happens in a thread); False if the run had already ended.
        Works without being the leader: it signals the process group recorded in the database.
        """
        if self._update_if(run_id, ("queued",), status="cancelled", finished_at=time.time()):
            return True
        if self.store.get_run(run_id)["status"] not in UNFINISHED:
            return False
        with self._mutex:
            waiter = self._cancels.get(run_id)
            if waiter is not None and waiter.is_alive():
                return True
            child = self._children.get(run_id)
            if child is not None:
                child.cancelled = True
            waiter = threading.Thread(target=self._terminate, args=(run_id, child),
                                      name=f"alto-cancel-{run_id}", daemon=True)
            self._cancels = {i: t for i, t in self._cancels.items() if t.is_alive()}
            self._cancels[run_id] = waiter
        waiter.start()
        return True

    def _terminate(self, run_id: int, child: _Child | None) -> None:
        try:
            pgid = child.popen.pid if child is not None else self._live_pgid(run_id)
            error = None
            if pgid is not None:
                _signal_group(pgid, signal.SIGTERM)
                _signal_group(pgid, signal.SIGCONT)  # a stopped process handles SIGTERM only once continued
                if not self._wait_gone(pgid, child, self.grace_s):
                    _signal_group(pgid, signal.SIGKILL)
                    self._wait_gone(pgid, child, 2.0)
                    error = (f"cancelled: the run did not stop within {self.grace_s:g} s of SIGTERM "
                             "and was killed")
            # `crashed` too: another supervisor may have seen the killed process first.
            self._update_if(run_id, (*UNFINISHED, "crashed"), status="cancelled",
                            finished_at=time.time(), error=error)
        except Exception:  # noqa: BLE001 - a thread has nobody to raise to
            log.exception("cancelling run %s failed", run_id)

    def _live_pgid(self, run_id: int) -> int | None:
        """The process group of another supervisor's run, once it is recorded and verified alive."""
        deadline = time.monotonic() + 10.0
        while True:
            run = self.store.get_run(run_id)
            if run["status"] not in UNFINISHED:
                return None
            if run["pid"] and run["pgid"]:
                return run["pgid"] if process_alive(run["pid"], run_id, run["started_at"]) else None
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)  # just claimed: the launcher records the pid in a moment

    @staticmethod
    def _wait_gone(pgid: int, child: _Child | None, timeout: float) -> bool:
        """Wait until no process of the group is left; True if it went within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            if child is not None:
                child.popen.poll()  # reap the leader, or its zombie keeps the group alive
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

    def status_counts(self) -> dict[str, int]:
        """{status: number of runs} over the whole database."""
        rows = self.store.connection().execute("SELECT status, count(*) FROM runs GROUP BY status")
        return dict(rows.fetchall())

    def active_runs(self) -> list[dict]:
        """Runs whose process is running or stalled, oldest first."""
        return self.store.list_runs(status=list(UNFINISHED))

    def _report_changes(self) -> None:
        """Call on_change(run, old, new) for every status change seen since the last tick."""
        current = {r["id"]: r for r in self.store.list_runs(status=["queued", *UNFINISHED])}
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
                         if r["status"] in ("queued", *UNFINISHED)}
