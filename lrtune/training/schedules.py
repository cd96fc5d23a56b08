"""Learning-rate schedules as pure functions of the optimizer step.

Each factory checks its arguments and returns a :class:`Schedule`: a frozen
record of its parameters and a pure function ``lr(t, ops=numpy)``. ``t`` is
the unit the schedule is defined in (``Schedule.unit``):

- ``"step"``: the optimizer iteration (the time-based schedule);
- ``"epoch"``: the 0-based whole epoch, so the rate is constant within an
  epoch (step, exponential, piecewise, constant);
- ``"fractional_epoch"``: ``step / steps_per_epoch``, so the rate changes at
  every step but the schedule's lengths are written in epochs (cosine,
  cosine_restarts, one_cycle, cyclic, polynomial, wsd, linear_to_zero).

:func:`Schedule.at_step` converts an iteration to that unit and adds an
optional linear warmup (:func:`with_warmup`); it is the one place in lrtune
where epochs become steps. :class:`KerasSchedule` hands the same function
to a Keras optimizer, so the formula that trains the model also draws the
plots and checks the ``lr`` column of the results.

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
    "cosine",
    "cosine_restarts",
    "one_cycle",
    "cyclic",
    "polynomial",
    "plateau",
    "wsd",
    "linear_to_zero",
    "with_warmup",
    "REACTIVE",
    "SPAN_PARAMS",
    "WARMUP_PARAMS",
    "make_schedule",
    "fit_to_trial",
    "schedule_params",
    "required_params",
    "lr_by_epoch",
]

Unit = Literal["step", "epoch", "fractional_epoch"]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A named learning-rate schedule: ``fn(t, ops)`` with ``t`` in ``unit``.

    ``ops`` is any module with ``floor``, ``exp``, ``cos``, ``where``...
    (``numpy`` or ``keras.ops``), so one formula serves NumPy plots and
    Keras graphs. ``warmup_epochs``/``warmup_start``, set by
    :func:`with_warmup`, put a linear warmup before ``fn``; they apply in
    :meth:`at_step` only, ``__call__`` is the schedule after the warmup,
    counting from its own start.
    """

    name: str
    params: Mapping[str, Any]
    unit: Unit
    fn: Callable[[Any, ModuleType], Any] = dataclasses.field(repr=False, compare=False)
    warmup_epochs: float = 0.0
    warmup_start: float = 0.0

    @property
    def reactive(self) -> bool:
        """Whether the trial changes this schedule's rate from its results (plateau)."""
        return self.name in REACTIVE

    def __call__(self, t, ops: ModuleType = np):
        """The learning rate at ``t`` (an iteration or an epoch, see ``unit``), warmup aside."""
        return self.fn(t, ops)

    def at_step(self, step, steps_per_epoch: int, ops: ModuleType = np):
        """The learning rate applied by optimizer iteration ``step`` (0-based).

        For an epoch schedule the epoch is ``floor(step / steps_per_epoch)``:
        the epoch that iteration belongs to; for a fractional-epoch one it
        is ``step / steps_per_epoch``. With a warmup of ``W =
        warmup_epochs * steps_per_epoch`` steps, iteration ``step < W``
        gets ``warmup_start + (lr0 - warmup_start) * step / W`` (``lr0``
        the schedule's own first rate) and later ones the schedule at
        ``step - W``, as ``optax.join_schedules`` joins two schedules.
        """
        if not self.warmup_epochs:
            return self._own_at_step(step, steps_per_epoch, ops)
        warmup_steps = self.warmup_epochs * steps_per_epoch
        peak = float(self.fn(0.0, np))
        ramp = self.warmup_start + (peak - self.warmup_start) * step / warmup_steps
        after = self._own_at_step(ops.maximum(step - warmup_steps, 0.0), steps_per_epoch, ops)
        return ops.where(step < warmup_steps, ramp, after)

    def _own_at_step(self, step, steps_per_epoch: int, ops: ModuleType):
        if self.unit == "step":
            return self.fn(step, ops)
        if self.unit == "fractional_epoch":
            return self.fn(step / steps_per_epoch, ops)
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


