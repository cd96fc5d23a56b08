"""Schedule figures: the formulas and LR-against-epoch curves.

The curves come from the same :mod:`lrtune.training.schedules` functions that train
the models, evaluated at every iteration (``Schedule.at_step``); the ``lr``
recorded for an epoch is the value at its last iteration. Reduce on
plateau reacts to results, so its curve replays its rule
(:func:`lrtune.training.plateau.replay`) on a made-up metric that stops improving.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lrtune.training.schedules import (
    SCHEDULES,
    WARMUP_PARAMS,
    fit_to_trial,
    make_schedule,
    schedule_params,
    with_warmup,
)

__all__ = ["ARTICLE_PARAMS", "EXAMPLES", "schedule_catalogue", "plot_schedules", "format_params"]

#: The seed article's settings for each of its schedules (lr 0.1, 100 epochs).
ARTICLE_PARAMS: dict[str, dict[str, Any]] = {
    "constant": {"lr": 0.1},
    "time": {"lr": 0.1, "decay": 0.001},
    "step": {"lr": 0.1, "drop": 0.5, "epochs_drop": 10},
    "exponential": {"lr": 0.1, "k": 0.1},
}

#: Every curve ``lrtune schedules`` shows: label -> (schedule, parameters).
#: After the article's, typical settings of today's schedules (spans left
#: out run over the plotted epochs, as over a trial's).
EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    **{name: (name, params) for name, params in ARTICLE_PARAMS.items()},
    "piecewise": ("piecewise", {"boundaries": [50, 75], "values": [0.1, 0.01, 0.001]}),
    "polynomial": ("polynomial", {"lr": 0.1, "end_lr": 0.0001, "power": 2.0}),
    "cosine": ("cosine", {"lr": 0.1, "lr_min": 0.0}),
    "warmup+cosine": ("cosine", {"lr": 0.1, "lr_min": 0.0, "warmup_epochs": 5, "warmup_start": 0.0}),
    "cosine_restarts": (
        "cosine_restarts",
        {"lr": 0.1, "period_epochs": 10, "lr_min": 0.0, "period_mult": 2.0, "restart_decay": 0.8},
    ),
    "one_cycle": (
        "one_cycle",
        {"max_lr": 0.1, "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
    ),
    "cyclic": ("cyclic", {"lr": 0.01, "max_lr": 0.1, "step_size_epochs": 10, "cycle_mode": "triangular2"}),
    "plateau": ("plateau", {"lr": 0.1, "factor": 0.5, "patience": 10, "min_lr": 0.0, "cooldown": 0}),
    "wsd": (
        "wsd",
        {"lr": 0.1, "decay_fraction": 0.2, "decay_shape": "1-sqrt", "lr_min": 0.0, "warmup_epochs": 5},
    ),
    "linear_to_zero": ("linear_to_zero", {"lr": 0.1, "warmup_epochs": 5}),
}

#: Where the made-up metric of the plateau curve stops improving (fraction of the epochs).
PLATEAU_FROM = 0.3


def format_params(params: dict[str, Any]) -> str:
    """``lr=0.1, boundaries=[50, 75]``: a schedule's parameters, short.

    >>> format_params({"lr": 0.1, "boundaries": [50.0, 75.0], "cycle_mode": "triangular"})
    'lr=0.1, boundaries=[50, 75], cycle_mode=triangular'
    """

    def one(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(one(x) for x in v) + "]"
        return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)

    return ", ".join(f"{k}={one(v)}" for k, v in params.items())


def schedule_catalogue(
    overrides: Sequence[str] = (), epochs: int = 100
) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(label, formula, schedule, parameters) per curve of :data:`EXAMPLES`.

    An override is ``param=value`` (every curve whose schedule takes it) or
    ``label.param=value``. Spans left out (``decay_epochs``,
    ``cycle_epochs``) are ``epochs`` less any warmup, as in a trial.

    >>> [p for n, f, s, p in schedule_catalogue(["lr=0.05", "step.drop=0.25"]) if n == "step"]
    [{'lr': 0.05, 'drop': 0.25, 'epochs_drop': 10}]
    """
    params = {label: dict(values) for label, (_, values) in EXAMPLES.items()}

    def takes(label: str, param: str) -> bool:
        return (
            param in schedule_params(EXAMPLES[label][0]) or param in params[label] and param in WARMUP_PARAMS
        )

    for item in overrides:
        key, sep, text = item.partition("=")
        try:
            value = float(text)
        except ValueError:
            value = None
        if not sep or value is None:
            raise ValueError(f"--set {item!r}: expected PARAM=NUMBER or SCHEDULE.PARAM=NUMBER")
        target, _, param = key.rpartition(".")
        if target and target not in EXAMPLES:
            raise ValueError(f"--set {item!r}: unknown schedule {target!r}; valid: {', '.join(EXAMPLES)}")
        labels = [target] if target else [label for label in EXAMPLES if takes(label, param)]
        if not labels or not all(takes(label, param) for label in labels):
            raise ValueError(f"--set {item!r}: no schedule takes {param!r}")
        for label in labels:
            params[label][param] = value
    catalogue = []
    for label, (name, _) in EXAMPLES.items():
        fitted = fit_to_trial(name, params[label], epochs)
        schedule = make_schedule(name, **fitted)  # checks the values
        formula = _first_line(SCHEDULES[name])
        shift = " - W" if schedule.warmup_epochs else ""
        if "(x)" in formula:
            formula += f", x = (step{shift}) / steps_per_epoch" if shift else ", x = step / steps_per_epoch"
        if schedule.warmup_epochs:
            formula = f"{_first_line(with_warmup)}, W = warmup_epochs * steps_per_epoch; then {formula}"
        catalogue.append((label, formula, name, fitted))
    return catalogue


def _first_line(function) -> str:
    return (function.__doc__ or "").strip().splitlines()[0].rstrip(".").replace("``", "")


def plot_schedules(
    curves: Sequence[tuple[str, str, dict[str, Any]]], path: str | Path, *, epochs: int, steps_per_epoch: int
) -> Path:
    """Draw LR against epoch for each (label, schedule, params), one panel each, into the PNG ``path``."""
    import math
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    steps = np.arange(epochs * steps_per_epoch)
    ncols = min(4, len(curves))
    nrows = math.ceil(len(curves) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.6 * ncols, 2.7 * nrows + 0.6), squeeze=False, constrained_layout=True
    )
    for ax, (label, name, params) in zip(axes.flat, curves, strict=False):
        schedule = make_schedule(name, **params)
        lr = np.asarray(schedule.at_step(steps, steps_per_epoch), dtype=float)
        title = label
        if schedule.reactive:
            from lrtune.training.plateau import replay

            flat_from = int(PLATEAU_FROM * epochs)
            metric = np.minimum(np.arange(epochs), flat_from)  # improves, then stalls for good
            lr = lr * np.repeat(
                np.asarray(replay(schedule, metric, "max")) / schedule.params["lr"], steps_per_epoch
            )
            title = f"{label} (metric flat from epoch {flat_from})"
        ax.plot(steps / steps_per_epoch, lr, lw=1.2)
        ax.set_title(f"{title}\n{textwrap.fill(format_params(_shown(params)), 48)}", fontsize=7.5)
        ax.set_xlim(0, epochs)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(curves) :]:
        ax.set_visible(False)
    fig.suptitle(f"Learning rate at every step ({steps_per_epoch} steps per epoch)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _shown(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters worth printing in a panel: drop the spans the plot filled in."""
    return {k: v for k, v in params.items() if k not in ("decay_epochs", "cycle_epochs")}
