"""The results of a sweep: layout, schema and reading.

Under ``<storage>/<sweep name>/``:

- ``metrics/``: a Parquet dataset, one row per (trial, epoch), schema
  :data:`METRICS_SCHEMA`. Files appear atomically, so any reader
  (``pyarrow.dataset``, pandas, DuckDB, polars) may read it while the sweep
  runs; each read is valid. Rows only accrue, except that a trial restored
  from an earlier state (a resume, a lost node, a PBT exploit) has its
  rows after that state withdrawn until it trains those epochs again.
- ``trials.parquet``: one row per trial, schema :data:`TRIALS_SCHEMA`,
  rewritten atomically as trials progress.
- ``exploits.parquet`` (PBT): one row per exploit, :data:`EXPLOITS_SCHEMA`.
- ``sweep.yaml``: the validated sweep, as run.
- ``rounds/<k>/`` (after ``lrtune sweep --extend`` or ``lrtune confirm``): round
  ``k``'s ``round.json`` (its trials), Tune experiment and ``trials.parquet``;
  its rows are in ``metrics/`` with the rest (:mod:`lrtune.engine.rounds`).
- Ray Tune's own experiment state (``tuner.pkl``, ``experiment_state-*``,
  one folder per trial with its checkpoints and TensorBoard logs).

A hyperparameter that a trial's arm does not use is null, not missing:
every sweep has the same columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

__all__ = [
    "METRICS_SCHEMA",
    "TRIALS_SCHEMA",
    "EXPLOITS_SCHEMA",
    "CONFIG_COLUMNS",
    "family",
    "filesystem",
    "load",
    "load_trials",
    "metrics_path",
    "trials_path",
]

#: Hyperparameters, each stored as ``config.<name>``: in ``metrics/`` the values in
#: effect during that epoch (PBT changes them), in ``trials.parquet`` the latest.
CONFIG_COLUMNS: dict[str, pa.DataType] = {
    "optimizer": pa.string(),
    "schedule": pa.string(),
    "lr": pa.float64(),
    "decay": pa.float64(),
    "drop": pa.float64(),
    "epochs_drop": pa.float64(),
    "k": pa.float64(),
    "momentum": pa.float64(),
    "nesterov": pa.bool_(),
    "rho": pa.float64(),
    "beta_1": pa.float64(),
    "beta_2": pa.float64(),
    "epsilon": pa.float64(),
    "boundaries": pa.list_(pa.float64()),
    "values": pa.list_(pa.float64()),
    "lr_min": pa.float64(),
    "decay_epochs": pa.float64(),
    "period_epochs": pa.float64(),
    "period_mult": pa.float64(),
    "restart_decay": pa.float64(),
    "max_lr": pa.float64(),
    "cycle_epochs": pa.float64(),
    "pct_start": pa.float64(),
    "div_factor": pa.float64(),
    "final_div_factor": pa.float64(),
    "anneal": pa.string(),
    "step_size_epochs": pa.float64(),
    "cycle_mode": pa.string(),
    "gamma": pa.float64(),
    "end_lr": pa.float64(),
    "power": pa.float64(),
    "factor": pa.float64(),
    "patience": pa.float64(),
    "min_lr": pa.float64(),
    "cooldown": pa.float64(),
    "warmup_epochs": pa.float64(),
    "warmup_start": pa.float64(),
    "weight_decay": pa.float64(),
}

_CONFIG_FIELDS = [pa.field(f"config.{k}", t) for k, t in CONFIG_COLUMNS.items()]

METRICS_SCHEMA = pa.schema(
    [
        pa.field("sweep", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),
        pa.field("lr", pa.float64()),
        pa.field("loss", pa.float64()),
        pa.field("accuracy", pa.float64()),
        pa.field("val_loss", pa.float64()),
        pa.field("val_accuracy", pa.float64()),
        pa.field("epoch_seconds", pa.float64()),
        pa.field("images_per_second", pa.float64()),
        pa.field("status", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("node", pa.string()),
        pa.field("node_id", pa.string()),
        pa.field("run", pa.string()),
        pa.field("trained_by", pa.string()),
        pa.field("arm", pa.string()),
        pa.field("family", pa.string()),
        pa.field("repeat", pa.int32()),
        pa.field("seed", pa.int64()),
        *_CONFIG_FIELDS,
    ]
)

TRIALS_SCHEMA = pa.schema(
    [
        pa.field("sweep", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("epochs_run", pa.int32()),
        pa.field("metric", pa.string()),
        pa.field("best_epoch", pa.int32()),
        pa.field("best_metric", pa.float64()),
        pa.field("final_metric", pa.float64()),
        pa.field("start_time", pa.timestamp("us", tz="UTC")),
        pa.field("end_time", pa.timestamp("us", tz="UTC")),
        pa.field("node", pa.string()),
        pa.field("arm", pa.string()),
        pa.field("family", pa.string()),
        pa.field("repeat", pa.int32()),
        pa.field("seed", pa.int64()),
        *_CONFIG_FIELDS,
    ]
)

#: Trial statuses in ``trials.parquet``.
TRIAL_STATUSES = ("pending", "running", "done", "stopped_early", "diverged", "error")


def family(optimizer: str | None, schedule: str | None, warmup_epochs: float | None = None) -> str:
    """The schedule family a trial belongs to, as the reports group them.

    SGD trials are named by their schedule; adaptive optimizers by their
    name, with the schedule appended when it is not constant. A warmup
    makes its own family: ``warmup+cosine``, ``adamw+warmup+cosine``.

    >>> family("sgd", "step"), family("adam", "constant"), family("adam", "time")
    ('step', 'adam', 'adam+time')
    >>> family("sgd", "cosine", 5), family("adamw", "cosine", 2)
    ('warmup+cosine', 'adamw+warmup+cosine')
    """
    optimizer = optimizer or "sgd"
    schedule = schedule or "constant"
    if warmup_epochs:
        schedule = f"warmup+{schedule}"
    if optimizer == "sgd":
        return schedule
    return optimizer if schedule == "constant" else f"{optimizer}+{schedule}"


def config_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config.<name>`` for a trial config, with the optimizer's defaults.

    A setting the trial's optimizer or schedule does not use is None.

    >>> row = config_columns({"optimizer": "adam"})
    >>> row["config.lr"], row["config.beta_2"], row["config.momentum"], row["config.schedule"]
    (0.001, 0.999, None, 'constant')
    """
    from lrtune.training.optimizers import DEFAULTS
    from lrtune.training.schedules import SCHEDULES, schedule_params

    optimizer = config.get("optimizer") or "sgd"
    effective = {"optimizer": optimizer, "schedule": "constant", **DEFAULTS.get(optimizer, {})}
    effective.update({k: v for k, v in config.items() if v is not None})
    if effective["schedule"] in SCHEDULES and "lr" not in schedule_params(effective["schedule"]):
        effective.pop("lr")  # the optimizer's default lr is not what this schedule starts at
    return {f"config.{k}": effective.get(k) for k in CONFIG_COLUMNS}