def cosine(lr: float, decay_epochs: float, lr_min: float = 0.0) -> Schedule:
    """``lr(x) = lr_min + (lr - lr_min) * (1 + cos(pi * min(x, decay_epochs) / decay_epochs)) / 2``.

    Cosine annealing (Loshchilov & Hutter 2017, SGDR without restarts;
    ``optax.cosine_decay_schedule``), ``x = step / steps_per_epoch`` the
    fractional epoch, so the rate falls at every step. It goes from ``lr``
    at the start to ``lr_min`` at ``decay_epochs`` and stays there. In a
    sweep, ``decay_epochs`` left out is the trial's epochs (less any
    warmup), so the curve ends with the trial.

    Args:
        lr: the initial rate, > 0.
        decay_epochs: the length of the decay in epochs, > 0.
        lr_min: the final rate, 0 <= lr_min <= lr.

    Raises:
        ValueError: an argument is out of its range.

    >>> cosine(lr=0.1, decay_epochs=10, lr_min=0.001)(np.array([0, 5, 10, 20]))
    array([0.1   , 0.0505, 0.001 , 0.001 ])
    """
    lr = _positive("lr", lr)
    decay_epochs = _positive("decay_epochs", decay_epochs)
    lr_min = _at_most_lr("lr_min", lr_min, lr)

    def fn(x, ops):
        progress = ops.minimum(x, decay_epochs) / decay_epochs
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + ops.cos(math.pi * progress))

    return Schedule(
        "cosine", {"lr": lr, "decay_epochs": decay_epochs, "lr_min": lr_min}, "fractional_epoch", fn
    )


def cosine_restarts(
    lr: float, period_epochs: float, lr_min: float = 0.0, period_mult: float = 2.0, restart_decay: float = 1.0
) -> Schedule:
    """``lr(x) = lr_min + (lr * restart_decay**i - lr_min) * (1 + cos(pi * x_i / T_i)) / 2``.

    SGDR, cosine annealing with warm restarts (Loshchilov & Hutter 2017,
    eq. 5; ``tf.keras.optimizers.schedules.CosineDecayRestarts``): period
    ``i`` (0-based) lasts ``T_i = period_epochs * period_mult**i`` epochs,
    ``x_i`` is the fractional epoch ``x = step / steps_per_epoch`` less the
    start of period ``i``, and each restart begins at ``restart_decay``
    times the previous peak (never below ``lr_min``). Per step, as in the
    paper.

    Args:
        lr: the first peak, > 0.
        period_epochs: the first period ``T_0`` in epochs, > 0.
        lr_min: the floor every period anneals to, 0 <= lr_min <= lr.
        period_mult: ``T_mult``, each period's length over the previous one's, >= 1.
        restart_decay: each peak over the previous one, in (0, 1].

    Raises:
        ValueError: an argument is out of its range.

    >>> cosine_restarts(lr=0.1, period_epochs=2, period_mult=2, restart_decay=0.5)(np.array([0, 1, 2, 4, 6]))
    array([0.1  , 0.05 , 0.05 , 0.025, 0.025])
    """
    lr = _positive("lr", lr)
    period_epochs = _positive("period_epochs", period_epochs)
    lr_min = _at_most_lr("lr_min", lr_min, lr)
    period_mult = float(period_mult)
    if not (math.isfinite(period_mult) and period_mult >= 1):
        raise ValueError(f"Argument `period_mult` must be >= 1. Received: period_mult={period_mult}")
    restart_decay = _fraction("restart_decay", restart_decay)

    def period_start(i, ops):
        if period_mult == 1:
            return period_epochs * i
        return period_epochs * (ops.power(period_mult, i) - 1.0) / (period_mult - 1.0)

    def fn(x, ops):
        if period_mult == 1:
            i = ops.floor(x / period_epochs)
        else:
            i = ops.floor(ops.log(1.0 + x * (period_mult - 1.0) / period_epochs) / math.log(period_mult))
        # The closed form can land one period off at a boundary in float32: step back or on.
        i = ops.where(x < period_start(i, ops), i - 1.0, i)
        i = ops.where(x >= period_start(i + 1.0, ops), i + 1.0, i)
        start = period_start(i, ops)
        length = period_start(i + 1.0, ops) - start
        peak = ops.maximum(lr * ops.power(restart_decay, i), lr_min)
        return lr_min + (peak - lr_min) * 0.5 * (1.0 + ops.cos(math.pi * (x - start) / length))

    params = {
        "lr": lr,
        "period_epochs": period_epochs,
        "lr_min": lr_min,
        "period_mult": period_mult,
        "restart_decay": restart_decay,
    }
    return Schedule("cosine_restarts", params, "fractional_epoch", fn)


