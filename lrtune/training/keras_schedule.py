"""The one adapter from an lrtune schedule to Keras.

:class:`KerasSchedule` gives a Keras optimizer any
:class:`~lrtune.training.schedules.Schedule`; :func:`applied_learning_rate` reads back
the rate an optimizer applied at its last update.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from lrtune.training.schedules import Schedule, make_schedule

__all__ = ["KerasSchedule", "applied_learning_rate"]


@keras.saving.register_keras_serializable(package="lrtune")
class KerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Any lrtune :class:`~lrtune.training.schedules.Schedule` as a Keras schedule.

    Keras calls it with the optimizer's iteration count; epoch schedules
    see ``floor(step / steps_per_epoch)`` (see ``Schedule.at_step``).

    A reactive schedule (``plateau``) gets ``multiplier``, a variable its
    callback sets between epochs; Keras refuses to set the rate of an
    optimizer built with a schedule, so the change goes through here.
    """

    def __init__(self, schedule: Schedule, steps_per_epoch: int):
        if steps_per_epoch < 1:
            raise ValueError(
                f"Argument `steps_per_epoch` must be >= 1. Received: steps_per_epoch={steps_per_epoch}"
            )
        self.schedule = schedule
        self.steps_per_epoch = int(steps_per_epoch)
        self.multiplier = (
            keras.Variable(1.0, dtype="float32", trainable=False, name="lr_multiplier")
            if schedule.reactive
            else None
        )

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        lr = keras.ops.cast(self.schedule.at_step(step, self.steps_per_epoch, ops=keras.ops), "float32")
        return lr if self.multiplier is None else lr * self.multiplier

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.schedule.name,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.schedule.params.items()},
            "steps_per_epoch": self.steps_per_epoch,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> KerasSchedule:
        return cls(make_schedule(config["name"], **config["params"]), config["steps_per_epoch"])


def applied_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The rate the optimizer applied at its last update.

    Keras's ``optimizer.learning_rate`` evaluates a schedule at the *next*
    iteration; lrtune reports the one in effect for the epoch just ended,
    i.e. the schedule at ``iterations - 1``. Under mixed precision Keras
    wraps the optimizer in a ``LossScaleOptimizer``, whose own rate is a
    placeholder: the schedule and the iteration count are its
    ``inner_optimizer``'s.
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    schedule = optimizer._learning_rate  # the schedule object itself, not its value
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        last = max(int(optimizer.iterations.numpy()) - 1, 0)
        return float(keras.ops.convert_to_numpy(schedule(last)))
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
