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

from lrtune.folder import SweepFolder
from lrtune.training.hparams import HPARAMS, resolve

__all__ = [
    "METRICS_SCHEMA",
    "TRIALS_SCHEMA",
    "EXPLOITS_SCHEMA",
    "CONFIG_COLUMNS",
    "family",
    "load",
    "load_trials",
]

#: The Parquet type of each kind of hyperparameter (:data:`lrtune.training.hparams.Kind`).
#: Lengths in epochs are float64 too: a warmup may last half an epoch.
KIND_TYPES: dict[str, pa.DataType] = {
    "number": pa.float64(),
    "whole": pa.float64(),
    "flag": pa.bool_(),
    "category": pa.string(),
    "numbers": pa.list_(pa.float64()),
}

#: Hyperparameters, each stored as ``config.<name>``: in ``metrics/`` the values the
#: run that trained that epoch trained with (PBT changes them), in ``trials.parquet``
#: the latest; derived from :data:`lrtune.training.hparams.HPARAMS`.
CONFIG_COLUMNS: dict[str, pa.DataType] = {name: KIND_TYPES[h.kind] for name, h in HPARAMS.items()}

_CONFIG_FIELDS = [pa.field(HPARAMS[k].column, t) for k, t in CONFIG_COLUMNS.items()]

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


def config_columns(config: Mapping[str, Any], epochs: int | None = None) -> dict[str, Any]:
    """``config.<name>`` for a trial config: the settings it trains with over ``epochs`` epochs.

    :func:`lrtune.training.hparams.resolve`'s columns: the optimizer's
    defaults filled in, and with ``epochs`` each span the schedule leaves to
    the trial. A setting the trial's optimizer or schedule does not use is None.

    Raises:
        ValueError: ``config`` is no valid trial (see ``resolve``).

    >>> row = config_columns({"optimizer": "adam"})
    >>> row["config.lr"], row["config.beta_2"], row["config.momentum"], row["config.schedule"]
    (0.001, 0.999, None, 'constant')
    >>> config_columns({"schedule": "cosine", "lr": 0.1}, epochs=6)["config.decay_epochs"]
    6
    """
    return resolve(config, epochs).columns()


#: The hyperparameters worth showing beside a trial, in this order (``HParam.shown``).
SHOWN = tuple(
    sorted((name for name, h in HPARAMS.items() if h.shown is not None), key=lambda n: HPARAMS[n].shown)
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


def load(sweep_dir: str) -> pa.Table:
    """Every (trial, epoch) row of the sweep at ``sweep_dir`` (path or URI).

    Works while the sweep runs. Rows are sorted by trial and epoch; if a
    reader catches the moment compaction has added its file but not yet
    removed the small ones, duplicates are dropped here.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    folder = SweepFolder(sweep_dir)
    if not folder.exists(folder.metrics_path):
        raise FileNotFoundError(
            f"{sweep_dir}: no metrics/ dataset here; expected <storage>/<sweep name> of a sweep"
        )
    table = ds.dataset(
        folder.metrics_path, filesystem=folder.fs, schema=METRICS_SCHEMA, format="parquet"
    ).to_table()
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

    folder = SweepFolder(sweep_dir)
    try:
        parts = [pq.read_table(folder.trials_path, filesystem=folder.fs, schema=TRIALS_SCHEMA)]
    except FileNotFoundError:
        raise FileNotFoundError(f"{sweep_dir}: no trials.parquet here yet") from None
    for index in folder.round_indices():
        round_folder = folder.round_folder(index)
        try:
            parts.append(pq.read_table(round_folder.trials_path, filesystem=folder.fs, schema=TRIALS_SCHEMA))
        except FileNotFoundError:
            continue  # the round has not written its first trials.parquet yet
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]
