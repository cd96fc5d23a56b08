"""Keras optimizers built from a trial config, with the seed article's defaults.

Keras 3 changed several defaults the article relied on (Adagrad and
Adadelta now start at lr 0.001, epsilon is 1e-7) and dropped ``lr=`` and
``decay=``. lrtune states every default explicitly, so a sweep file means
the same thing whatever Keras version runs it:

=========  =====  ==========================================
optimizer  lr     other defaults
=========  =====  ==========================================
sgd        0.1    momentum 0.0, nesterov False
adagrad    0.01   epsilon 1e-8
adadelta   1.0    rho 0.95, epsilon 1e-8
rmsprop    0.001  rho 0.9, epsilon 1e-8
adam       0.001  beta_1 0.9, beta_2 0.999, epsilon 1e-8
=========  =====  ==========================================

Beyond the defaults, the update rules themselves (Keras 2.0.x
``keras/optimizers.py`` against Keras 3, one step on a known gradient in
``tests/test_optimizers_models.py``):

- SGD (with momentum, Nesterov), Adadelta, Adam: the same formulas.
- Adagrad: Keras 2.0 started the accumulator at 0, Keras 3 at 0.1, which
  shrinks the first steps (a step of ``lr * g / sqrt(0.1 + g**2)`` instead
  of ``lr * g / |g|``). lrtune passes ``initial_accumulator_value=0.0``
  (:data:`FIXED`), the article's rule.
- Adagrad and RMSprop: Keras 2.0 divided by ``sqrt(a) + epsilon``, Keras 3
  by ``sqrt(a + epsilon)``. Keras 3 has no switch for this; the two agree
  to within 1% once ``sqrt(a) >= 100 * sqrt(epsilon)`` (``1e-2`` for the
  default ``1e-8``), and differ for weights whose gradients stay far
  smaller. This difference remains.

Any schedule combines with any optimizer: the optimizer gets a
:class:`~lrtune.keras_schedule.KerasSchedule` as its ``learning_rate``.
Numbers arrive as ``float`` (Keras's SGD refuses ``momentum=0``, an int).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lrtune.schedules import Schedule

if TYPE_CHECKING:
    import keras

__all__ = ["OPTIMIZERS", "DEFAULTS", "FIXED", "build_optimizer"]

#: Sweep-file name -> class name in ``keras.optimizers``.
OPTIMIZERS: dict[str, str] = {
    "sgd": "SGD",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "rmsprop": "RMSprop",
    "adam": "Adam",
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.1, "momentum": 0.0, "nesterov": False},
    "adagrad": {"lr": 0.01, "epsilon": 1e-8},
    "adadelta": {"lr": 1.0, "rho": 0.95, "epsilon": 1e-8},
    "rmsprop": {"lr": 0.001, "rho": 0.9, "epsilon": 1e-8},
    "adam": {"lr": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8},
}

#: Keras arguments lrtune fixes to the article-era rule; not sweep settings.
#: Keras 3's Adagrad starts its accumulator at 0.1, Keras 2.0's at 0.
FIXED: dict[str, dict[str, Any]] = {
    "adagrad": {"initial_accumulator_value": 0.0},
}


def build_optimizer(
    name: str, schedule: Schedule, steps_per_epoch: int, **hyper: Any
) -> keras.optimizers.Optimizer:
    """Optimizer ``name`` driven by ``schedule``, other settings from ``hyper``.

    ``hyper`` may hold the keys of ``DEFAULTS[name]`` except ``lr`` (the
    schedule carries it); missing ones take the article's defaults and
    unknown ones raise.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}. Valid optimizers: {', '.join(OPTIMIZERS)}.")
    allowed = {k: v for k, v in DEFAULTS[name].items() if k != "lr"}
    unexpected = sorted(set(hyper) - set(allowed))
    if unexpected:
        raise ValueError(
            f"Optimizer {name!r} takes ({', '.join(allowed) or 'no settings'}); "
            f"got unexpected {', '.join(unexpected)}."
        )
    settings = {
        k: v if isinstance(v, bool) or not isinstance(v, (int, float)) else float(v)
        for k, v in {**allowed, **hyper}.items()
    }
    if name == "sgd":
        settings["nesterov"] = bool(settings["nesterov"])
    import keras

    from lrtune.keras_schedule import KerasSchedule

    optimizer_class = getattr(keras.optimizers, OPTIMIZERS[name])
    return optimizer_class(
        learning_rate=KerasSchedule(schedule, steps_per_epoch), **FIXED.get(name, {}), **settings
    )
