"""Queueing and supervising runs: experiments into queued rows, queued rows into processes."""
from .queue import queue_experiment
from .supervisor import JOB, RUN, Kind, Supervisor, log_tail, process_alive

__all__ = ["JOB", "RUN", "Kind", "Supervisor", "log_tail", "process_alive", "queue_experiment"]
