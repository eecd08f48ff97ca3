"""Queueing and supervising runs: experiments into queued rows, queued rows into processes."""
from .queue import queue_experiment
from .supervisor import Supervisor, log_tail, process_alive

__all__ = ["Supervisor", "log_tail", "process_alive", "queue_experiment"]
