"""Tune callbacks that keep a running sweep's storage in order.

:class:`StateRetention` prunes the trials' saved states. Ray Tune
checkpoints only pointers (see :mod:`lrtune.training.checkpoints`) and keeps every
one; the states they point to are the big files, and this callback deletes those no trial will resume from: all but the newest of
each trial (and, under PBT, those another trial is about to clone), after
each of its checkpoints. A pointer whose state was pruned still resumes,
from the trial's newest state.
"""

from __future__ import annotations

import json

from ray.tune import Callback

from lrtune.training.checkpoints import StateStore

__all__ = ["StateRetention", "LeaseRenewal"]


class StateRetention(Callback):
    """Keep each trial's newest state under ``<sweep_dir>/<trial>/state/``, and those PBT will clone.

    With ``pin_clones`` (PBT), a state that any unfinished trial's latest
    checkpoint points to is kept too: an exploiting trial's checkpoint is
    its donor's, and the donor trains on while the exploiter waits to
    start. Without PBT no trial points to another's state.
    """

    def __init__(self, sweep_dir: str, pin_clones: bool = False):
        self.sweep_dir = sweep_dir
        self.pin_clones = pin_clones
        self._pointers: dict[str, dict] = {}  # pointer checkpoint path -> its pointer

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self.prune(trial.trial_id, self._pinned(trials) if self.pin_clones else set())

    def prune(self, trial_id: str, pinned: set[tuple[str, str]] = frozenset()) -> list[str]:
        """Delete all but the newest state of ``trial_id`` and the ``pinned`` (trial, state) pairs."""
        store = StateStore(self.sweep_dir, trial_id)
        old = [s for s in store.states()[:-1] if (trial_id, s.name) not in pinned]
        for state in old:
            store.delete(state.name)
        return [s.name for s in old]

    def _pinned(self, trials) -> set[tuple[str, str]]:
        pins = set()
        for trial in trials:
            checkpoint = trial.checkpoint
            if checkpoint is None or trial.status in ("TERMINATED", "ERROR"):
                continue
            if checkpoint.path not in self._pointers:
                self._pointers[checkpoint.path] = _read_pointer(checkpoint)
            pointer = self._pointers[checkpoint.path]
            if pointer is not None:
                pins.add((pointer["trial_id"], pointer["state"]))
        return pins


def _read_pointer(checkpoint) -> dict | None:
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/pointer.json") as f:
            return json.loads(f.read().decode())
    except (FileNotFoundError, ValueError):
        return None


class LeaseRenewal(Callback):
    """Keep the driver's :class:`~lrtune.engine.lock.SweepLock` lease fresh (object stores only)."""

    def __init__(self, lock=None):
        self.lock = lock

    def __reduce__(self):
        # Tune pickles callbacks into tuner.pkl; a lock belongs to one driver.
        return (LeaseRenewal, ())

    def on_step_end(self, iteration, trials, **info):
        if self.lock is not None:
            self.lock.renew()
