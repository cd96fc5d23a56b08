"""The learning-rate range test inside one trial: raise the rate every step, record the loss.

The test (Smith 2017, "Cyclical Learning Rates for Training Neural
Networks", section 3.3; fastai's ``lr_find``; PyTorch Lightning's
``Tuner.lr_find``) trains for ``steps`` iterations while the rate grows
exponentially from ``min_lr`` to ``max_lr`` (:func:`range_schedule`), and
records each step's training loss with its bias-corrected exponentially
weighted average (:class:`SmoothedLoss`). It stops early once the smoothed
loss passes ``4x`` its minimum: the run has diverged and the rest of the
curve says nothing.

The sweep's schedules do not apply (the test is its own schedule); the
optimizer's other settings do (``momentum``, ``rho``, ``weight_decay``...).

:func:`run_range_test` is the loop; :func:`tune_range_trainable` is the same
loop reporting its rows to Ray Tune in chunks.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lrtune.training.schedules import Schedule

if TYPE_CHECKING:
    from lrtune.data import Dataset
    from lrtune.training.models import ModelSource

__all__ = [
    "BETA",
    "DIVERGE_FACTOR",
    "NOISE_SIGMAS",
    "RangeSettings",
    "SKIP_END",
    "Suggestion",
    "SmoothedLoss",
    "fall_noise",
    "range_schedule",
    "readable",
    "run_range_test",
    "smoothed",
    "suggest",
    "tune_range_trainable",
]

#: Weight of the past in the smoothed loss: fastai's ``Recorder`` (``beta=0.98``)
#: and Lightning's ``_LRCallback`` (``beta: float = 0.98``).
BETA = 0.98
#: The test stops once the smoothed loss exceeds this multiple of its minimum:
#: fastai's ``LRFinder.after_batch`` (``smooth_loss > 4*best_loss``) and Lightning's
#: ``early_stop_threshold=4.0``.
DIVERGE_FACTOR = 4.0


def range_schedule(min_lr: float, max_lr: float, steps: int) -> Schedule:
    """``lr(step) = min_lr * (max_lr / min_lr) ** (step / (steps - 1))``, step 0-based.

    Exponential growth from ``min_lr`` at the first step to ``max_lr`` at
    step ``steps - 1`` (fastai's and Lightning's exponential mode, which
    reach ``max_lr`` one step later, at ``step = steps``). Its unit is the
    optimizer iteration, so it drives a Keras optimizer through the same
    :class:`~lrtune.training.keras_schedule.KerasSchedule` as the sweep's schedules.

    Raises:
        ValueError: ``min_lr`` not > 0, ``max_lr`` not > ``min_lr``, or ``steps`` < 2.

    >>> range_schedule(1e-4, 1.0, 5)(np.arange(5)).round(6)
    array([1.e-04, 1.e-03, 1.e-02, 1.e-01, 1.e+00])
    """
    if not (math.isfinite(min_lr) and min_lr > 0):
        raise ValueError(f"Argument `min_lr` must be > 0. Received: min_lr={min_lr}")
    if not (math.isfinite(max_lr) and max_lr > min_lr):
        raise ValueError(f"Argument `max_lr` must be > min_lr. Received: min_lr={min_lr}, max_lr={max_lr}")
    if steps < 2:
        raise ValueError(f"Argument `steps` must be >= 2. Received: steps={steps}")
    growth = math.log(max_lr / min_lr) / (steps - 1)
    return Schedule(
        "range_test",
        {"min_lr": float(min_lr), "max_lr": float(max_lr), "steps": int(steps)},
        "step",
        lambda t, ops: min_lr * ops.exp(growth * t),
    )


class SmoothedLoss:
    """The bias-corrected exponentially weighted average of the losses so far.

    After losses ``l_1 .. l_n``: ``avg_n = beta * avg_{n-1} + (1 - beta) * l_n``
    (``avg_0 = 0``) and ``smoothed_n = avg_n / (1 - beta ** n)``, as fastai's
    ``AvgSmoothLoss`` and Lightning's ``_LRCallback.on_train_batch_end``.
    ``diverged`` once ``n > 1`` and ``smoothed_n > factor * min(smoothed_1..n-1)``
    (Lightning's rule; fastai's is the same), or a loss is not finite.

    >>> s = SmoothedLoss()
    >>> [round(s.update(x), 4) for x in (2.0, 1.0)]
    [2.0, 1.4949]
    """

    def __init__(self, beta: float = BETA, factor: float = DIVERGE_FACTOR):
        self.beta, self.factor = beta, factor
        self._avg, self.count = 0.0, 0
        self.best = math.inf
        self.diverged = False

    def update(self, loss: float) -> float:
        """Add one step's loss; returns the smoothed loss after it."""
        self.count += 1
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        value = self._avg / (1 - self.beta**self.count)
        if not math.isfinite(value) or (self.count > 1 and value > self.factor * self.best):
            self.diverged = True
        self.best = min(self.best, value)
        return value


