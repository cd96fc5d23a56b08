"""Keras optimizers built from a trial config, with published defaults.

Keras 3 changed several defaults the article relied on (Adagrad and
Adadelta now start at lr 0.001, epsilon is 1e-7) and dropped ``lr=`` and
``decay=``. lrtune states every default explicitly, so a sweep file means
the same thing whatever Keras version runs it:

=========  ======  ==============================================================
optimizer  lr      other defaults
=========  ======  ==============================================================
sgd        0.1     momentum 0.0, nesterov False, weight_decay 0.0
adagrad    0.01    epsilon 1e-8
adadelta   1.0     rho 0.95, epsilon 1e-8
rmsprop    0.001   rho 0.9, epsilon 1e-8
adam       0.001   beta_1 0.9, beta_2 0.999, epsilon 1e-8, weight_decay 0.0, amsgrad False
adamw      0.001   beta_1 0.9, beta_2 0.999, epsilon 1e-8, weight_decay 0.01, amsgrad False
nadam      0.002   beta_1 0.9, beta_2 0.999, epsilon 1e-8, weight_decay 0.0
lion       0.0001  beta_1 0.9, beta_2 0.99, weight_decay 0.0
=========  ======  ==============================================================

The first five are the seed article's (Keras 2's). The others:

- ``adamw``: Adam with decoupled weight decay (Loshchilov & Hutter 2019,
  "Decoupled Weight Decay Regularization"); ``weight_decay`` 0.01 is
  PyTorch's ``AdamW`` default (Keras 3's is 0.004).
- ``nadam``: Adam with Nesterov momentum (Dozat 2016, "Incorporating
  Nesterov Momentum into Adam"); lr 0.002 is the value Keras 2 shipped
  from that paper (Keras 3's is 0.001).
- ``amsgrad`` (Adam, AdamW): divide by the running maximum of the second
  moment instead of the moment itself (Reddi et al. 2018, "On the
  Convergence of Adam and Beyond"); off by default, as in Keras and PyTorch.
- ``lion``: sign momentum (Chen et al. 2023, "Symbolic Discovery of
  Optimization Algorithms"); lr 1e-4, betas (0.9, 0.99) and no decay are
  the authors' implementation defaults (the paper advises an lr 3-10x
  smaller and a weight decay 3-10x larger than AdamW's).

``weight_decay`` is decoupled for every optimizer that takes it (Keras 3's
base optimizer): each step, before the gradient update, every trainable
variable (biases included) is multiplied by ``1 - lr_t * weight_decay``,
``lr_t`` the schedule's rate at that step, as PyTorch's ``AdamW`` does. It
is not an L2 term in the loss, so Adam's moments never see it.

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
:class:`~lrtune.training.keras_schedule.KerasSchedule` as its ``learning_rate``.
Numbers arrive as ``float`` (Keras's SGD refuses ``momentum=0``, an int).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lrtune.training.schedules import Schedule

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
    "adamw": "AdamW",
    "nadam": "Nadam",
    "lion": "Lion",
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adagrad": {"lr": 0.01, "epsilon": 1e-8},
    "adadelta": {"lr": 1.0, "rho": 0.95, "epsilon": 1e-8},
    "rmsprop": {"lr": 0.001, "rho": 0.9, "epsilon": 1e-8},
    "adam": {
        "lr": 0.001,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-8,
        "weight_decay": 0.0,
        "amsgrad": False,
    },
    "adamw": {
        "lr": 0.001,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-8,
        "weight_decay": 0.01,
        "amsgrad": False,
    },
    "nadam": {"lr": 0.002, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "weight_decay": 0.0},
    "lion": {"lr": 1e-4, "beta_1": 0.9, "beta_2": 0.99, "weight_decay": 0.0},
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
    if "weight_decay" in settings and not settings["weight_decay"] and name != "adamw":
        # None skips Keras's decay step instead of multiplying every variable by 1 (AdamW insists on a float).
        settings["weight_decay"] = None
    import keras

    from lrtune.training.keras_schedule import KerasSchedule

    optimizer_class = getattr(keras.optimizers, OPTIMIZERS[name])
    return optimizer_class(
        learning_rate=KerasSchedule(schedule, steps_per_epoch), **FIXED.get(name, {}), **settings
    )
