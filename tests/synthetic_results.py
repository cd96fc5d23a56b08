"""Synthetic sweep results with known answers, written as real files.

:func:`write_sweep` lays out ``<dir>/metrics/part-0.parquet``
(``METRICS_SCHEMA``), ``<dir>/trials.parquet`` (``TRIALS_SCHEMA``) and
``<dir>/sweep.yaml`` as a sweep would, from :func:`run` descriptions: a
configuration and the validation accuracy at each epoch. Everything else
follows from those: ``lr`` from the schedule functions that train models,
losses from the accuracy, statuses and best epochs from the curve.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from lrtune.results.tables import METRICS_SCHEMA, TRIALS_SCHEMA, config_columns, family
from lrtune.training.schedules import lr_by_epoch, make_schedule, schedule_params

STEPS_PER_EPOCH = 10
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def run(
    config: Mapping[str, Any],
    val_accuracy: Sequence[float],
    *,
    val_loss: Sequence[float] | None = None,
    repeat: int = 0,
    status: str = "done",
    error: str | None = None,
    hparams: Sequence[Mapping[str, Any]] | None = None,
    trained_by: Sequence[int | None] | None = None,
) -> dict[str, Any]:
    """One trial: ``config`` (optimizer, schedule, lr, ...) and its curve.

    ``val_loss`` defaults to ``2.3 * (1 - val_accuracy) + 0.1``; NaN in
    either marks a diverged epoch. An empty curve is a trial that failed
    before its first epoch (it appears in ``trials.parquet`` only).

    PBT: ``hparams[e]`` overrides ``config`` in epoch ``e + 1`` (the values
    in effect then), and ``trained_by[e]`` is the index of the run that
    trained that epoch (None: this run).
    """
    accuracy = [float(a) for a in val_accuracy]
    loss = [2.3 * (1 - a) + 0.1 for a in accuracy] if val_loss is None else [float(v) for v in val_loss]
    if len(loss) != len(accuracy):
        raise ValueError(f"val_loss has {len(loss)} epochs, val_accuracy {len(accuracy)}")
    return {
        "config": dict(config),
        "val_accuracy": accuracy,
        "val_loss": loss,
        "repeat": repeat,
        "status": status,
        "error": error,
        "hparams": list(hparams) if hparams is not None else [{}] * len(accuracy),
        "trained_by": list(trained_by) if trained_by is not None else [None] * len(accuracy),
    }


def _lr(config: Mapping[str, Any], epochs: int) -> list[float]:
    name = config.get("schedule", "constant")
    params = {p: config[p] for p in schedule_params(name) if p in config}
    if "lr" in schedule_params(name):
        params.setdefault("lr", 0.1)
    return [float(v) for v in lr_by_epoch(make_schedule(name, **params), epochs, STEPS_PER_EPOCH)]


def write_sweep(
    directory: str | Path,
    runs: Sequence[Mapping[str, Any]],
    *,
    epochs: int,
    metric: str = "val_accuracy",
    mode: str | None = None,
    name: str = "synthetic",
    trials_file: bool = True,
    sweep_file: bool = True,
    scheduler: Any = None,
) -> str:
    """Write the results of ``runs`` under ``directory``; returns it as a string."""
    root = Path(directory)
    (root / "metrics").mkdir(parents=True, exist_ok=True)
    metric_rows, trial_rows = [], []
    for i, r in enumerate(runs):
        trial_id = f"{name}_{i:05d}"
        n = len(r["val_accuracy"])
        final = config_columns({**r["config"], **(r["hparams"][-1] if n else {})})
        fam = family(final["config.optimizer"], final["config.schedule"])
        for e in range(n):
            in_effect = {**r["config"], **r["hparams"][e]}
            config = config_columns(in_effect)
            donor = r["trained_by"][e]
            va, vl = r["val_accuracy"][e], r["val_loss"][e]
            last = e == n - 1
            row_status = r["status"] if last and r["status"] in ("done", "diverged") else "running"
            metric_rows.append(
                {
                    "sweep": name,
                    "trial_id": trial_id,
                    "epoch": e + 1,
                    "lr": _lr(in_effect, n)[e],
                    "loss": vl * 0.9,
                    "accuracy": min(1.0, va + 0.03) if math.isfinite(va) else math.nan,
                    "val_loss": vl,
                    "val_accuracy": va,
                    "epoch_seconds": 2.0,
                    "images_per_second": 5000.0,
                    "status": row_status,
                    "timestamp": T0 + dt.timedelta(seconds=10 * i + e),
                    "node": "node-a",
                    "node_id": "a" * 8,
                    "run": f"run-{i if donor is None else donor}",
                    "trained_by": trial_id if donor is None else f"{name}_{donor:05d}",
                    "arm": fam,
                    "family": fam,
                    "repeat": r["repeat"],
                    "seed": r["repeat"],
                    **config,
                }
            )
        curve = dict(enumerate(r[metric], start=1))
        finite = {e: v for e, v in curve.items() if math.isfinite(v)}
        pick = max if (mode or ("min" if metric.endswith("loss") else "max")) == "max" else min
        best_epoch = pick(finite, key=finite.get) if finite else None
        trial_rows.append(
            {
                "sweep": name,
                "trial_id": trial_id,
                "status": r["status"],
                "error": r["error"],
                "epochs_run": n,
                "metric": metric,
                "best_epoch": best_epoch,
                "best_metric": finite.get(best_epoch),
                "final_metric": curve.get(n),
                "start_time": T0,
                "end_time": T0 + dt.timedelta(seconds=n),
                "node": "node-a",
                "arm": fam,
                "family": fam,
                "repeat": r["repeat"],
                "seed": r["repeat"],
                **final,
            }
        )
    pq.write_table(
        pa.Table.from_pylist(metric_rows, schema=METRICS_SCHEMA), root / "metrics" / "part-0.parquet"
    )
    if trials_file:
        pq.write_table(pa.Table.from_pylist(trial_rows, schema=TRIALS_SCHEMA), root / "trials.parquet")
    if sweep_file:
        spec = {"name": name, "epochs": epochs, "metric": metric, "repeats": 2, "space": []}
        if mode is not None:
            spec["mode"] = mode
        if scheduler is not None:
            spec["scheduler"] = scheduler
        for r in runs:
            if r["config"] not in spec["space"]:
                spec["space"].append(dict(r["config"]))
        (root / "sweep.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(root)


# --- a sweep with something of everything, for the report -------------------


def sgd(schedule: str = "constant", **params: float) -> dict[str, Any]:
    return {"optimizer": "sgd", "schedule": schedule, "momentum": 0.9, **params}


def rising(start: float, end: float, epochs: int, wobble: float = 0.0) -> list[float]:
    """Accuracy rising from ``start`` to ``end`` over ``epochs``, shifted by ``wobble``."""
    return [
        start + (end - start) * (1 - math.exp(-3 * (e + 1) / epochs)) / (1 - math.exp(-3)) + wobble
        for e in range(epochs)
    ]


def everything(directory: str | Path, *, epochs: int = 8, **kwargs: Any) -> str:
    """A finished sweep with a bit of everything: 29 trials over 6 families.

    Constant, time, exponential, adam and rmsprop at one setting each; step
    as an lr x drop x epochs_drop grid (0.01/0.05 x 0.25/0.5 x 2/4); two
    repeats of each, plus a diverged, a failed and an early-stopped trial.
    The best is step lr=0.05, drop=0.5, epochs_drop=4 (final 0.825 mean).
    """
    runs = []
    for repeat, wobble in enumerate((-0.01, 0.01)):
        runs.append(run(sgd("constant", lr=0.05), rising(0.3, 0.70, epochs, wobble), repeat=repeat))
        runs.append(run(sgd("time", lr=0.05, decay=0.001), rising(0.3, 0.72, epochs, wobble), repeat=repeat))
        runs.append(run(sgd("exponential", lr=0.05, k=0.2), rising(0.3, 0.66, epochs, wobble), repeat=repeat))
        runs.append(run({"optimizer": "adam", "lr": 0.001}, rising(0.4, 0.74, epochs, wobble), repeat=repeat))
        runs.append(
            run({"optimizer": "rmsprop", "lr": 0.001}, rising(0.35, 0.71, epochs, wobble), repeat=repeat)
        )
        for lr in (0.01, 0.05):
            for drop in (0.25, 0.5):
                for epochs_drop in (2, 4):
                    end = 0.68 + 2 * lr + 0.05 * drop + 0.005 * epochs_drop
                    runs.append(
                        run(
                            sgd("step", lr=lr, drop=drop, epochs_drop=epochs_drop),
                            rising(0.3, end, epochs, wobble),
                            repeat=repeat,
                        )
                    )
    runs.append(run(sgd("constant", lr=5.0), [0.2, math.nan], status="diverged"))
    runs.append(run(sgd("constant", lr=0.3), [], status="error", error="ValueError: out of memory on GPU 0"))
    runs.append(run(sgd("constant", lr=0.001), rising(0.1, 0.2, 3), status="stopped_early"))
    return write_sweep(directory, runs, epochs=epochs, name="everything", **kwargs)


# --- a PBT population ----------------------------------------------------------

PBT_SCHEDULER = {"pbt": {"perturbation_interval": 3, "quantile_fraction": 0.5}}
SGD = {"optimizer": "sgd", "schedule": "constant", "lr": 0.05, "momentum": 0.9}


def member(values, hparams, trained_by=None, **kwargs):
    """A PBT member: its final model's rows, ``hparams[e]`` in effect in epoch e + 1."""
    return run(SGD, values, hparams=hparams, trained_by=trained_by, **kwargs)


