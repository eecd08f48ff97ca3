"""Queueing and supervising runs: experiments into queued rows, queued rows into processes."""
from .queue import queue_experiment

__all__ = ["queue_experiment"]