ANNEALING = ("cos", "linear")


def one_cycle(
    max_lr: float,
    cycle_epochs: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
) -> Schedule:
    """``lr`` rises from ``max_lr / div_factor`` to ``max_lr`` over ``pct_start`` of the cycle, then falls to ``max_lr / div_factor / final_div_factor``.

    The one-cycle policy (Smith 2018, "A disciplined approach to neural
    network hyper-parameters"; Smith & Topin 2019), with the defaults of
    ``torch.optim.lr_scheduler.OneCycleLR``: with ``x = step /
    steps_per_epoch``, ``T = cycle_epochs``, ``u = pct_start * T``,
    ``lr0 = max_lr / div_factor`` and ``lr_end = lr0 / final_div_factor``::

        lr(x) = A(lr0, max_lr, x / u)                    for x < u
              = A(max_lr, lr_end, min((x - u) / (T - u), 1))  otherwise

    with ``A(a, b, p) = b + (a - b) * (1 + cos(pi * p)) / 2`` (``anneal:
    cos``) or ``a + (b - a) * p`` (``anneal: linear``). Only the rate
    cycles; momentum is left to the optimizer. In a sweep,
    ``cycle_epochs`` left out is the trial's epochs (less any warmup). The
    schedule takes no ``lr``: its initial rate is ``max_lr / div_factor``.

    Args:
        max_lr: the peak rate, > 0.
        cycle_epochs: the cycle's length in epochs, > 0.
        pct_start: the rising fraction of the cycle, in (0, 1).
        div_factor: ``max_lr`` over the initial rate, >= 1.
        final_div_factor: the initial rate over the final one, >= 1.
        anneal: ``cos`` or ``linear``.

    Raises:
        ValueError: an argument is out of its range.

    >>> one_cycle(max_lr=1.0, cycle_epochs=10, pct_start=0.5, div_factor=10, final_div_factor=10,
    ...           anneal="linear")(np.array([0, 5, 10]))
    array([0.1 , 1.  , 0.01])
    """
    max_lr = _positive("max_lr", max_lr)
    cycle_epochs = _positive("cycle_epochs", cycle_epochs)
    pct_start = float(pct_start)
    if not 0 < pct_start < 1:
        raise ValueError(f"Argument `pct_start` must be in (0, 1). Received: pct_start={pct_start}")
    div_factor = _at_least_one("div_factor", div_factor)
    final_div_factor = _at_least_one("final_div_factor", final_div_factor)
    anneal = _one_of("anneal", anneal, ANNEALING)
    lr0 = max_lr / div_factor
    lr_end = lr0 / final_div_factor
    rise = pct_start * cycle_epochs

    def annealed(a, b, p, ops):
        if anneal == "linear":
            return a + (b - a) * p
        return b + (a - b) * 0.5 * (1.0 + ops.cos(math.pi * p))

    def fn(x, ops):
        up = annealed(lr0, max_lr, ops.minimum(x / rise, 1.0), ops)
        down = annealed(max_lr, lr_end, ops.clip((x - rise) / (cycle_epochs - rise), 0.0, 1.0), ops)
        return ops.where(x < rise, up, down)

    params = {
        "max_lr": max_lr,
        "cycle_epochs": cycle_epochs,
        "pct_start": pct_start,
        "div_factor": div_factor,
        "final_div_factor": final_div_factor,
        "anneal": anneal,
    }
    return Schedule("one_cycle", params, "fractional_epoch", fn)


CYCLE_MODES = ("triangular", "triangular2", "exp_range")


