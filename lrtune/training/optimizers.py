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
schedule_free_adamw
           0.0025  beta_1 0.9, beta_2 0.999, epsilon 1e-8, weight_decay 0.0
muon       0.001   momentum 0.95, nesterov True, beta_1 0.9, beta_2 0.999, epsilon 1e-7,
                   weight_decay 0.004
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

- ``schedule_free_adamw`` (``keras.optimizers.ScheduleFreeAdamW``):
  Schedule-Free AdamW (Defazio et al. 2024, "The Road Less Scheduled");
  the defaults are the authors' ``AdamWScheduleFree``
  (facebookresearch/schedule_free): lr 0.0025, betas (0.9, 0.999), eps
  1e-8, no weight decay. It keeps three sequences: ``z`` (the gradient
  steps, Keras's ``momentum`` slot), ``x`` (their running average, the
  point the method's guarantees are about) and ``y = (1 - beta_1) * z +
  beta_1 * x``, where gradients are taken. Keras stores ``y`` in the
  model's weights and ``x`` nowhere (it recovers ``x = (y - (1 - beta_1)
  * z) / beta_1`` at each step), so ``fit`` validates ``y``. lrtune
  validates at ``x`` (:mod:`lrtune.training.schedule_free`). Keras
  averages with weight ``1 / t`` whatever the rate (the paper weights by
  ``lr_t**2``, which discounts a warmup), and applies ``weight_decay`` to
  ``y``. It replaces the schedule: only ``constant``, with or without a
  warmup, goes with it (:func:`schedule_conflict`).
- ``muon`` (``keras.optimizers.Muon``): momentum orthogonalised by
  Newton-Schulz iterations (Jordan et al. 2024; Liu et al. 2025, "Muon is
  Scalable for LLM Training", whose update scaling ``0.2 * sqrt(max(n,
  m))`` Keras applies so that AdamW's lr and weight decay fit). Keras
  gives Muon's step only to 2-D variables whose path names no embedding;
  every other variable (Conv2D kernels, which are 4-D, biases) gets an
  AdamW step with ``beta_1``, ``beta_2``, ``epsilon`` at the same lr.
  On a convnet most weights are therefore AdamW's: :func:`muon_split`
  says which. Defaults are Keras's (momentum 0.95, Nesterov, 5
  Newton-Schulz steps, weight decay 0.004); lrtune's ``weight_decay`` is
  both Keras's ``weight_decay`` (Muon's variables) and
  ``adam_weight_decay`` (the rest), one setting as in Liu et al.

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

__all__ = [
    "OPTIMIZERS",
    "DEFAULTS",
    "FIXED",
    "ONLY_SCHEDULES",
    "NOT_PERTURBED",
    "NOTES",
    "build_optimizer",
    "schedule_conflict",
    "muon_split",
]

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
    "schedule_free_adamw": "ScheduleFreeAdamW",
    "muon": "Muon",
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
    "schedule_free_adamw": {
        "lr": 0.0025,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-8,
        "weight_decay": 0.0,
    },
    "muon": {
        "lr": 0.001,
        "momentum": 0.95,
        "nesterov": True,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-7,
        "weight_decay": 0.004,
    },
}

#: Schedules an optimizer can be driven by, where not all: schedule-free
#: AdamW is its own schedule (a decay would fight its averaging).
ONLY_SCHEDULES: dict[str, tuple[str, ...]] = {"schedule_free_adamw": ("constant",)}

#: What `lrtune schedules` says about optimizers that change how a schedule acts.
NOTES: dict[str, str] = {
    "schedule_free_adamw": (
        "its own schedule: only constant (a warmup allowed); validation is at the averaged weights x, "
        "not Keras's training point y; lrtune find leaves it out; PBT may not perturb beta_1"
    ),
    "muon": (
        "Keras gives Muon's step only to 2-D variables (Dense kernels); Conv2D kernels (4-D) and biases "
        "get AdamW's. seed-tiny (10 classes): 2 variables, 25,248 weights Muon (the output layer's too); 6 variables, 434 weights AdamW"
    ),
}

#: Settings PBT may not change during training, per optimizer, with the reason.
NOT_PERTURBED: dict[str, dict[str, str]] = {
    "schedule_free_adamw": {
        "beta_1": "Keras keeps only y and z and recovers the averaged weights x = (y - (1 - beta_1) * z) "
        "/ beta_1 with the current beta_1, so a new beta_1 would corrupt x",
    }
}

#: lrtune's names for Keras arguments that Keras spells otherwise, per optimizer.
KERAS_NAMES: dict[str, dict[str, str]] = {"muon": {"beta_1": "adam_beta_1", "beta_2": "adam_beta_2"}}


def schedule_conflict(optimizer: str, schedule: str) -> str | None:
    """Why ``optimizer`` cannot run with ``schedule``; None when it can.

    >>> schedule_conflict("adamw", "cosine") is None
    True
    >>> print(schedule_conflict("schedule_free_adamw", "cosine"))
    optimizer schedule_free_adamw replaces the schedule (its averaged weights x play the part of a decay, and Keras averages every step alike, 1/t, whatever the rate); use schedule: constant, with warmup_epochs if wanted. Received: schedule=cosine
    """
    allowed = ONLY_SCHEDULES.get(optimizer)
    if allowed is None or schedule in allowed:
        return None
    return (
        f"optimizer {optimizer} replaces the schedule (its averaged weights x play the part of a decay, "
        "and Keras averages every step alike, 1/t, whatever the rate); use schedule: "
        f"{' or '.join(allowed)}, with warmup_epochs if wanted. Received: schedule={schedule}"
    )


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
    if name == "muon":
        settings["nesterov"] = bool(settings["nesterov"])
        settings["adam_weight_decay"] = settings["weight_decay"]  # one decay for both kinds of step
    settings = {KERAS_NAMES.get(name, {}).get(k, k): v for k, v in settings.items()}
    import keras

    from lrtune.training.keras_schedule import KerasSchedule

    optimizer_class = getattr(keras.optimizers, OPTIMIZERS[name])
    return optimizer_class(
        learning_rate=KerasSchedule(schedule, steps_per_epoch), **FIXED.get(name, {}), **settings
    )


def muon_split(
    model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None
) -> dict[str, dict[str, int]]:
    """Which of ``model``'s trainable variables Keras's Muon updates with Muon, which with AdamW.

    The rule is Keras's own (``Muon._should_use_adamw``: any variable that
    is not 2-D, or whose path names an embedding or matches
    ``exclude_layers``, gets AdamW), asked of ``optimizer`` (default: a
    Muon with lrtune's settings). Returns ``{"muon": {"variables": n,
    "weights": w}, "adamw": {...}}``: counts of variables and of the
    numbers in them.
    """
    import math

    import keras

    optimizer = optimizer or keras.optimizers.Muon()
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    split = {"muon": {"variables": 0, "weights": 0}, "adamw": {"variables": 0, "weights": 0}}
    for variable in model.trainable_variables:
        # Keras's private rule, asked rather than copied, so the answer follows the installed Keras.
        kind = "adamw" if optimizer._should_use_adamw(variable) else "muon"
        split[kind]["variables"] += 1
        split[kind]["weights"] += math.prod(variable.shape)
    return split
