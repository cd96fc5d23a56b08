"""Schedule figures: the formulas and LR-against-epoch curves.

The curves come from the same :mod:`lrtune.schedules` functions that train
the models, evaluated at each epoch's last iteration (as recorded in
``lr``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lrtune.schedules import SCHEDULES, lr_by_epoch, make_schedule, schedule_params

__all__ = ["ARTICLE_PARAMS", "schedule_catalogue", "plot_schedules", "format_params"]

#: The seed article's settings for each schedule (lr 0.1, 100 epochs).
ARTICLE_PARAMS: dict[str, dict[str, float]] = {
    "constant": {"lr": 0.1},
    "time": {"lr": 0.1, "decay": 0.001},
    "step": {"lr": 0.1, "drop": 0.5, "epochs_drop": 10},
    "exponential": {"lr": 0.1, "k": 0.1},
    # Not in the article: a typical piecewise schedule (÷10 at 50% and 75%).
    "piecewise": {"boundaries": [50, 75], "values": [0.1, 0.01, 0.001]},
}


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


def schedule_catalogue(overrides: Sequence[str] = ()) -> list[tuple[str, str, dict[str, float]]]:
    """(name, formula, parameters) per schedule, article values unless overridden.

    An override is ``param=value`` (every schedule that takes it) or
    ``schedule.param=value``.

    >>> [p for n, f, p in schedule_catalogue(["lr=0.05", "step.drop=0.25"]) if n == "step"]
    [{'lr': 0.05, 'drop': 0.25, 'epochs_drop': 10}]
    """
    params = {name: dict(values) for name, values in ARTICLE_PARAMS.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        try:
            value = float(text)
        except ValueError:
            value = None
        if not sep or value is None:
            raise ValueError(f"--set {item!r}: expected PARAM=NUMBER or SCHEDULE.PARAM=NUMBER")
        target, _, param = key.rpartition(".")
        names = [target] if target else [n for n in SCHEDULES if param in schedule_params(n)]
        if target and target not in SCHEDULES:
            raise ValueError(f"--set {item!r}: unknown schedule {target!r}; valid: {', '.join(SCHEDULES)}")
        if not names or any(param not in schedule_params(n) for n in names):
            raise ValueError(f"--set {item!r}: no schedule takes {param!r}")
        for name in names:
            params[name][param] = value
    catalogue = []
    for name, factory in SCHEDULES.items():
        make_schedule(name, **params[name])  # checks the values
        formula = (factory.__doc__ or "").strip().splitlines()[0].rstrip(".").replace("``", "")
        catalogue.append((name, formula, params[name]))
    return catalogue


def plot_schedules(
    schedules: Sequence[tuple[str, dict[str, float]]], path: str | Path, *, epochs: int, steps_per_epoch: int
) -> Path:
    """Draw LR against epoch for each (name, params) into the PNG ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (linear, log) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    epoch = np.arange(1, epochs + 1)
    for name, params in schedules:
        lr = lr_by_epoch(make_schedule(name, **params), epochs, steps_per_epoch)
        label = f"{name} ({format_params(params)})"
        for ax in (linear, log):
            ax.plot(
                epoch, lr, label=label, drawstyle="steps-post" if name in ("step", "piecewise") else "default"
            )
    linear.set_title("learning rate by epoch")
    log.set_title("same, log scale")
    log.set_yscale("log")
    for ax in (linear, log):
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
    linear.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