def cyclic(
    lr: float, max_lr: float, step_size_epochs: float, cycle_mode: str = "triangular", gamma: float = 1.0
) -> Schedule:
    """``lr(x) = lr + (max_lr - lr) * max(0, 1 - |x / s - 2c + 1|) * scale(x)``, ``c = floor(1 + x / (2s))``.

    Cyclical learning rates (Smith 2017, "Cyclical Learning Rates for
    Training Neural Networks", section 3.1): the rate goes linearly from
    ``lr`` up to ``max_lr`` in ``s = step_size_epochs`` epochs and back in
    as many, at every step (``x = step / steps_per_epoch``). ``scale`` is 1
    (``triangular``), ``1 / 2**(c - 1)`` (``triangular2``, the amplitude
    halves every cycle) or ``gamma**x`` (``exp_range``). Smith's ``gamma``
    is per iteration; here it is per epoch (his ``g`` is ``g**steps_per_epoch``
    here). Smith suggests ``s`` of 2 to 10 epochs.

    Args:
        lr: the base (lowest, initial) rate, > 0.
        max_lr: the top of the cycle, >= lr.
        step_size_epochs: half a cycle in epochs, > 0.
        cycle_mode: ``triangular``, ``triangular2`` or ``exp_range``.
        gamma: ``exp_range``'s decay of the amplitude per epoch, in (0, 1];
            must be 1 for the other modes.

    Raises:
        ValueError: an argument is out of its range.

    >>> cyclic(lr=0.01, max_lr=0.11, step_size_epochs=2, cycle_mode="triangular2")(np.arange(0, 9, 2))
    array([0.01, 0.11, 0.01, 0.06, 0.01])
    """
    lr = _positive("lr", lr)
    max_lr = _positive("max_lr", max_lr)
    if max_lr < lr:
        raise ValueError(f"Argument `max_lr` must be >= lr. Received: max_lr={max_lr}, lr={lr}")
    step_size_epochs = _positive("step_size_epochs", step_size_epochs)
    cycle_mode = _one_of("cycle_mode", cycle_mode, CYCLE_MODES)
    gamma = _fraction("gamma", gamma)
    if cycle_mode != "exp_range" and gamma != 1:
        raise ValueError(
            f"Argument `gamma` applies to cycle_mode exp_range only. Received: gamma={gamma}, cycle_mode={cycle_mode}"
        )

    def fn(x, ops):
        cycle = ops.floor(1.0 + x / (2.0 * step_size_epochs))
        height = ops.maximum(0.0, 1.0 - ops.abs(x / step_size_epochs - 2.0 * cycle + 1.0))
        if cycle_mode == "triangular2":
            height = height / ops.power(2.0, cycle - 1.0)
        elif cycle_mode == "exp_range":
            height = height * ops.power(gamma, x)
        return lr + (max_lr - lr) * height

    params = {
        "lr": lr,
        "max_lr": max_lr,
        "step_size_epochs": step_size_epochs,
        "cycle_mode": cycle_mode,
        "gamma": gamma,
    }
    return Schedule("cyclic", params, "fractional_epoch", fn)


def polynomial(lr: float, decay_epochs: float, end_lr: float = 1e-4, power: float = 1.0) -> Schedule:
    """``lr(x) = (lr - end_lr) * (1 - min(x, decay_epochs) / decay_epochs)**power + end_lr``.

    Polynomial decay (``tf.keras.optimizers.schedules.PolynomialDecay``,
    whose defaults ``end_lr=1e-4``, ``power=1`` this keeps; ``power=1`` is
    linear decay), ``x = step / steps_per_epoch``, per step. In a sweep,
    ``decay_epochs`` left out is the trial's epochs (less any warmup).

    Args:
        lr: the initial rate, > 0.
        decay_epochs: the length of the decay in epochs, > 0.
        end_lr: the final rate, 0 <= end_lr <= lr.
        power: the polynomial's power, > 0.

    Raises:
        ValueError: an argument is out of its range.

    >>> polynomial(lr=0.1, decay_epochs=10, end_lr=0.0, power=2)(np.array([0, 5, 10, 12]))
    array([0.1  , 0.025, 0.   , 0.   ])
    """
    lr = _positive("lr", lr)
    decay_epochs = _positive("decay_epochs", decay_epochs)
    end_lr = _at_most_lr("end_lr", end_lr, lr)
    power = _positive("power", power)

    def fn(x, ops):
        remaining = 1.0 - ops.minimum(x, decay_epochs) / decay_epochs
        return (lr - end_lr) * ops.power(remaining, power) + end_lr

    params = {"lr": lr, "decay_epochs": decay_epochs, "end_lr": end_lr, "power": power}
    return Schedule("polynomial", params, "fractional_epoch", fn)


