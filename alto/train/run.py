"""Execute one stored run: status transitions around the training loop."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

import torch.distributed

from alto.paths import checkpoint_dir, default_db
from alto.store import Store

from . import distributed
from .config import RunConfig
from .loop import train


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop polls it between steps, so the run ends cleanly (cancelled)."""

    def __init__(self) -> None:
        self.stop = False

    def install(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.stop = True

    def __call__(self) -> bool:
        return self.stop


def error_text(err: BaseException) -> str:
    """An error as a failed run records it: its type and message, then its traceback's last lines."""
    tail = "".join(traceback.format_exception(type(err), err, err.__traceback__)[-6:])
    return f"{type(err).__name__}: {err}\n\n{tail}"[-4000:]


def remove_run_files(store: Store, runs: list[dict]) -> None:
    """Delete what deleted runs left on disk: their checkpoints and their log files."""
    for run in runs:
        shutil.rmtree(checkpoint_dir(store.path, run["id"]), ignore_errors=True)
        if run.get("log_path"):
            Path(run["log_path"]).unlink(missing_ok=True)


def execute_run(store: Store, run_id: int, *, progress=None, should_stop=None, dist_ctx=None) -> str:
    """Train run `run_id` from its stored config; returns the final status.

    Every outcome is recorded: finished, diverged, cancelled, or failed with the error's tail.
    A process killed outright leaves `running` behind, which the supervisor turns into `crashed`.
    """
    run = store.get_run(run_id)
    if not store.update_run_if(run_id, ("queued", "running"), status="running",
                               started_at=run.get("started_at") or time.time(), pid=os.getpid(),
                               pgid=os.getpgid(0), error=None):
        # ended before this process got to it (cancelled, or recorded failed when its start went
        # unanswered): training now would overwrite that ending
        return store.get_run(run_id)["status"]
    try:
        config = RunConfig.from_dict(run["config"])
        if config.command:
            raise ValueError(f"run {run_id} runs its preset's command, not the lab's loop: "
                             f"start it with python -m alto.command {run_id} --db PATH")
        ckpt = checkpoint_dir(store.path, run_id) if (config.checkpoint_every or config.save_final) else None

        def on_start(info: dict) -> None:
            store.update_run(run_id, total_steps=info["total_steps"], device=info["device"])
            store.set_params(run_id, {k: v for k, v in info.items()})

        with store.writer(run_id) as writer:
            writer.heartbeat()
            result = train(config, writer=writer, checkpoint_dir=ckpt, progress=progress,
                           should_stop=should_stop, on_start=on_start, dist_ctx=dist_ctx)
    except BaseException as err:  # noqa: BLE001 - every failure must be recorded, then re-raised
        store.update_run(run_id, status="failed", finished_at=time.time(), error=error_text(err))
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        return "failed"
    store.set_params(run_id, {"steps_run": result.steps, "train_s": round(result.train_s, 6),
                              "wall_s": round(result.wall_s, 3), "setup_s": round(result.setup_s, 3),
                              **{k: round(v, 4) for k, v in result.apart_s.items()}})
    store.update_run(run_id, status=result.status, finished_at=time.time(),
                     last_step=result.steps - 1 if result.steps else None, error=result.message or None)
    return result.status


def main(argv: list[str] | None = None) -> int:
    """`python -m alto.train RUN_ID [--db PATH]`: what the supervisor starts for each run."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m alto.train")
    parser.add_argument("run_id", type=int)
    parser.add_argument("--db", default=default_db())
    args = parser.parse_args(argv)
    flag = StopFlag().install()

    def report(step: int, total: int, latest: dict) -> None:
        shown = " ".join(f"{k}={latest[k]:.4g}" for k in ("train/loss", "val/loss", "val/acc", "val/ppl")
                         if k in latest)
        print(f"step {step}/{total} {shown}", flush=True)

    ctx = distributed.from_env()
    if ctx is None:
        status = execute_run(Store(args.db), args.run_id, progress=report, should_stop=flag)
    else:
        status = _run_rank(ctx, args, report, flag)
    print(f"run {args.run_id}: {status}", flush=True)
    return 0 if status in ("finished", "diverged", "cancelled") else 1


def _run_rank(ctx, args, report, flag) -> str:
    """One torchrun rank: rank 0 owns the database and the run record; the others only train."""
    distributed.init(ctx)
    try:
        if ctx.is_main:
            store = Store(args.db)
            try:
                config = store.get_run(args.run_id)["config"]
            except KeyError:
                config = None
            distributed.broadcast(config, ctx)  # None tells the other ranks to stop too
            if config is None:
                raise SystemExit(f"run {args.run_id} not found in {args.db}")
            return execute_run(store, args.run_id, progress=report, should_stop=flag, dist_ctx=ctx)
        config = distributed.broadcast(None, ctx)
        if config is None:
            return "failed"
        return train(RunConfig.from_dict(config), should_stop=flag, dist_ctx=ctx).status
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
