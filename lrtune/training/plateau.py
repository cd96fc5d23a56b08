"""Reduce on plateau: the one schedule that reacts to results.

The rule is Keras's ``ReduceLROnPlateau`` (and PyTorch's): after each epoch
the sweep's metric either improves on the best so far by more than
:data:`MIN_DELTA` (``best`` moves, ``wait`` goes back to 0) or ``wait``
grows by one; when ``wait`` reaches ``patience`` the rate is multiplied by
``factor`` (never below ``min_lr``), ``wait`` restarts and the next
``cooldown`` epochs do not count. The new rate applies from the next epoch.

:func:`update` is that rule as a pure function of a state dict, so the
plot can replay it and a checkpoint can carry it; :class:`ReduceOnPlateau`
is the Keras callback that runs it in a trial, with
:meth:`~ReduceOnPlateau.get_state`/:meth:`~ReduceOnPlateau.set_state` for
the checkpoint (``trial.json``'s ``extra_state``), so a resumed, moved or
PBT-cloned trial goes on where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from lrtune.training.schedules import Schedule

__all__ = ["MIN_DELTA", "initial_state", "update", "replay", "ReduceOnPlateau"]

#: Smallest change that counts as an improvement (Keras's default ``min_delta``).
MIN_DELTA = 1e-4


def initial_state(lr: float) -> dict[str, Any]:
    """The state before the first epoch: the rate ``lr``, no best value yet.

    >>> initial_state(0.1)
    {'lr': 0.1, 'base_lr': 0.1, 'best': None, 'wait': 0, 'cooldown_left': 0}
    """
    return {"lr": float(lr), "base_lr": float(lr), "best": None, "wait": 0, "cooldown_left": 0}


def update(state: Mapping[str, Any], value: float, params: Mapping[str, float], mode: str) -> dict[str, Any]:
    """The state after an epoch whose metric was ``value``.

    ``params`` are the plateau schedule's (``factor``, ``patience``,
    ``min_lr``, ``cooldown``); ``mode`` is ``max`` or ``min``. A NaN value
    is no improvement.

    >>> rule = {"factor": 0.5, "patience": 2, "min_lr": 0.0, "cooldown": 0}
    >>> s = initial_state(0.1)
    >>> for v in (0.5, 0.6, 0.6, 0.6):
    ...     s = update(s, v, rule, "max")
    >>> s["lr"], s["best"], s["wait"]
    (0.05, 0.6, 0)
    """
    state = dict(state)
    if state["cooldown_left"] > 0:
        state["cooldown_left"] -= 1
        state["wait"] = 0
    best = state["best"]
    if math.isfinite(value) and (
        best is None or (value - MIN_DELTA > best if mode == "max" else value + MIN_DELTA < best)
    ):
        state["best"] = float(value)
        state["wait"] = 0
    elif state["cooldown_left"] <= 0:
        state["wait"] += 1
        if state["wait"] >= params["patience"] and state["lr"] > params["min_lr"]:
            state["lr"] = max(state["lr"] * params["factor"], params["min_lr"])
            state["cooldown_left"] = params["cooldown"]
            state["wait"] = 0
    return state


def replay(schedule: Schedule, values: Sequence[float], mode: str) -> list[float]:
    """The rate applied in each epoch, given each epoch's metric ``values``.

    The rate of epoch ``e`` follows from the metrics of epochs before it.

    >>> from lrtune.training.schedules import make_schedule
    >>> replay(make_schedule("plateau", lr=0.1, factor=0.5, patience=1), [1, 1, 1, 2], "max")
    [0.1, 0.1, 0.05, 0.025]
    """
    state = initial_state(schedule.params["lr"])
    rates = []
    for value in values:
        rates.append(state["lr"])
        state = update(state, value, schedule.params, mode)
    return rates


class ReduceOnPlateau(keras.callbacks.Callback):
    """Run :func:`update` on ``metric`` after every epoch of a trial.

    ``multiplier`` is the :class:`~lrtune.training.keras_schedule.KerasSchedule`'s
    variable; it is set to ``current lr / lr`` when an epoch begins, so the
    epoch that saw the plateau still reports the rate it trained with.
    Place it before the reporter: the checkpoint written at the end of an
    epoch then holds the state after that epoch.
    """

    def __init__(self, schedule: Schedule, multiplier: keras.Variable, metric: str, mode: str):
        super().__init__()
        if not schedule.reactive:
            raise ValueError(f"ReduceOnPlateau needs a plateau schedule. Received: {schedule.name!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"Argument `mode` must be max or min. Received: mode={mode!r}")
        self.params_ = dict(schedule.params)
        self.multiplier = multiplier
        self.metric = metric
        self.mode = mode
        self.state = initial_state(self.params_["lr"])

    def get_state(self) -> dict[str, Any]:
        """The rule's state, JSON-ready: ``lr``, ``base_lr``, ``best``, ``wait``, ``cooldown_left``."""
        return dict(self.state)

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved state.

        If the trial's ``lr`` differs from the saved ``base_lr`` (a PBT
        exploit perturbed it), the current rate is scaled by the same
        ratio, never below ``min_lr``.
        """
        state = dict(state)
        ratio = self.params_["lr"] / state["base_lr"]
        state["lr"] = max(state["lr"] * ratio, self.params_["min_lr"])
        state["base_lr"] = self.params_["lr"]
        self.state = state

    def on_epoch_begin(self, epoch, logs=None):
        self.multiplier.assign(self.state["lr"] / self.params_["lr"])

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.metric not in logs:
            raise ValueError(
                f"Reduce on plateau watches {self.metric!r}, which this epoch did not log; "
                f"logged: {', '.join(logs)}"
            )
        self.state = update(self.state, float(logs[self.metric]), self.params_, self.mode)