def plateau(
    lr: float, factor: float = 0.1, patience: float = 10, min_lr: float = 0.0, cooldown: float = 0
) -> Schedule:
    """``lr``, multiplied by ``factor`` after ``patience`` epochs without improvement of the sweep's metric, never below ``min_lr``.

    Reduce on plateau (``keras.callbacks.ReduceLROnPlateau``,
    ``torch.optim.lr_scheduler.ReduceLROnPlateau``; defaults are theirs).
    It reacts to results, so this function is only the rate before any
    reduction; the rule runs in the trial (:mod:`lrtune.training.plateau`), which
    multiplies the rate (and any warmup) by ``current / lr`` from the epoch
    after a reduction, and records the rate applied in ``lr``. After a
    reduction the rule waits ``cooldown`` epochs before counting again.

    Args:
        lr: the initial rate, > 0.
        factor: the multiplier at each reduction, in (0, 1).
        patience: epochs without improvement before a reduction, >= 0.
        min_lr: the floor, 0 <= min_lr <= lr.
        cooldown: epochs after a reduction that do not count, >= 0.

    Raises:
        ValueError: an argument is out of its range.

    >>> plateau(lr=0.1, factor=0.5, patience=3)(np.arange(3))
    array([0.1, 0.1, 0.1])
    """
    lr = _positive("lr", lr)
    factor = float(factor)
    if not 0 < factor < 1:
        raise ValueError(f"Argument `factor` must be in (0, 1). Received: factor={factor}")
    patience = _non_negative("patience", patience)
    min_lr = _at_most_lr("min_lr", min_lr, lr)
    cooldown = _non_negative("cooldown", cooldown)
    params = {"lr": lr, "factor": factor, "patience": patience, "min_lr": min_lr, "cooldown": cooldown}
    return Schedule("plateau", params, "epoch", lambda t, ops: lr + 0.0 * t)


DECAY_SHAPES = ("linear", "cosine", "1-sqrt")


def wsd(
    lr: float,
    decay_epochs: float,
    decay_fraction: float = 0.2,
    decay_shape: str = "1-sqrt",
    lr_min: float = 0.0,
) -> Schedule:
    """``lr(x) = lr_min + (lr - lr_min) * g(p)``, ``p = clip((x - (1 - f) * T) / (f * T), 0, 1)``: constant, then a cooldown over the last ``f`` of ``T``.

    Warmup-stable-decay (Hägele et al. 2024, "Scaling Laws and
    Compute-Optimal Training Beyond Fixed Training Durations", NeurIPS
    2024, section 3; the shape goes back to MiniCPM, Hu et al. 2024): the
    rate stays at ``lr`` until the last ``f = decay_fraction`` of the
    schedule's ``T = decay_epochs`` epochs, then cools down to ``lr_min``
    along ``g``: ``1 - p`` (``linear``), ``(1 + cos(pi * p)) / 2``
    (``cosine``) or ``1 - sqrt(p)`` (``1-sqrt``, the paper's best; a 20%
    cooldown matched cosine annealing there, hence the defaults). ``x =
    step / steps_per_epoch``, per step; the warmup is lrtune's
    ``warmup_epochs`` before it (:func:`with_warmup`). In a sweep,
    ``decay_epochs`` left out is the trial's epochs (less any warmup), so
    the cooldown ends with the trial.

    Args:
        lr: the stable rate, > 0.
        decay_epochs: where the cooldown ends, in epochs from the schedule's start, > 0.
        decay_fraction: the cooldown's share of ``decay_epochs``, in (0, 1].
        decay_shape: ``linear``, ``cosine`` or ``1-sqrt``.
        lr_min: the rate at the end, 0 <= lr_min <= lr.

    Raises:
        ValueError: an argument is out of its range.

    >>> wsd(lr=0.1, decay_epochs=10, decay_fraction=0.4, decay_shape="linear")(np.array([0, 6, 8, 10, 12]))
    array([0.1 , 0.1 , 0.05, 0.  , 0.  ])
    >>> wsd(lr=0.1, decay_epochs=10, decay_fraction=0.4)(np.array([7.0])).round(6)  # 1 - sqrt(1/4) = 1/2
    array([0.05])
    """
    lr = _positive("lr", lr)
    decay_epochs = _positive("decay_epochs", decay_epochs)
    decay_fraction = _fraction("decay_fraction", decay_fraction)
    decay_shape = _one_of("decay_shape", decay_shape, DECAY_SHAPES)
    lr_min = _at_most_lr("lr_min", lr_min, lr)
    cooldown = decay_fraction * decay_epochs
    start = decay_epochs - cooldown

    def fn(x, ops):
        p = ops.clip((x - start) / cooldown, 0.0, 1.0)
        if decay_shape == "linear":
            g = 1.0 - p
        elif decay_shape == "cosine":
            g = 0.5 * (1.0 + ops.cos(math.pi * p))
        else:
            g = 1.0 - ops.sqrt(p)
        return lr_min + (lr - lr_min) * g

    params = {
        "lr": lr,
        "decay_epochs": decay_epochs,
        "decay_fraction": decay_fraction,
        "decay_shape": decay_shape,
        "lr_min": lr_min,
    }
    return Schedule("wsd", params, "fractional_epoch", fn)


