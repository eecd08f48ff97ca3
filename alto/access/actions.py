"""Everything the dashboard changes, each refusing a viewer (AccessDenied) before it touches anything.

The pages call these, never the Store's or the Supervisor's mutators, and pass the session's role
explicitly: a hidden or disabled button is a courtesy, this is the enforcement.
"""
from __future__ import annotations

from alto.access.roles import require_editor
from alto.probes import flatness_job
from alto.runner import RUN, Kind, Supervisor, queue
from alto.store import Store
from alto.train.config import RunConfig
from alto.train.presets import Preset
from alto.train.run import remove_run_files


def queue_experiment(role: str, store: Store, preset: Preset, configs: list[RunConfig], *,
                     name: str | None = None) -> int:
    """Queue a comparison (Launch, the demo); returns the experiment id."""
    require_editor(role, "launch runs")
    return queue.queue_experiment(store, preset, configs, name=name)


def queue_confirmation(role: str, store: Store, experiment_id: int, lrs: dict[str, float], seeds: int, *,
                       where: dict | None = None) -> list[int]:
    """Queue the chosen LRs on fresh seeds (Compare's Confirm; `where`: a sweep's value); returns the new run ids."""
    require_editor(role, "queue confirmation runs")
    return queue.queue_confirmation(store, experiment_id, lrs, seeds, where=where)


def queue_sweep_confirmation(role: str, store: Store, experiment_id: int, seeds: int) -> list[int]:
    """Queue every swept value's chosen LRs on fresh seeds (the Map's Confirm); returns the new run ids."""
    require_editor(role, "queue confirmation runs")
    return queue.queue_sweep_confirmation(store, experiment_id, seeds)


def queue_budget_confirmation(role: str, store: Store, experiment_id: int, seeds: int, **target) -> tuple:
    """Queue the candidate at the budget its measured speed-up implies (ROI's Confirm at budget);
    returns (the plan, the new run ids)."""
    require_editor(role, "queue confirmation runs")
    return queue.queue_budget_confirmation(store, experiment_id, seeds, **target)


def queue_flatness_job(role: str, store: Store, experiment_id: int, **settings) -> int:
    """Queue a flatness measurement of an experiment's final weights; returns the job id."""
    require_editor(role, "start flatness jobs")
    return flatness_job.queue_flatness_job(store, experiment_id, **settings)


def cancel(role: str, supervisor: Supervisor, row_id: int, kind: Kind = RUN) -> bool:
    """Cancel a queued or running run (or job, kind=JOB); False if it had already ended."""
    require_editor(role, f"cancel {kind.noun}s")
    return supervisor.cancel(row_id, kind)


def annotate_run(role: str, store: Store, run_id: int, *, add_tags: list[str], remove_tags: list[str],
                 notes: str) -> None:
    """Add and remove a run's tags and replace its notes."""
    require_editor(role, "edit tags or notes")
    store.add_tags(run_id, add_tags)
    for tag in remove_tags:
        store.remove_tag(run_id, tag)
    store.set_notes(notes, run_id=run_id)


LIVE = ("running", "stalled")  # a process still writes to runs in these


def delete_blocker(runs: list[dict]) -> str | None:
    """Why these runs cannot be deleted now (a process still writes to them), else None."""
    live = [f"#{r['id']} ({r['status']})" for r in runs if r["status"] in LIVE]
    if not live:
        return None
    return (f"{'run' if len(live) == 1 else 'runs'} {', '.join(live)} still "
            f"{'has a live process' if len(live) == 1 else 'have live processes'}: "
            "cancel on Live first, then delete")


def delete_run(role: str, store: Store, run_id: int) -> None:
    """Delete a run, its metrics, checkpoints and log. ValueError (delete_blocker's reason) while
    its process runs."""
    require_editor(role, "delete runs")
    run = store.get_run(run_id)
    if blocker := delete_blocker([run]):
        raise ValueError(blocker)
    store.delete_run(run_id)
    remove_run_files(store, [run])


def delete_experiment(role: str, store: Store, experiment_id: int) -> None:
    """Delete an experiment with all its runs, their metrics, checkpoints and logs. ValueError
    (delete_blocker's reason) while a process of one of its runs runs."""
    require_editor(role, "delete experiments")
    runs = store.list_runs(experiment_id=experiment_id)
    if blocker := delete_blocker(runs):
        raise ValueError(blocker)
    store.delete_experiment(experiment_id)
    remove_run_files(store, runs)
