"""A sweep's results as records: one :class:`Trial` per trial, read by :func:`read_results`.

:func:`read_results` merges ``metrics/``, ``trials.parquet`` and
``sweep.yaml`` into one :class:`Trial` per trial (status, configuration,
per-epoch curves, the hyperparameters in effect each epoch and who trained
it) inside a :class:`SweepResults`; :mod:`lrtune.results.choice` ranks
them, :mod:`lrtune.results.lineage` reads PBT members' schedules from them
and :mod:`lrtune.results.report` draws them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lrtune.results import tables
from lrtune.results.tables import CONFIG_COLUMNS

__all__ = [
    "METRICS",
    "METRIC_RANGE",
    "SweepResults",
    "Trial",
    "applied_config",
    "default_mode",
    "family_order",
    "read_results",
]

#: The per-epoch metrics a choice can be made on.
METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")

#: Per-epoch columns kept for each trial.
CURVES = ("lr", *METRICS)

#: The range of each metric: a confidence interval of its mean is clipped to it.
METRIC_RANGE = {
    "val_accuracy": (0.0, 1.0),
    "accuracy": (0.0, 1.0),
    "val_loss": (0.0, math.inf),  # cross-entropy
    "loss": (0.0, math.inf),
}


# --- one record per trial -----------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Trial:
    """One trial: its status, hyperparameters and per-epoch curves.

    ``config`` has every name of :data:`~lrtune.results.tables.CONFIG_COLUMNS`
    (None where the trial's optimizer and schedule do not use it): the
    values of its last recorded epoch. ``epochs`` holds the epochs recorded
    in ``metrics/`` (1-based) and ``curves[name]`` the value of
    ``lr``/``loss``/... at each (NaN where missing); ``hparams[name]`` the
    hyperparameter in effect at each (PBT changes them), ``trained_by`` the
    trial that trained each (under PBT a member's early epochs are its
    donor's). A trial that failed before its first epoch has none.
    """

    trial_id: str
    status: str
    family: str
    config: Mapping[str, Any]
    repeat: int | None = None
    error: str | None = None
    epochs: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=int))
    curves: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    hparams: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    trained_by: tuple[str, ...] = ()

    @property
    def epochs_run(self) -> int:
        return int(self.epochs.max()) if len(self.epochs) else 0

    @property
    def key(self) -> tuple[Any, ...]:
        """The configuration: trials with equal keys differ only by seed (lists as tuples, hashable)."""
        return tuple(
            tuple(v) if isinstance(v, list) else v for v in (self.config[name] for name in CONFIG_COLUMNS)
        )

    def value(self, metric: str, mode: str, at: str) -> float:
        """``metric`` at the last recorded epoch (``at="final"``) or its best one.

        NaN when the trial has no finite value of ``metric``.
        """
        curve = self.curves.get(metric)
        if curve is None or not len(curve):
            return math.nan
        if at == "final":
            return float(curve[-1])
        finite = curve[np.isfinite(curve)]
        if not len(finite):
            return math.nan
        return float(finite.max() if mode == "max" else finite.min())


@dataclasses.dataclass(frozen=True, eq=False)
class SweepResults:
    """A sweep's results as read now: settings from ``sweep.yaml``, one :class:`Trial` each.

    ``epochs`` is the number each trial is meant to run and ``scheduler``
    the trial scheduler's name (both None without ``sweep.yaml``). ``trials_file`` says whether ``trials.parquet`` was
    there; without it statuses come from the last ``status`` in
    ``metrics/`` (``done``, ``diverged`` or ``running``).
    """

    sweep_dir: str
    name: str
    metric: str
    mode: str
    epochs: int | None
    trials: tuple[Trial, ...]
    trials_file: bool
    scheduler: str | None = None

    @property
    def pbt(self) -> bool:
        """Whether the sweep ran population-based training (``sweep.yaml``'s ``scheduler``)."""
        return self.scheduler == "pbt"

    def families(self) -> list[str]:
        """Families present, in the order the reports show them."""
        return sorted({t.family for t in self.trials}, key=family_order)


#: Families in the order of the seed article, then today's schedules and
#: optimizers (issue 15), then the rest alphabetically.
_FAMILY_ORDER = (
    "constant",
    "time",
    "step",
    "exponential",
    "adagrad",
    "adadelta",
    "rmsprop",
    "adam",
    "piecewise",
    "polynomial",
    "cosine",
    "warmup+cosine",
    "cosine_restarts",
    "one_cycle",
    "cyclic",
    "plateau",
    "adamw",
    "adamw+cosine",
    "adamw+warmup+cosine",
    "nadam",
    "lion",
)


def family_order(name: str) -> tuple[int, str]:
    """Sort key: the article's order, then today's families, unknown ones after."""
    return (_FAMILY_ORDER.index(name) if name in _FAMILY_ORDER else len(_FAMILY_ORDER), name)


def default_mode(metric: str) -> str:
    """``min`` for losses, ``max`` for accuracies."""
    return "min" if metric.endswith("loss") else "max"


def _plain(value: Any) -> Any:
    """A Python scalar for a Parquet/NumPy one; NaN becomes None."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _read_sweep_file(sweep_dir: str) -> dict[str, Any] | None:
    from lrtune.folder import SweepFolder

    raw = SweepFolder(sweep_dir).read_spec()
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{sweep_dir}/sweep.yaml: expected a mapping (name, metric, epochs, space, ...)")
    return dict(raw)


def read_results(sweep_dir: str) -> SweepResults:
    """Every trial of the sweep at ``sweep_dir`` (path or URI), as recorded now.

    ``metrics/`` is required; ``trials.parquet`` (statuses, errors) and
    ``sweep.yaml`` (metric, mode, epochs) are used when present. While a
    sweep runs ``trials.parquet`` lags the metrics: a trial it still calls
    ``pending``/``running`` whose last epoch row says ``done`` or
    ``diverged`` takes that status.
    """
    metrics = tables.load(sweep_dir)
    try:
        trials_table = tables.load_trials(sweep_dir)
    except FileNotFoundError:
        trials_table = None
    if metrics.num_rows == 0:
        raise ValueError(
            f"{sweep_dir}: metrics/ holds no epochs yet; run this again once a trial has finished an epoch"
        )
    spec = _read_sweep_file(sweep_dir) or {}

    metric = spec.get("metric")
    if metric is None and trials_table is not None and trials_table.num_rows:
        metric = next((m for m in trials_table["metric"].to_pylist() if m), None)
    metric = metric or "val_accuracy"
    if metric not in METRICS:
        raise ValueError(f"{sweep_dir}/sweep.yaml: metric {metric!r} is not one of {', '.join(METRICS)}")
    mode = spec.get("mode") or default_mode(metric)
    epochs = spec.get("epochs")
    name = spec.get("name") or metrics["sweep"][0].as_py()

    config_names = [f"config.{k}" for k in CONFIG_COLUMNS]
    columns = metrics.select(
        ["trial_id", "epoch", "status", "family", "repeat", "trained_by", *CURVES, *config_names]
    ).to_pydict()
    rows_by_trial: dict[str, list[int]] = {}
    for i, trial_id in enumerate(columns["trial_id"]):
        rows_by_trial.setdefault(trial_id, []).append(i)

    listed = {r["trial_id"]: r for r in trials_table.to_pylist()} if trials_table is not None else {}
    trials = []
    for trial_id in sorted(set(rows_by_trial) | set(listed)):
        rows = rows_by_trial.get(trial_id, [])
        entry = listed.get(trial_id)
        if rows:
            first, last = rows[0], rows[-1]
            config = {k: _plain(columns[f"config.{k}"][last]) for k in CONFIG_COLUMNS}
            status_now = columns["status"][last] or "running"
            fam = columns["family"][last]
            repeat = columns["repeat"][first]
        else:
            config = {k: _plain(entry[f"config.{k}"]) for k in CONFIG_COLUMNS}
            status_now, fam, repeat = None, entry["family"], entry["repeat"]
        if entry is None:
            status = status_now
        elif entry["status"] in ("pending", "running") and status_now in ("done", "diverged"):
            status = status_now
        else:
            status = entry["status"]
        trials.append(
            Trial(
                trial_id=trial_id,
                status=status,
                family=fam
                or (entry or {}).get("family")
                or tables.family(config["optimizer"], config["schedule"], config.get("warmup_epochs")),
                config=config,
                repeat=repeat,
                error=entry["error"] if entry is not None else None,
                epochs=np.array([columns["epoch"][i] for i in rows], dtype=int),
                curves={
                    c: np.array(
                        [np.nan if columns[c][i] is None else columns[c][i] for i in rows], dtype=float
                    )
                    for c in CURVES
                },
                hparams={k: tuple(_plain(columns[f"config.{k}"][i]) for i in rows) for k in CONFIG_COLUMNS},
                trained_by=tuple(columns["trained_by"][i] or trial_id for i in rows),
            )
        )
    return SweepResults(
        sweep_dir=sweep_dir,
        name=str(name),
        metric=metric,
        mode=mode,
        epochs=int(epochs) if epochs is not None else None,
        trials=tuple(trials),
        trials_file=trials_table is not None,
        scheduler=_scheduler_name(spec.get("scheduler")),
    )


def _scheduler_name(value: Any) -> str | None:
    """``pbt`` from ``scheduler: pbt`` or ``scheduler: {pbt: {...}}`` (as ``sweep.yaml`` saves it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        return str(next(iter(value)))
    return None


def applied_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that apply (no nulls), as they read in a sweep file."""
    plain = {}
    for k, v in config.items():
        if v is None:
            continue
        if k == "epochs_drop" and float(v).is_integer():
            v = int(v)  # a period of 10 epochs reads better than 10.0
        if k == "boundaries":
            v = [int(b) if float(b).is_integer() else b for b in v]
        plain[k] = v
    return plain