def smoothed(losses, beta: float = BETA) -> np.ndarray:
    """:class:`SmoothedLoss` over a whole sequence: shape ``(n,)`` -> ``(n,)``.

    >>> smoothed([2.0, 1.0, 1.0]).round(4)
    array([2.    , 1.4949, 1.3266])
    """
    s = SmoothedLoss(beta=beta)
    return np.array([s.update(float(x)) for x in losses], dtype=float)


#: Steps dropped before reading suggestions: the first tenth and the last few (fastai's ``[num_it//10:-5]``).
SKIP_END = 5
#: lrtune's own rule (fastai and Lightning have none): a curve whose smoothed loss falls
#: less than this many standard deviations of its own noise below its first value read
#: found no range; its "suggestions" would be noise. The noise is that of the fall, a
#: difference of two smoothed values (:func:`fall_noise`), under batch noise alone.
NOISE_SIGMAS = 5.0


def fall_noise(sd: float, first: int, beta: float = BETA) -> float:
    """Standard deviation of ``s_first - s_min`` when the batch losses are independent noise of sd ``sd``.

    The bias-corrected average of ``n`` losses (:class:`SmoothedLoss`) has
    weights ``w_k = (1 - beta) * beta**k / (1 - beta**n)``, so its variance is
    ``sd**2 * f(n)`` with ``f(n) = sum w_k**2 = (1 - beta) / (1 + beta) * (1 + beta**n) / (1 - beta**n)``:
    ``f(1) = 1`` (one loss), falling to ``(1 - beta) / (1 + beta)`` (0.0101 at
    ``beta = 0.98``) after many. The first value read averages ``first``
    losses; the minimum lies far enough on to count as independent, with
    ``f(inf)``: ``sd * sqrt(f(first) + f(inf))``. (Up to lrtune 2026-12-06 the
    noise was ``sd * sqrt(f(inf))`` alone, which passed a 12-step ramp that
    learned nothing, at 1e-9 to 1e-8, as a 14-sigma fall.)

    >>> round(fall_noise(1.0, 1), 3), round(fall_noise(1.0, 10**6), 3)
    (1.005, 0.142)
    """
    steady = (1 - beta) / (1 + beta)
    first_var = steady * (1 + beta**first) / (1 - beta**first)
    return sd * math.sqrt(first_var + steady)


@dataclasses.dataclass(frozen=True)
class Suggestion:
    """The suggestions from one curve (one trial).

    ``steepest``, ``minimum_tenth``, ``lr_at_minimum``: learning rates (see
    :func:`suggest`); ``smoothed_minimum``: the smoothed loss there;
    ``diverged``: whether the test stopped before its last step (set from
    the rows' status by :func:`suggest_arms`); ``steps``: the curve's length;
    ``fall``: ``s_first - s_min`` of the smoothed loss over the steps read;
    ``noise``: the standard deviation of ``fall`` from batch noise alone
    (:func:`fall_noise`, with ``sd`` estimated from the batch losses' distance
    to the smoothed curve up to its minimum; NaN when no batch losses were given).
    """

    steepest: float
    minimum_tenth: float
    lr_at_minimum: float
    diverged: bool
    steps: int
    smoothed_minimum: float = math.nan
    fall: float = math.nan
    noise: float = math.nan


