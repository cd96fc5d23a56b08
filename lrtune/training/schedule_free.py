"""Schedule-free AdamW's evaluation point: validate the averaged weights ``x``, not ``y``.

Schedule-Free AdamW (Defazio et al. 2024, "The Road Less Scheduled")
keeps three sequences per weight: ``z`` (plain AdamW-style steps), ``x``
(the uniform running average of the ``z``: ``x_t = (1 - 1/t) * x_{t-1} +
z_t / t``) and ``y = (1 - beta_1) * z + beta_1 * x``, the point where
gradients are taken. The method's guarantees, and the accuracy its paper
reports, are for ``x``.

``keras.optimizers.ScheduleFreeAdamW`` (Keras 3.15) stores ``y`` in the
model's weights and ``z`` in its ``momentum`` slots, and never stores
``x``: each step recovers it as ``x = (y - (1 - beta_1) * z) / beta_1``.
Keras has no switch to evaluate at ``x``, so ``fit``'s validation, and a
model saved after training, are at ``y``. :class:`ValidateAtAverage` swaps
the weights to ``x`` for each validation inside ``fit`` and back to ``y``
(the very same arrays) before training goes on, so training and every
checkpoint (which must hold ``y`` and ``z`` for a resume to continue bit
for bit) are untouched. Training metrics (``loss``, ``accuracy``) stay at
``y``, where they were computed; ``val_*`` are at ``x``.

Not done: a model with BatchNorm keeps the moving statistics gathered at
``y`` (the authors recompute them at ``x`` with a few forward passes);
none of lrtune's built-in models has BatchNorm.
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["averaged_weights", "ValidateAtAverage", "is_schedule_free"]


def is_schedule_free(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether ``optimizer`` (or the one a ``LossScaleOptimizer`` wraps) is Keras's ScheduleFreeAdamW."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return isinstance(optimizer, keras.optimizers.ScheduleFreeAdamW)


def averaged_weights(optimizer: keras.optimizers.Optimizer, variables) -> list[np.ndarray]:
    """``x = (y - (1 - beta_1) * z) / beta_1`` for each of ``variables`` (their value is ``y``).

    ``optimizer`` is the built ScheduleFreeAdamW that trains ``variables``;
    ``z`` is its ``momentum`` slot of each. Before the first step ``z = y``
    (Keras starts it there), so ``x = y``.
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    beta_1 = float(keras.ops.convert_to_numpy(optimizer.beta_1))
    averaged = []
    for variable in variables:
        # Keras's slot list, indexed by its own rule: x is not stored anywhere public.
        z = optimizer._momentums[optimizer._get_variable_index(variable)]
        y = keras.ops.convert_to_numpy(variable.value)
        x = (y - (1.0 - beta_1) * keras.ops.convert_to_numpy(z.value)) / beta_1
        averaged.append(x.astype(y.dtype))
    return averaged


class ValidateAtAverage(keras.callbacks.Callback):
    """During each evaluation (``fit``'s validation), the model's trainable weights are ``x``.

    ``on_test_begin`` keeps ``y`` and assigns ``x``; ``on_test_end`` puts
    ``y`` back exactly. Put it first among the callbacks, so that no other
    sees the swapped weights outside an evaluation.
    """

    def __init__(self):
        super().__init__()
        self._kept: list[np.ndarray] | None = None

    def on_test_begin(self, logs=None):
        variables = self.model.trainable_variables
        optimizer = self.model.optimizer
        if not getattr(optimizer, "built", False) and not getattr(
            getattr(optimizer, "inner_optimizer", optimizer), "built", False
        ):
            return  # no step yet: x = y
        self._kept = [keras.ops.convert_to_numpy(v.value) for v in variables]
        for variable, x in zip(variables, averaged_weights(optimizer, variables), strict=True):
            variable.assign(x)

    def on_test_end(self, logs=None):
        if self._kept is None:
            return
        for variable, y in zip(self.model.trainable_variables, self._kept, strict=True):
            variable.assign(y)
        self._kept = None
