"""The leader loop: keeps every enabled job's next fire instant and dispatches due runs.

Only the elected node runs a :class:`Leader`.  Its state lives in memory and is rebuilt from the
document store each time it is elected; nothing in it needs to survive a crash, because the store
holds what matters (jobs, and one execution document per attempt with a deterministic id).

- **Event-driven**: a heap holds ``(next fire instant, job)`` for every enabled job; the loop sleeps
  until the earliest one is to be sent or until a job or execution changes.  No job is
  looked at until it is due.
- **No overlap**: while a run of a job is in progress, newer fire times of that job wait in
  ``pending`` (only the newest is kept) and run once when the current run ends.
- **Lookback**: when elected, a job whose newest fire time lies within :attr:`lookback` seconds and
  has no execution yet runs once; older fire times are never run.
- **Retries**: a ``timeout`` or ``lost`` attempt is retried on another live worker (the same one
  if it is alone), up to the job's ``max_attempts``.
- **Dispatch**: round-robin over live members; a busy worker declines and the next is tried;
  when all decline the run waits and is tried again shortly, never dropped.
- **Failover**: the execution id of an attempt is deterministic, so a new leader dispatching a fire
  time the old one already dispatched gets a conflict (``duplicate``) instead of a second run.

Changes reach the leader through the document store's change feed (:meth:`DocumentStore.changes`),
polled every :attr:`feed_interval` seconds: a job written through any node, an execution completed
by any worker.

Layout: :mod:`.state` is the pure scheduling state (heap, generations, no overlap, lookback,
retries, manual runs) driven by events on an injected ``now`` and returning :class:`Start`
decisions; :mod:`.loop` is the :class:`Leader` that owns the threads, dispatches to workers,
recovers from the store and follows the change feed.
"""

from .loop import FEED_BATCH, RECHECK, Leader
from .state import LOOKBACK, JobState, LeaderState, Run, Start

__all__ = ["FEED_BATCH", "LOOKBACK", "RECHECK", "JobState", "Leader", "LeaderState", "Run", "Start"]