def suggest(
    lrs: Sequence[float], smoothed_losses: Sequence[float], losses: Sequence[float] | None = None
) -> Suggestion:
    """The steepest-descent rate and the minimum's rate / 10 of one curve (see the module).

    ``lrs`` and ``smoothed_losses``: shape ``(n,)``, the rate and the
    smoothed loss of each step, ``lrs`` increasing; ``losses``: the batch
    losses, for the noise estimate. The first ``n // 10`` and the last
    :data:`SKIP_END` steps are dropped when at least 3 steps remain, and
    non-finite losses always. The steepest descent is searched over the
    descent only (lrtune's rule; fastai and Lightning search the whole
    curve): up to the minimum, where the fall back from a spike past it can
    be steeper, and from the last step where the smoothed loss was within
    one ``noise`` of its first value, where a wiggle of the flat start can
    be steeper than the descent on a long ramp (seen: 8.9e-7 on a
    1,600-step ramp of SGD whose loss fell from 0.2 on).

    Raises:
        ValueError: fewer than 2 usable steps.

    >>> lrs = np.logspace(-4, 0, 41)                     # 1e-4 .. 1, 10 steps a decade
    >>> loss = 2 - np.tanh(2 * np.log10(lrs / 1e-2))     # falls fastest at 1e-2
    >>> loss[lrs > 0.1] = 1.0 + 5 * np.log10(lrs[lrs > 0.1] / 0.1) + (2 - np.tanh(2))
    >>> s = suggest(lrs, loss)
    >>> bool(abs(np.log10(s.steepest) + 2) <= 0.1), round(float(np.log10(s.lr_at_minimum)), 1)
    (True, -1.0)
    """
    lrs, smooth = np.asarray(lrs, dtype=float), np.asarray(smoothed_losses, dtype=float)
    raw = np.full_like(smooth, np.nan) if losses is None else np.asarray(losses, dtype=float)
    if lrs.shape != smooth.shape or raw.shape != smooth.shape or lrs.ndim != 1:
        raise ValueError(
            f"`lrs`, `smoothed_losses` and `losses` must be 1-D of one length, got {lrs.shape}, "
            f"{smooth.shape} and {raw.shape}"
        )
    n = len(lrs)
    start, end = n // 10, n - SKIP_END
    if end - start >= 3:
        lrs, smooth, raw = lrs[start:end], smooth[start:end], raw[start:end]
    else:
        start = 0
    finite = np.isfinite(smooth) & (lrs > 0)
    lrs, smooth, raw = lrs[finite], smooth[finite], raw[finite]
    if len(lrs) < 2:
        raise ValueError(f"a range-test curve needs at least 2 usable steps, got {len(lrs)} of {n}")
    lowest = int(np.argmin(smooth))
    upto = slice(0, max(lowest, 10) + 1)
    residual = (raw - smooth)[upto]
    residual = residual[np.isfinite(residual)]
    noise = fall_noise(float(residual.std()), start + 1) if len(residual) > 1 else math.nan
    # The descent starts where the smoothed loss was last within one noise of its first value.
    within = np.nonzero(smooth[: lowest + 1] >= smooth[0] - (0.0 if math.isnan(noise) else noise))[0]
    first = int(within[-1]) if len(within) else 0
    slopes = np.diff(smooth[first : lowest + 1]) / np.diff(np.log(lrs[first : lowest + 1]))
    steepest = float(lrs[first + int(np.argmin(slopes))]) if len(slopes) else float(lrs[first])
    at_min = float(lrs[lowest])
    return Suggestion(
        steepest=steepest,
        minimum_tenth=at_min / 10,
        lr_at_minimum=at_min,
        diverged=False,
        steps=n,
        smoothed_minimum=float(smooth[lowest]),
        fall=float(smooth[0] - smooth[lowest]),
        noise=noise,
    )


