"""Tune callbacks that keep a running sweep's storage in order.

:class:`StateRetention` prunes the trials' saved states. Ray Tune checkpoints only pointers (see :mod:`lrtune.checkpoints`) and
keeps every one; the states they point to are the big files, and this
callback deletes those no trial will resume from: all but the newest
``keep`` of each trial, after each of its checkpoints. A pointer whose
state was pruned still resumes, from the trial's newest state.
"""

from __future__ import annotations

from ray.tune import Callback

from lrtune.checkpoints import StateStore

__all__ = ["StateRetention", "LeaseRenewal"]


class StateRetention(Callback):
    """Keep each trial's newest ``keep`` states under ``<sweep_dir>/<trial>/state/``.

    ``keep`` is 1 unless PBT may clone a state a trial has already moved
    past (a donor trains on while its exploiter waits to start).
    """

    def __init__(self, sweep_dir: str, keep: int = 1):
        if keep < 1:
            raise ValueError(f"Argument `keep` must be >= 1. Received: keep={keep}")
        self.sweep_dir = sweep_dir
        self.keep = keep

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self.prune(trial.trial_id)

    def prune(self, trial_id: str) -> list[str]:
        """Delete all but the newest ``keep`` states of ``trial_id``; returns their names."""
        store = StateStore(self.sweep_dir, trial_id)
        old = store.states()[: -self.keep]
        for state in old:
            store.delete(state.name)
        return [s.name for s in old]


class LeaseRenewal(Callback):
    """Keep the driver's :class:`~lrtune.lock.SweepLock` lease fresh (object stores only)."""

    def __init__(self, lock=None):
        self.lock = lock

    def __reduce__(self):
        # Tune pickles callbacks into tuner.pkl; a lock belongs to one driver.
        return (LeaseRenewal, ())

    def on_step_end(self, iteration, trials, **info):
        if self.lock is not None:
            self.lock.renew()
