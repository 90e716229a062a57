"""What the queue refuses, in the queue's own terms; :mod:`service.http.errors` maps each to a status."""

from __future__ import annotations


class QueueError(Exception):
    """A job (or a photo's group of jobs) the queue could not take or finish; ``str()`` says why."""


class QueueFull(QueueError):
    """No room: by jobs queued, by their model time, or no free connection. Try again after ``retry_after_s``."""

    def __init__(self, reason: str, retry_after_s: int):
        super().__init__(f"{reason}; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class QueueUnavailable(QueueError):
    """Redis cannot be reached (now, or for longer than the outage grace while the job waited)."""


class DeadlinePassed(QueueError):
    """The job's deadline passed before a worker answered it."""


class ShuttingDown(QueueError):
    """This API instance is stopping: a job still waiting for a worker is let go. Retry elsewhere or soon."""
