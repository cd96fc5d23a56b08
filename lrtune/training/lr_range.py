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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lrtune.training.schedules import Schedule

if TYPE_CHECKING:
    from lrtune.data import Dataset
    from lrtune.training.models import ModelSource

__all__ = [
    "BETA",
    "DIVERGE_FACTOR",
    "RangeSettings",
    "SmoothedLoss",
    "range_schedule",
    "run_range_test",
    "smoothed",
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


@dataclasses.dataclass(frozen=True)
class RangeSettings:
    """What stays fixed across the trials of one range test.

    ``steps``: iterations per trial (fastai's ``num_it`` and Lightning's
    ``num_training`` default to 100); ``min_lr``/``max_lr``: the rates at the
    first and the last step (fastai's defaults 1e-7 and 10);
    ``report_every``: steps per report to Tune (reporting every step would
    wait on the driver as long as the step trains).
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


def run_range_test(
    config: Mapping[str, Any],
    data: Dataset,
    settings: RangeSettings,
    report: Callable[[list[dict[str, Any]]], None],
) -> str:
    """Run the range test for one optimizer configuration; returns ``done`` or ``diverged``.

    ``config``: ``optimizer``, its settings (``momentum``, ...) and ``seed``.
    Rows ``{step, lr, loss, smoothed_loss, status}`` (``step`` 1-based,
    ``lr`` the rate that step applied, ``status`` ``running`` except on the
    last row) go to ``report`` in chunks of ``settings.report_every``, the
    last chunk when the test ends.

    Keras's ``fit`` logs, at each batch, the running mean of the epoch's
    losses, not the batch's; ``train_on_batch`` resets the metrics each
    call, so its ``loss`` is the loss of that step's batch.
    """
    from lrtune.training.trial import configure_tensorflow

    configure_tensorflow(settings.threads)
    import keras

    from lrtune.training.batches import training_batches
    from lrtune.training.models import build_model
    from lrtune.training.optimizers import build_optimizer

    seed = int(config.get("seed", 0))
    keras.utils.set_random_seed(seed)
    schedule = range_schedule(settings.min_lr, settings.max_lr, settings.steps)
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
            epochs=math.ceil(settings.steps / steps_per_epoch),
        )
    )
    smooth = SmoothedLoss()
    rows: list[dict[str, Any]] = []
    status = "done"
    for step in range(settings.steps):
        x, y = next(batches)
        loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
        value = smooth.update(loss)
        last = smooth.diverged or step == settings.steps - 1
        if smooth.diverged:
            status = "diverged"
        rows.append(
            {
                "step": step + 1,
                "lr": float(schedule(float(step))),
                "loss": loss,
                "smoothed_loss": value,
                "status": status if last else "running",
                "timestamp": time.time(),
            }
        )
        if last or len(rows) >= settings.report_every:
            report(rows)
            rows = []
        if last:
            break
    return status


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
        done = rows[-1]["status"] != "running"
        tune.report({"step": rows[-1]["step"], "rows": rows, "node": host, "seed": arm["seed"], "done": done})

    try:
        run_range_test(arm, data, settings, report)
    finally:
        # Fault injection for tests: a teardown as slow as a big model's.
        time.sleep(float(os.environ.get("LRTUNE_TEST_TEARDOWN_SECONDS", 0)))