def population(
    directory: str | Path,
    *,
    epochs: int = 6,
    winner_hparams=None,
    winner_trained_by=(1, 1, 1, None, None, None),
):
    """A finished PBT sweep of four members with known answers.

    Member 2 cloned member 1 after epoch 3 (its rows 1-3 are 1's, trained
    with lr 0.05 and momentum 0.9), went on with lr 0.06 and momentum 0.72
    and wins at 0.80; member 1 ends at 0.75, member 0 (lr 0.01) at 0.60,
    member 3 diverged in epoch 2. ``winner_hparams``/``winner_trained_by``
    replace member 2's values in effect and lineage.
    """
    own = [{"lr": 0.05, "momentum": 0.9}] * epochs
    winner_hparams = (
        winner_hparams or [{"lr": 0.05, "momentum": 0.9}] * 3 + [{"lr": 0.06, "momentum": 0.72}] * 3
    )
    runs = [
        member(rising(0.3, 0.60, epochs), [{"lr": 0.01, "momentum": 0.8}] * epochs),
        member(rising(0.3, 0.75, epochs), own),
        member(rising(0.3, 0.80, epochs), winner_hparams, winner_trained_by),
        member([0.2, math.nan], [{"lr": 0.3, "momentum": 0.9}] * 2, status="diverged"),
    ]
    return write_sweep(directory, runs, epochs=epochs, scheduler=PBT_SCHEDULER)