#: The hyperparameters worth showing beside a trial, in this order.
SHOWN = (
    "lr",
    "max_lr",
    "momentum",
    "weight_decay",
    "decay",
    "drop",
    "epochs_drop",
    "k",
    "rho",
    "warmup_epochs",
    "lr_min",
    "period_epochs",
    "period_mult",
    "step_size_epochs",
    "cycle_mode",
    "power",
    "factor",
    "patience",
)


def describe(row: Mapping[str, Any]) -> str:
    """A short ``lr=0.05, momentum=0.9, drop=0.5`` for a trials/metrics row.

    >>> describe({"config.lr": 0.05, "config.momentum": 0.9, "config.k": None})
    'lr=0.05, momentum=0.9'
    """
    parts = []
    for key in SHOWN:
        value = row.get(f"config.{key}")
        if value is not None and not (key == "weight_decay" and value == 0):
            parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return ", ".join(parts)


#: PBT's exploits, one row each: at the end of its epoch ``epoch`` trial
#: ``trial_id`` took the weights of ``donor_trial_id`` at the end of the
#: donor's epoch ``donor_epoch`` (and perturbed its hyperparameters).
EXPLOITS_SCHEMA = pa.schema(
    [
        pa.field("sweep", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),
        pa.field("donor_trial_id", pa.string(), nullable=False),
        pa.field("donor_epoch", pa.int32(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
    ]
)


def metrics_path(sweep_dir: str) -> str:
    return f"{sweep_dir.rstrip('/')}/metrics"


def trials_path(sweep_dir: str) -> str:
    return f"{sweep_dir.rstrip('/')}/trials.parquet"


def exploits_path(sweep_dir: str) -> str:
    return f"{sweep_dir.rstrip('/')}/exploits.parquet"


def filesystem(path: str):
    """``(pyarrow filesystem, path in it)`` for a local path or a URI.

    >>> type(filesystem("/tmp/x")[0]).__name__, filesystem("file:///tmp/x")[1]
    ('LocalFileSystem', '/tmp/x')
    """
    import os

    from pyarrow import fs

    if "://" in path:
        return fs.FileSystem.from_uri(path)
    return fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def load(sweep_dir: str) -> pa.Table:
    """Every (trial, epoch) row of the sweep at ``sweep_dir`` (path or URI).

    Works while the sweep runs. Rows are sorted by trial and epoch; if a
    reader catches the moment compaction has added its file but not yet
    removed the small ones, duplicates are dropped here.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    fs_, root = filesystem(sweep_dir)
    path = metrics_path(root)
    info = fs_.get_file_info(path)
    from pyarrow import fs

    if info.type == fs.FileType.NotFound:
        raise FileNotFoundError(
            f"{sweep_dir}: no metrics/ dataset here; expected <storage>/<sweep name> of a sweep"
        )
    table = ds.dataset(path, filesystem=fs_, schema=METRICS_SCHEMA, format="parquet").to_table()
    if table.num_rows == 0:
        return table
    table = table.sort_by([("trial_id", "ascending"), ("epoch", "ascending")])
    keys = pc.binary_join_element_wise(table["trial_id"], pc.cast(table["epoch"], pa.string()), "\x00")
    if len(pc.unique(keys)) == table.num_rows:
        return table
    first = pc.equal(keys, pa.concat_arrays([pa.array([None], pa.string()), keys.combine_chunks()[:-1]]))
    return table.filter(pc.invert(pc.fill_null(first, False)))


def load_trials(sweep_dir: str) -> pa.Table:
    """Every trial of the sweep at ``sweep_dir``: ``trials.parquet`` and its rounds'.

    A sweep extended with ``lrtune sweep --extend`` or ``lrtune confirm``
    has a ``rounds/<k>/trials.parquet`` per round; their rows follow the
    sweep's own, round by round.

    Raises:
        FileNotFoundError: the sweep has no ``trials.parquet`` yet.
    """
    import pyarrow.parquet as pq
    from pyarrow import fs

    fs_, root = filesystem(sweep_dir)
    try:
        parts = [pq.read_table(trials_path(root), filesystem=fs_, schema=TRIALS_SCHEMA)]
    except FileNotFoundError:
        raise FileNotFoundError(f"{sweep_dir}: no trials.parquet here yet") from None
    rounds = fs_.get_file_info(fs.FileSelector(f"{root.rstrip('/')}/rounds", allow_not_found=True))
    for info in sorted((i for i in rounds if i.base_name.isdigit()), key=lambda i: int(i.base_name)):
        try:
            parts.append(pq.read_table(trials_path(info.path), filesystem=fs_, schema=TRIALS_SCHEMA))
        except FileNotFoundError:
            continue  # the round has not written its first trials.parquet yet
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def summarize(sweep_dir: str) -> str:
    """Trials by status and the best configuration of each family, as text.

    The configurations are ranked by :func:`lrtune.results.choice.rank`, as
    ``lrtune best`` ranks them (mean over seeds at each trial's final
    epoch), so the first one is the configuration ``lrtune best`` picks.
    When no trial has run every epoch the summary says so instead of
    ranking. Reads ``trials.parquet`` when present (else the metrics alone).
    """
    import pyarrow.compute as pc

    from lrtune.results.choice import rank
    from lrtune.results.choice_text import ranking_lines
    from lrtune.results.trials import read_results

    metrics = load(sweep_dir)
    try:
        trials = load_trials(sweep_dir)
    except FileNotFoundError:
        trials = None
    lines = [f"{sweep_dir}: {metrics.num_rows} epoch rows from {len(pc.unique(metrics['trial_id']))} trials"]
    if trials is not None and trials.num_rows:
        counts: dict[str, int] = {}
        for status in trials["status"].to_pylist():
            counts[status] = counts.get(status, 0) + 1
        lines.append("trials: " + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(counts.items())))
    try:
        lines += ranking_lines(rank(read_results(sweep_dir)))
    except ValueError as e:  # no epoch yet, or no trial with a finite metric
        lines.append(f"no ranking: {e}")
    if trials is not None:
        errors = [r for r in trials.to_pylist() if r["status"] == "error"]
        for r in errors[:5]:
            lines.append(f"  error {r['trial_id']}: {r['error']}")
    return "\n".join(lines)


def query(sweep_dir: str, sql: str) -> pa.Table:
    """Run DuckDB ``sql`` with views ``metrics`` and ``trials`` of the sweep,
    and ``lr_range`` of a range test (``lrtune find``).

    >>> # lrtune results DIR --sql "select family, max(val_accuracy) from metrics group by 1"
    """
    try:
        import duckdb
    except ImportError:
        raise ImportError("--sql needs DuckDB: pip install 'lrtune[duckdb]'") from None
    from lrtune.results.lr_range import LR_RANGE_SCHEMA, load_lr_range

    try:
        lr_range = load_lr_range(sweep_dir)
    except FileNotFoundError:
        lr_range = None
    try:
        metrics = load(sweep_dir)
    except FileNotFoundError:
        if lr_range is None:
            raise
        metrics = METRICS_SCHEMA.empty_table()  # a range test's folder has no metrics/
    try:
        trials = load_trials(sweep_dir)
    except FileNotFoundError:
        trials = pa.table({"trial_id": pa.array([], pa.string())})
    connection = duckdb.connect()
    connection.register("metrics", metrics)
    connection.register("trials", trials)
    connection.register("lr_range", lr_range if lr_range is not None else LR_RANGE_SCHEMA.empty_table())
    try:
        return connection.sql(sql).to_arrow_table()
    except duckdb.Error as e:
        raise ValueError(f"--sql: {e}") from None