def readable(s: Suggestion) -> bool:
    """Whether a curve found a range: its smoothed loss fell more than :data:`NOISE_SIGMAS` times its noise.

    A curve without batch losses (``noise`` NaN) found one if it fell at all.
    """
    return s.fall > NOISE_SIGMAS * s.noise or (math.isnan(s.noise) and s.fall > 0)


@dataclasses.dataclass(frozen=True)
class RangeSettings:
    """What stays fixed across the trials of one range test.

    ``steps``: iterations of the first ramp (fastai's ``num_it`` and
    Lightning's ``num_training`` default to 100); ``max_steps``: the
    longest ramp (None: ``steps``, no second ramp); ``lengthen``: how much
    longer each next ramp is; ``min_lr``/``max_lr``: the rates at the first
    and the last step (fastai's defaults 1e-7 and 10); ``report_every``:
    steps per report to Tune (reporting every step would wait on the driver
    as long as the step trains).
    """

    model: str | ModelSource = "seed-tiny"
    batch_size: int = 64
    steps: int = 100
    min_lr: float = 1e-7
    max_lr: float = 10.0
    threads: int | None = None
    xla: bool = False
    seed: int = 0
    report_every: int = 20
    max_steps: int | None = None
    lengthen: int = 2

    def ramps(self) -> list[int]:
        """The ramp lengths a test may run, in order: ``steps * lengthen**k`` up to ``max_steps``, which ends the list.

        >>> RangeSettings(steps=100, max_steps=500).ramps()
        [100, 200, 400, 500]
        >>> RangeSettings(steps=100).ramps()
        [100]
        """
        top = max(self.steps, self.max_steps or self.steps)
        out = [self.steps]
        while out[-1] < top:
            out.append(min(top, out[-1] * self.lengthen))
        return out


def run_range_test(
    config: Mapping[str, Any],
    data: Dataset,
    settings: RangeSettings,
    report: Callable[[list[dict[str, Any]]], None],
) -> str:
    """Run the range test for one optimizer configuration; returns ``done`` or ``diverged``.

    ``config``: ``optimizer``, its settings (``momentum``, ...) and ``seed``.
    Rows ``{length, step, lr, loss, smoothed_loss, status}`` (``length``
    the ramp's steps, ``step`` 1-based, ``lr`` the rate that step applied,
    ``status`` ``running`` except on a ramp's last row) go to ``report`` in
    chunks of ``settings.report_every``, the last chunk when a ramp ends.

    The length (lrtune's rule; fastai and Lightning run a fixed 100 steps):
    a ramp whose curve cannot be read (:func:`readable`: the smoothed loss
    fell less than :data:`NOISE_SIGMAS` times its noise, whether or not it
    diverged) learned too little for its rate to tell; its last row's status
    is ``lengthened`` and the test starts again from the same initial model
    and batch order on a ramp ``settings.lengthen`` times as long, over the
    same rates, so each decade of rates gets that many times the steps
    (:meth:`RangeSettings.ramps`). The last ramp's status is the result,
    readable or not.

    Keras's ``fit`` logs, at each batch, the running mean of the epoch's
    losses, not the batch's; ``train_on_batch`` resets the metrics each
    call, so its ``loss`` is the loss of that step's batch.
    """
    ramps = settings.ramps()
    for length in ramps:
        status = _ramp(config, data, settings, length, report, last=length == ramps[-1])
        if status != "lengthened":
            return status
    raise AssertionError("unreachable: the last ramp is never lengthened")


