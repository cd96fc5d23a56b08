"""The Parquet sink: a Ray Tune callback on the driver.

Why on the driver: it sees every result of every trial, whichever node ran
it, and needs nothing from the workers' disks. Only the driver writes to
the sweep's storage (a local folder, NFS, ``s3://`` or ``gs://``, through
``pyarrow.fs``).

How rows land exactly once, across retries, kills and resumes:

- Each reported epoch becomes a row keyed by (trial_id, epoch). The sink
  keeps the set of keys it has accepted (read back from Parquet on start)
  and drops a row whose key it already has: a trial restored from its last
  checkpoint re-reports nothing older than that checkpoint, and the epochs
  it runs again after a driver kill are already on disk.
- Buffered rows are flushed every ``flush_seconds``. Rows still in the
  buffer when Tune snapshots the experiment go into the snapshot itself
  (:meth:`ParquetSink.get_state`), so every epoch a snapshot knows about is
  either on disk or in the snapshot; ``--resume`` writes the latter.
- Files appear atomically: written under a hidden name, then renamed
  (object stores publish an object only once it is complete).

When the sweep ends the small files are compacted into one. The compacted
file lists the files it replaces in its metadata, so a compaction
interrupted half-way is finished on the next start instead of leaving
duplicates. Compaction is the one moment a plain reader of the directory
can see a row twice or a file vanish under it (no single rename replaces
many files); it comes after the last trial, and
:func:`lrtune.results.load` drops duplicates.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs
from ray.tune import Callback

from lrtune.results import (
    METRICS_SCHEMA,
    TRIALS_SCHEMA,
    config_columns,
    family,
    filesystem,
    metrics_path,
    trials_path,
)
from lrtune.trial import trial_config

__all__ = ["ParquetSink", "SinkError"]

_REPLACES = b"lrtune.replaces"


class SinkError(RuntimeError):
    """The results storage cannot be written; the sweep must stop."""


@dataclass
class _TrialLog:
    """What the sink knows of one trial, from its rows."""

    epochs: dict[int, float] = field(default_factory=dict)  # epoch -> metric
    first_start: float | None = None
    last_time: float | None = None
    node: str | None = None
    last_status: str | None = None
    seed: int | None = None

    @property
    def epochs_run(self) -> int:
        return max(self.epochs, default=0)

    def best(self, mode: str) -> tuple[int | None, float | None]:
        """(epoch, metric) of the best epoch; the earliest among ties."""
        scored = {e: m for e, m in self.epochs.items() if not math.isnan(m)}
        if not scored:
            return None, None
        sign = 1 if mode == "max" else -1
        epoch = max(scored, key=lambda e: (sign * scored[e], -e))
        return epoch, scored[epoch]


class ParquetSink(Callback):
    """Write every trial's per-epoch results to ``<sweep_dir>/metrics/``.

    Args:
        sweep_dir: the sweep's folder (path or URI); Tune's experiment dir.
        sweep: the sweep's name, stored in every row.
        metric, mode: the sweep's objective, for ``trials.parquet``.
        epochs: the epoch budget of a trial, to tell ``done`` from
            ``stopped_early``.
        flush_seconds: longest time a row waits in memory.
    """

    def __init__(
        self,
        sweep_dir: str,
        *,
        sweep: str,
        metric: str,
        mode: str,
        epochs: int,
        flush_seconds: float = 2.0,
    ):
        self.sweep_dir = sweep_dir.rstrip("/")
        self.sweep = sweep
        self.metric = metric
        self.mode = mode
        self.epochs = epochs
        self.flush_seconds = flush_seconds
        self._fs, self._root = filesystem(self.sweep_dir)
        self._session = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._sequence = 0
        self._buffer: list[dict[str, Any]] = []
        self._keys: set[tuple[str, int]] = set()
        self._logs: dict[str, _TrialLog] = {}
        self._errors: dict[tuple[str, int], str] = {}
        self._trials: list[Any] = []
        self._last_flush = time.monotonic()
        self._ready = False
        self._pending: list[dict[str, Any]] = []
        self.rows_written = 0
        self.rows_dropped = 0
        self._args = {
            "sweep_dir": sweep_dir,
            "sweep": sweep,
            "metric": metric,
            "mode": mode,
            "epochs": epochs,
            "flush_seconds": flush_seconds,
        }

    def __reduce__(self):
        # Tune pickles callbacks into tuner.pkl: keep the settings, not the state.
        return (_rebuild, (self._args,))

    # --- Tune callback hooks -------------------------------------------

    def setup(self, **info):
        self._start()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._trials = trials
        self.add(trial.trial_id, trial.config, result)
        self.maybe_flush()

    def on_step_end(self, iteration, trials, **info):
        self._trials = trials
        self.maybe_flush()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._trials = trials
        self.flush()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._trials = trials
        self.flush()

    def on_experiment_end(self, trials, **info):
        self._trials = trials
        self.flush()
        self.compact()

    def get_state(self) -> dict:
        # Tune saves this with each experiment snapshot: the rows not yet on
        # disk travel with the snapshot that counts their epochs as done.
        return {"pending": list(self._buffer)}

    def set_state(self, state: dict) -> None:
        self._pending = list(state.get("pending", []))
        if self._ready:
            self._adopt_pending()

    def _adopt_pending(self) -> None:
        for row in self._pending:
            key = (row["trial_id"], int(row["epoch"]))
            if key not in self._keys:
                self._keys.add(key)
                self._buffer.append(row)
                self._log(row)
        self._pending = []

    # --- the sink itself ------------------------------------------------

    def _start(self) -> None:
        if self._ready:
            return
        try:
            self._fs.create_dir(metrics_path(self._root), recursive=True)
            self._finish_compaction()
            self._load_keys()
        except OSError as e:
            raise SinkError(f"cannot use results storage {self.sweep_dir}: {e}") from e
        self._ready = True
        self._adopt_pending()

    def add(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
        """Buffer the row of one result; False if its epoch was already taken."""
        if "epoch" not in result:
            return False
        epoch = int(result["epoch"])
        key = (trial_id, epoch)
        if key in self._keys:
            self.rows_dropped += 1
            return False
        self._keys.add(key)
        hyper = trial_config(config)
        timestamp = float(result.get("epoch_end") or result.get("timestamp") or time.time())
        row = {
            "sweep": self.sweep,
            "trial_id": trial_id,
            "epoch": epoch,
            **{k: _float(result.get(k)) for k in _FLOAT_METRICS},
            "status": result.get("status"),
            "timestamp": dt.datetime.fromtimestamp(timestamp, dt.timezone.utc),
            "node": result.get("node"),
            "node_id": result.get("node_id"),
            "arm": hyper.get("label"),
            "family": family(hyper.get("optimizer"), hyper.get("schedule"), hyper.get("warmup_epochs")),
            "repeat": hyper.get("repeat"),
            "seed": result.get("seed"),
            **config_columns(hyper),
        }
        self._buffer.append(row)
        self._log(row)
        return True

    def _log(self, row: Mapping[str, Any]) -> None:
        log = self._logs.setdefault(row["trial_id"], _TrialLog())
        metric = row.get(self.metric)
        log.epochs[int(row["epoch"])] = math.nan if metric is None else float(metric)
        end = row["timestamp"].timestamp()
        start = end - (row.get("epoch_seconds") or 0.0)
        log.first_start = start if log.first_start is None else min(log.first_start, start)
        log.last_time = end if log.last_time is None else max(log.last_time, end)
        log.node = row.get("node") or log.node
        log.last_status = row.get("status") or log.last_status
        log.seed = row.get("seed", log.seed)

    def maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write buffered rows as one new file, and rewrite trials.parquet."""
        self._start()
        self._last_flush = time.monotonic()
        if self._buffer:
            table = pa.Table.from_pylist(self._buffer, schema=METRICS_SCHEMA)
            self._sequence += 1
            name = f"part-{self._session}-{self._sequence:06d}.parquet"
            self._write(table, f"{metrics_path(self._root)}/{name}")
            self.rows_written += len(self._buffer)
            self._buffer.clear()
        if self._trials:
            self._write(self.trials_table(self._trials), trials_path(self._root))

    def _write(self, table: pa.Table, path: str) -> None:
        directory, name = path.rsplit("/", 1)
        local = isinstance(self._fs, fs.LocalFileSystem)
        target = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}.tmp" if local else path
        try:
            pq.write_table(table, target, filesystem=self._fs, compression="zstd")
            if local:
                self._fs.move(target, path)
        except OSError as e:
            raise SinkError(
                f"cannot write results to {self.sweep_dir} ({path}): {e}. "
                "What was written before is intact; fix the storage and run again with --resume."
            ) from e

    def _parts(self) -> list[fs.FileInfo]:
        selector = fs.FileSelector(metrics_path(self._root), allow_not_found=True)
        return [
            f
            for f in self._fs.get_file_info(selector)
            if f.type == fs.FileType.File
            and f.base_name.endswith(".parquet")
            and not f.base_name.startswith(".")
        ]

    def _load_keys(self) -> None:
        for info in self._parts():
            table = pq.read_table(
                info.path,
                filesystem=self._fs,
                columns=[
                    "trial_id",
                    "epoch",
                    "timestamp",
                    "epoch_seconds",
                    "node",
                    "status",
                    "seed",
                    self.metric,
                ],
            )
            for row in table.to_pylist():
                key = (row["trial_id"], int(row["epoch"]))
                if key not in self._keys:
                    self._keys.add(key)
                    self._log(row)

    def compact(self) -> None:
        """Merge the small part files into one, then delete them."""
        self._start()
        parts = [p for p in self._parts() if p.base_name.startswith("part-")]
        if len(parts) < 2:
            return
        tables = [pq.read_table(p.path, filesystem=self._fs, schema=METRICS_SCHEMA) for p in parts]
        table = pa.concat_tables(tables).sort_by([("trial_id", "ascending"), ("epoch", "ascending")])
        replaces = json.dumps([p.base_name for p in parts]).encode()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _REPLACES: replaces})
        name = f"compacted-{self._session}-{self._sequence:06d}.parquet"
        self._write(table, f"{metrics_path(self._root)}/{name}")
        self._delete_replaced(name, [p.base_name for p in parts])

    def _finish_compaction(self) -> None:
        for info in self._parts():
            if info.base_name.startswith("compacted-"):
                metadata = pq.read_schema(info.path, filesystem=self._fs).metadata or {}
                if _REPLACES in metadata:
                    self._delete_replaced(info.base_name, json.loads(metadata[_REPLACES]))

    def _delete_replaced(self, compacted: str, names: list[str]) -> None:
        present = {p.base_name for p in self._parts()}
        for name in names:
            if name in present and name != compacted:
                self._fs.delete_file(f"{metrics_path(self._root)}/{name}")

    # --- trials.parquet ---------------------------------------------------

    def trial_status(self, trial) -> str:
        """``done``, ``stopped_early``, ``diverged``, ``error``, ``running`` or ``pending``."""
        log = self._logs.get(trial.trial_id)
        if log is not None and log.last_status == "diverged":
            return "diverged"
        if trial.status == "ERROR":
            return "error"
        if trial.status == "TERMINATED":
            return "done" if log is not None and log.epochs_run >= self.epochs else "stopped_early"
        if trial.status in ("RUNNING", "PAUSED"):
            return "running"
        return "pending"

    def trial_rows(self, trials) -> list[dict[str, Any]]:
        """One ``TRIALS_SCHEMA`` row per trial, from the rows seen so far."""
        rows = []
        for trial in trials:
            log = self._logs.get(trial.trial_id, _TrialLog())
            hyper = trial_config(trial.config)
            status = self.trial_status(trial)
            best_epoch, best_metric = log.best(self.mode)
            final = log.epochs.get(log.epochs_run)
            rows.append(
                {
                    "sweep": self.sweep,
                    "trial_id": trial.trial_id,
                    "status": status,
                    "error": self._error(trial) if status == "error" else None,
                    "epochs_run": log.epochs_run,
                    "metric": self.metric,
                    "best_epoch": best_epoch,
                    "best_metric": best_metric,
                    "final_metric": _float(final),
                    "start_time": _utc(log.first_start),
                    "end_time": _utc(log.last_time) if status not in ("running", "pending") else None,
                    "node": log.node,
                    "arm": hyper.get("label"),
                    "family": family(
                        hyper.get("optimizer"), hyper.get("schedule"), hyper.get("warmup_epochs")
                    ),
                    "repeat": hyper.get("repeat"),
                    "seed": log.seed,
                    **config_columns(hyper),
                }
            )
        return rows

    def trials_table(self, trials) -> pa.Table:
        return pa.Table.from_pylist(self.trial_rows(trials), schema=TRIALS_SCHEMA)

    def _error(self, trial) -> str:
        # Read each failure's trace once, not at every flush and redraw.
        key = (trial.trial_id, trial.num_failures)
        if key not in self._errors:
            message = _error_message(trial)
            if message is None:  # Tune has not written the trace yet
                return "unknown error"
            self._errors[key] = message
        return self._errors[key]


def _rebuild(args: dict[str, Any]) -> ParquetSink:
    args = dict(args)
    return ParquetSink(args.pop("sweep_dir"), **args)


_FLOAT_METRICS = ("lr", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds", "images_per_second")


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _utc(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def _error_message(trial) -> str | None:
    """The last line of the trial's error trace (``ValueError: ...``)."""
    try:
        text = trial.get_error()
    except Exception as e:  # noqa: BLE001 - an unreadable error file must not stop the sink
        return f"(error trace unreadable: {e})"
    if not text:
        return None
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.startswith((" ", "\t")) and ":" in line:
            return line.strip()[:2000]
    return lines[-1].strip()[:2000]
