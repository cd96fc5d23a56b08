"""Learning-rate schedules as pure functions of the optimizer step.

Each factory checks its arguments and returns a :class:`Schedule`: a frozen
record of its parameters and a pure function ``lr(t, ops=numpy)``. ``t`` is
the unit the schedule is defined in: the optimizer iteration for the
time-based schedule, the (0-based, fractional-free) epoch for the others.
:func:`Schedule.at_step` converts an iteration to that unit; it is the one
place in lrtune where epochs become steps. :class:`KerasSchedule` hands the
same function to a Keras optimizer, so the formula that trains the model
also draws the plots and checks the ``lr`` column of the results.

The 2017 article this project grew from relied on Keras 2 behaviour that
Keras 3 dropped (``SGD(decay=...)`` is ignored with a warning), so every
schedule here is explicit.

>>> step_decay(lr=0.1, drop=0.5, epochs_drop=10)(np.array([0, 9, 10, 25]))
array([0.1  , 0.1  , 0.05 , 0.025])
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, Literal

import numpy as np

__all__ = [
    "SCHEDULES",
    "Schedule",
    "constant",
    "time_based",
    "step_decay",
    "exponential",
    "piecewise",
    "make_schedule",
    "schedule_params",
    "required_params",
    "lr_by_epoch",
]

Unit = Literal["step", "epoch"]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A named learning-rate schedule: ``fn(t, ops)`` with ``t`` in ``unit``.

    ``ops`` is any module with ``floor`` and ``exp`` (``numpy`` or
    ``keras.ops``), so one formula serves NumPy plots and Keras graphs.
    """

    name: str
    params: Mapping[str, Any]
    unit: Unit
    fn: Callable[[Any, ModuleType], Any] = dataclasses.field(repr=False, compare=False)

    def __call__(self, t, ops: ModuleType = np):
        """The learning rate at ``t`` (an iteration or an epoch, see ``unit``)."""
        return self.fn(t, ops)

    def at_step(self, step, steps_per_epoch: int, ops: ModuleType = np):
        """The learning rate applied by optimizer iteration ``step`` (0-based).

        For an epoch schedule the epoch is ``floor(step / steps_per_epoch)``:
        the epoch that iteration belongs to.
        """
        if self.unit == "step":
            return self.fn(step, ops)
        return self.fn(ops.floor(step / steps_per_epoch), ops)


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value}")
    return value


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"Argument `{name}` must be >= 0. Received: {name}={value}")
    return value


def constant(lr: float) -> Schedule:
    """``lr(t) = lr``: the same rate for every step.

    >>> constant(lr=0.1)(np.arange(3))
    array([0.1, 0.1, 0.1])
    """
    lr = _positive("lr", lr)
    return Schedule("constant", {"lr": lr}, "epoch", lambda t, ops: lr + 0.0 * t)


def time_based(lr: float, decay: float) -> Schedule:
    """``lr(t) = lr / (1 + decay * t)``, ``t`` the optimizer iteration (batch).

    This is exactly what Keras 2 did for ``SGD(lr=lr, decay=decay)``: the
    rate falls a little after every batch, not once per epoch. Keras 3
    ignores ``decay=``, so the article's time-based runs need this schedule.
    The article set ``decay = lr / epochs``.

    >>> time_based(lr=0.1, decay=0.001)(np.array([0, 1000]))
    array([0.1 , 0.05])
    """
    lr = _positive("lr", lr)
    decay = _non_negative("decay", decay)
    return Schedule("time", {"lr": lr, "decay": decay}, "step", lambda t, ops: lr / (1.0 + decay * t))


def step_decay(lr: float, drop: float, epochs_drop: float) -> Schedule:
    """``lr(epoch) = lr * drop ** floor(epoch / epochs_drop)``, epoch 0-based.

    The rate is multiplied by ``drop`` after every ``epochs_drop`` epochs:
    with ``epochs_drop=10`` epochs 0-9 train at ``lr``, 10-19 at
    ``lr * drop``. The article's code used ``floor((1 + epoch) /
    epochs_drop)``, which drops one epoch early (epoch 9 already at
    ``lr * drop``, so the first drop comes after 9 epochs, not 10); lrtune
    uses the formula as the article's text states it.

    >>> step_decay(lr=0.1, drop=0.5, epochs_drop=2)(np.arange(5))
    array([0.1  , 0.1  , 0.05 , 0.05 , 0.025])
    """
    lr = _positive("lr", lr)
    drop = float(drop)
    if not (0 < drop <= 1):
        raise ValueError(f"Argument `drop` must be in (0, 1]. Received: drop={drop}")
    epochs_drop = _positive("epochs_drop", epochs_drop)
    return Schedule(
        "step",
        {"lr": lr, "drop": drop, "epochs_drop": epochs_drop},
        "epoch",
        lambda t, ops: lr * drop ** ops.floor(t / epochs_drop),
    )