def linear_to_zero(lr: float, decay_epochs: float) -> Schedule:
    """``lr(x) = lr * (1 - min(x, decay_epochs) / decay_epochs)``: a straight line from ``lr`` to 0.

    Linear decay to zero, "D2Z" (Bergsma et al. 2025, "Straight to Zero:
    Why Linearly Decaying the Learning Rate to Zero Works Best for LLMs",
    ICLR 2025): after the warmup (lrtune's ``warmup_epochs``,
    :func:`with_warmup`) the rate falls linearly to exactly 0 at the end of
    training, which the paper found better than cosine or a decay to 10%
    of the peak. ``x = step / steps_per_epoch``, per step; the same curve
    as ``polynomial`` with ``end_lr=0, power=1``, named for the paper. In a
    sweep, ``decay_epochs`` left out is the trial's epochs (less any
    warmup), so the rate reaches 0 as the trial ends; the last iteration
    trains at ``lr / (decay_epochs * steps_per_epoch)``.

    Args:
        lr: the initial (peak) rate, > 0.
        decay_epochs: the length of the decay in epochs, > 0.

    Raises:
        ValueError: an argument is out of its range.

    >>> linear_to_zero(lr=0.1, decay_epochs=10)(np.array([0, 2.5, 10, 12]))
    array([0.1  , 0.075, 0.   , 0.   ])
    """
    lr = _positive("lr", lr)
    decay_epochs = _positive("decay_epochs", decay_epochs)

    def fn(x, ops):
        return lr * (1.0 - ops.minimum(x, decay_epochs) / decay_epochs)

    return Schedule("linear_to_zero", {"lr": lr, "decay_epochs": decay_epochs}, "fractional_epoch", fn)


def with_warmup(schedule: Schedule, warmup_epochs: float, warmup_start: float = 0.0) -> Schedule:
    """``lr(step) = warmup_start + (lr0 - warmup_start) * step / W`` for ``step < W``: a linear warmup before ``schedule``.

    With ``W = warmup_epochs * steps_per_epoch`` steps and ``lr0`` the
    schedule's own rate at its start::

        lr(step) = warmup_start + (lr0 - warmup_start) * step / W   for step < W
                 = schedule(step - W)                                otherwise

    The schedule counts from its own start, as ``optax.join_schedules``
    joins a ``linear_schedule`` and a decay (Goyal et al. 2017 popularised
    the gradual warmup). Valid before any schedule.

    Args:
        schedule: any schedule without a warmup.
        warmup_epochs: the warmup's length in epochs (fractions allowed), > 0.
        warmup_start: the rate at step 0, 0 <= warmup_start <= lr0.

    Raises:
        ValueError: an argument is out of its range, or ``schedule``
            already has a warmup.

    >>> with_warmup(constant(lr=0.1), warmup_epochs=1).at_step(np.arange(6), steps_per_epoch=4)
    array([0.   , 0.025, 0.05 , 0.075, 0.1  , 0.1  ])
    """
    if schedule.warmup_epochs:
        raise ValueError(
            f"Schedule {schedule.name!r} already has a warmup of {schedule.warmup_epochs} epochs"
        )
    warmup_epochs = _positive("warmup_epochs", warmup_epochs)
    lr0 = float(schedule.fn(0.0, np))
    warmup_start = _at_most_lr("warmup_start", warmup_start, lr0, "the schedule's first rate")
    return dataclasses.replace(
        schedule,
        params={**schedule.params, "warmup_epochs": warmup_epochs, "warmup_start": warmup_start},
        warmup_epochs=warmup_epochs,
        warmup_start=warmup_start,
    )