def _ramp(
    config: Mapping[str, Any],
    data: Dataset,
    settings: RangeSettings,
    length: int,
    report: Callable[[list[dict[str, Any]]], None],
    *,
    last: bool,
) -> str:
    """One ramp of ``length`` steps from a fresh model; its status (``lengthened`` if not ``last`` and unreadable)."""
    from lrtune.training.trial import configure_tensorflow

    configure_tensorflow(settings.threads)
    import keras

    from lrtune.training.batches import training_batches
    from lrtune.training.models import build_model
    from lrtune.training.optimizers import build_optimizer

    seed = int(config.get("seed", 0))
    keras.utils.set_random_seed(seed)
    schedule = range_schedule(settings.min_lr, settings.max_lr, length)
    optimizer_settings = {k: v for k, v in config.items() if k not in ("optimizer", "seed")}
    model = build_model(settings.model, data.num_classes, tuple(data.x_train.shape[1:]))
    model.compile(
        optimizer=build_optimizer(config.get("optimizer", "sgd"), schedule, 1, **optimizer_settings),
        loss="sparse_categorical_crossentropy",
        jit_compile=settings.xla,
    )
    steps_per_epoch = math.ceil(len(data.x_train) / settings.batch_size)
    batches = iter(
        training_batches(
            data.x_train,
            data.y_train,
            settings.batch_size,
            seed=seed,
            initial_epoch=0,
            epochs=math.ceil(length / steps_per_epoch),
        )
    )
    smooth = SmoothedLoss()
    curve: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    status = "done"
    for step in range(length):
        x, y = next(batches)
        loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
        value = smooth.update(loss)
        end = smooth.diverged or step == length - 1
        if smooth.diverged:
            status = "diverged"
        row = {
            "length": length,
            "step": step + 1,
            "lr": float(schedule(float(step))),
            "loss": loss,
            "smoothed_loss": value,
            "status": "running",
            "timestamp": time.time(),
        }
        curve.append(row)
        pending.append(row)
        if end:
            if not last and not _reads(curve):
                status = "lengthened"
            row["status"] = status
        if end or len(pending) >= settings.report_every:
            report(pending)
            pending = []
        if end:
            break
    return status


def _reads(curve: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a ramp's rows give a range (:func:`readable` of :func:`suggest`)."""
    try:
        s = suggest([r["lr"] for r in curve], [r["smoothed_loss"] for r in curve], [r["loss"] for r in curve])
    except ValueError:  # fewer than 2 usable steps: diverged at once
        return False
    return readable(s)


def tune_range_trainable(config: dict[str, Any], data: Dataset, settings: RangeSettings) -> None:
    """Ray Tune function trainable: :func:`run_range_test` for ``config["arm"]``, repeat ``config["repeat"]``.

    Each report is ``{"step": last step, "rows": [...], "done": ...}``; the
    driver's sink (:class:`lrtune.engine.find.RangeSink`) writes the rows.
    The seed of repeat ``r`` is ``settings.seed + r``.
    """
    import os
    import socket
    import time

    from ray import tune

    # As lrtune's sweep trainable: a reused worker waits for this function to
    # return instead of failing the next test after Tune's default 2 s
    # (seen on a loaded machine: "Trainable runner reuse requires reset_config()").
    os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = "600"
    repeat = int(config.get("repeat", 0))
    arm = dict(config["arm"])
    arm.pop("label", None)
    arm.pop("arms", None)
    arm["seed"] = settings.seed + repeat
    host = socket.gethostname()

    def report(rows: list[dict[str, Any]]) -> None:
        done = rows[-1]["status"] in ("done", "diverged")
        tune.report({"step": rows[-1]["step"], "rows": rows, "node": host, "seed": arm["seed"], "done": done})

    try:
        run_range_test(arm, data, settings, report)
    finally:
        # Fault injection for tests: a teardown as slow as a big model's.
        time.sleep(float(os.environ.get("LRTUNE_TEST_TEARDOWN_SECONDS", 0)))