def exponential(lr: float, k: float) -> Schedule:
    """``lr(epoch) = lr * exp(-k * epoch)``, epoch 0-based.

    The article wrote ``exp(-k*t)`` without defining ``t``; lrtune takes it
    to be the epoch, so the rate is constant within an epoch and falls by a
    factor ``exp(-k)`` from one epoch to the next.

    >>> exponential(lr=0.1, k=0.1)(np.array([0, 10])).round(6)
    array([0.1     , 0.036788])
    """
    lr = _positive("lr", lr)
    k = _non_negative("k", k)
    return Schedule("exponential", {"lr": lr, "k": k}, "epoch", lambda t, ops: lr * ops.exp(-k * t))


def piecewise(boundaries: Sequence[float], values: Sequence[float]) -> Schedule:
    """``lr(epoch) = values[i]`` for ``boundaries[i-1] <= epoch < boundaries[i]``, epoch 0-based.

    A piecewise-constant rate set epoch by epoch: ``values[0]`` until epoch
    ``boundaries[0]``, ``values[1]`` from there until ``boundaries[1]``,
    and so on; ``values[-1]`` from ``boundaries[-1]`` to the end. The rate
    is constant within an epoch (like optax's
    ``piecewise_constant_schedule`` but with absolute values and in epochs).
    ``values[0]`` is the initial rate: the schedule takes no ``lr``.

    Args:
        boundaries: epochs at which the rate changes, strictly increasing, > 0.
        values: the rates, one more than ``boundaries``, each > 0.

    Raises:
        ValueError: a boundary is not > 0 or not above the one before, a
            value is not > 0, or ``len(values) != len(boundaries) + 1``.

    >>> piecewise(boundaries=[2, 4], values=[0.1, 0.01, 0.001])(np.arange(6))
    array([0.1  , 0.1  , 0.01 , 0.01 , 0.001, 0.001])
    """
    boundaries = _numbers("boundaries", boundaries)
    values = _numbers("values", values)
    if any(b <= 0 for b in boundaries) or any(
        b >= c for b, c in zip(boundaries, boundaries[1:], strict=False)
    ):
        raise ValueError(
            f"Argument `boundaries` must be > 0 and strictly increasing. Received: boundaries={list(boundaries)}"
        )
    for v in values:
        _positive("values", v)
    if len(values) != len(boundaries) + 1:
        raise ValueError(
            "Argument `values` must have one more entry than `boundaries`. Received: "
            f"{len(values)} values for {len(boundaries)} boundaries"
        )

    def fn(t, ops):
        lr = values[0] + 0.0 * t
        for boundary, value in zip(boundaries, values[1:], strict=True):
            lr = ops.where(t >= boundary, value, lr)
        return lr

    return Schedule("piecewise", {"boundaries": boundaries, "values": values}, "epoch", fn)


def _numbers(name: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"Argument `{name}` must be a list of numbers. Received: {name}={value!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value):
        raise ValueError(
            f"Argument `{name}` must be a list of finite numbers. Received: {name}={list(value)!r}"
        )
    return tuple(float(v) for v in value)


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "time": time_based,
    "step": step_decay,
    "exponential": exponential,
    "piecewise": piecewise,
}


def schedule_params(name: str) -> tuple[str, ...]:
    """The hyperparameter names schedule ``name`` takes, e.g. ``('lr', 'decay')``."""
    return tuple(inspect.signature(_factory(name)).parameters)


def required_params(name: str) -> tuple[str, ...]:
    """The hyperparameters schedule ``name`` has no default for.

    >>> required_params("step")
    ('lr', 'drop', 'epochs_drop')
    """
    parameters = inspect.signature(_factory(name)).parameters.values()
    return tuple(p.name for p in parameters if p.default is inspect.Parameter.empty)


def _factory(name: str) -> Callable[..., Schedule]:
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ValueError(f"Unknown schedule {name!r}. Valid schedules: {', '.join(SCHEDULES)}.") from None


def make_schedule(name: str, **params: float) -> Schedule:
    """Build schedule ``name`` from its hyperparameters; unknown ones raise.

    >>> make_schedule("time", lr=0.1, decay=0.001).params
    {'lr': 0.1, 'decay': 0.001}
    >>> make_schedule("constant", lr=0.1, drop=0.5)
    Traceback (most recent call last):
    ...
    ValueError: Schedule 'constant' takes (lr); got unexpected drop.
    """
    factory = _factory(name)
    allowed = schedule_params(name)
    unexpected = sorted(set(params) - set(allowed))
    missing = [p for p in required_params(name) if p not in params]
    if unexpected or missing:
        problems = []
        if unexpected:
            problems.append(f"got unexpected {', '.join(unexpected)}")
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        raise ValueError(f"Schedule {name!r} takes ({', '.join(allowed)}); {'; '.join(problems)}.")
    return factory(**params)


def lr_by_epoch(schedule: Schedule, epochs: int, steps_per_epoch: int) -> np.ndarray:
    """The rate applied by the last iteration of each epoch 1..``epochs``.

    This is what lrtune records as ``lr`` for an epoch (the optimizer's
    rate at its iteration ``epoch * steps_per_epoch - 1``).

    >>> lr_by_epoch(time_based(lr=1.0, decay=0.5), epochs=2, steps_per_epoch=2)
    array([0.66666667, 0.4       ])
    """
    last_steps = np.arange(1, epochs + 1) * steps_per_epoch - 1
    return np.asarray(schedule.at_step(last_steps, steps_per_epoch), dtype=np.float64)