def _at_most_lr(name: str, value: float, lr: float, what: str = "lr") -> float:
    value = _non_negative(name, value)
    if value > lr:
        raise ValueError(f"Argument `{name}` must be <= {what}. Received: {name}={value}, {what}={lr}")
    return value


def _at_least_one(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 1):
        raise ValueError(f"Argument `{name}` must be >= 1. Received: {name}={value}")
    return value


def _fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0 < value <= 1:
        raise ValueError(f"Argument `{name}` must be in (0, 1]. Received: {name}={value}")
    return value


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"Argument `{name}` must be one of {', '.join(allowed)}. Received: {name}={value!r}")
    return value


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "time": time_based,
    "step": step_decay,
    "exponential": exponential,
    "piecewise": piecewise,
    "cosine": cosine,
    "cosine_restarts": cosine_restarts,
    "one_cycle": one_cycle,
    "cyclic": cyclic,
    "polynomial": polynomial,
    "plateau": plateau,
    "wsd": wsd,
    "linear_to_zero": linear_to_zero,
}

#: Schedules that react to results: their rate is changed by the trial (:mod:`lrtune.training.plateau`).
REACTIVE = ("plateau",)

#: Schedule parameters that a sweep may leave out: the trial fills them
#: with its epochs less any warmup, so the schedule ends with the trial.
SPAN_PARAMS = ("decay_epochs", "cycle_epochs")

#: Parameters any schedule takes: a linear warmup before it (:func:`with_warmup`).
WARMUP_PARAMS = ("warmup_epochs", "warmup_start")


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

    Any schedule also takes ``warmup_epochs`` (and ``warmup_start``): see
    :func:`with_warmup`.

    >>> make_schedule("time", lr=0.1, decay=0.001).params
    {'lr': 0.1, 'decay': 0.001}
    >>> make_schedule("constant", lr=0.1, drop=0.5)
    Traceback (most recent call last):
    ...
    ValueError: Schedule 'constant' takes (lr); got unexpected drop.
    """
    warmup = {k: params.pop(k) for k in WARMUP_PARAMS if params.get(k) is not None}
    if warmup and "warmup_epochs" not in warmup:
        raise ValueError("Argument `warmup_start` needs `warmup_epochs`. Received: warmup_epochs=None")
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
    schedule = factory(**params)
    return with_warmup(schedule, **warmup) if warmup else schedule


def fit_to_trial(name: str, params: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """``params`` with the span schedule ``name`` leaves to the trial filled in.

    A span (``decay_epochs``, ``cycle_epochs``: :data:`SPAN_PARAMS`) left
    out becomes the trial's ``epochs`` less any ``warmup_epochs``, so the
    schedule ends with the trial.

    Raises:
        ValueError: the warmup leaves no epoch for the schedule.

    >>> fit_to_trial("cosine", {"lr": 0.1, "warmup_epochs": 5}, epochs=50)
    {'lr': 0.1, 'warmup_epochs': 5, 'decay_epochs': 45}
    """
    params = dict(params)
    span = epochs - (params.get("warmup_epochs") or 0)
    if span <= 0:
        raise ValueError(
            f"warmup_epochs={params['warmup_epochs']} leaves no epoch of the trial's {epochs} for "
            f"schedule {name!r}; use fewer warmup epochs"
        )
    for key in SPAN_PARAMS:
        if key in schedule_params(name) and params.get(key) is None:
            params[key] = span
    return params


def lr_by_epoch(schedule: Schedule, epochs: int, steps_per_epoch: int) -> np.ndarray:
    """The rate applied by the last iteration of each epoch 1..``epochs``.

    This is what lrtune records as ``lr`` for an epoch (the optimizer's
    rate at its iteration ``epoch * steps_per_epoch - 1``).

    >>> lr_by_epoch(time_based(lr=1.0, decay=0.5), epochs=2, steps_per_epoch=2)
    array([0.66666667, 0.4       ])
    """
    last_steps = np.arange(1, epochs + 1) * steps_per_epoch - 1
    return np.asarray(schedule.at_step(last_steps, steps_per_epoch), dtype=np.float64)
