"""Where ALTO Lab keeps its files: the database, and beside it each run's checkpoints and logs.

    runs/alto.db                       the default database (ALTO_DB or --db choose another)
    runs/checkpoints/<db stem>/run_N/  last.pt (resume) and final.pt (flatness analysis)
    runs/logs/<db stem>/run_N.log      what the run process printed (job_N.log for jobs)
    runs/alto.db.supervisor.lock       held by the one supervisor of that database
"""
from __future__ import annotations

import os
from pathlib import Path

CHECKOUT_RUNS = Path(__file__).resolve().parents[1] / "runs"


def default_db() -> str:
    """ALTO_DB, else runs/alto.db of this checkout (or of the current directory when installed)."""
    if os.environ.get("ALTO_DB"):
        return os.environ["ALTO_DB"]
    return str((CHECKOUT_RUNS if CHECKOUT_RUNS.is_dir() else Path("runs")) / "alto.db")


def checkpoint_dir(db_path: str | Path, run_id: int) -> Path:
    """The folder of one run's checkpoints (last.pt) and final weights (final.pt)."""
    db = Path(db_path)
    return db.parent / "checkpoints" / db.stem / f"run_{run_id}"


def log_dir(db_path: str | Path) -> Path:
    """The folder of the run and job logs of one database."""
    db = Path(db_path)
    return db.parent / "logs" / db.stem


def lock_path(db_path: str | Path) -> Path:
    """The file whose flock elects the database's one supervisor."""
    return Path(f"{db_path}.supervisor.lock")
