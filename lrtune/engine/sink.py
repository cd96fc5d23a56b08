"""The Parquet sink: a Ray Tune callback on the driver.

Why on the driver: it sees every result of every trial, whichever node ran
it, and needs nothing from the workers' disks. Only the driver writes to
the sweep's storage (a local folder, NFS, ``s3://`` or ``gs://``, through
``pyarrow.fs``).

How rows land exactly once, across retries, kills, restores and PBT:

- Each reported epoch becomes a row keyed by (trial_id, epoch); a row
  whose key is already taken is dropped. The sink reads the keys back
  from Parquet when it starts.
- The first report of every run of a trial (see :mod:`lrtune.training.reporter`)
  carries the epoch it resumed from and the history it resumed with. The
  sink then withdraws the trial's rows of later epochs (the abandoned run
  trained them) and makes its earlier rows equal that history (under PBT
  the history of the weights the trial inherited), so for every epoch the
  row that stays is that of the model the trial went on with.
- Buffered rows are flushed at once when the first row exists, else every
  ``flush_seconds``, and always before Tune's experiment snapshot is
  uploaded to storage (:meth:`ParquetSink.get_state`): a snapshot that marks
  a trial ended never reaches storage ahead of that trial's rows. Rows lost
  with a killed driver come back with the history of the state each
  unfinished trial resumes from; a trial a restored snapshot marks ended
  with fewer rows than its last result gets them from the state it ended
  with (:meth:`ParquetSink._settle`), whatever reached storage first.
- A trial's end is not a flush of its own (at thousands of short trials that
  was a small file per trial, most of the driver's time in lrtune): the
  views hear of the end after the flush that writes its last row.

What a flush costs must not grow with the number of trials (a cluster runs
thousands): a flush writes only the buffered rows, as one small file, and
every ``MERGE_FAN_IN`` files of one size are merged into one (each row is
rewritten about log_16(rows) times in all). ``trials.parquet`` holds one row
per trial and has to be written whole, so it is rewritten at most every
``flush_seconds`` and never more than ``TABLES_SHARE`` of the driver's time
(a write that took 0.2 s waits 4 s for the next); each trial's row is built
again only when the trial changed.

Files and their replacement are :class:`~lrtune.engine.parquet_parts.PartFiles`'
job; when the sweep ends the files are compacted into one.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs
from ray.tune import Callback

from lrtune.engine.parquet_parts import PartFiles, write_atomically
from lrtune.folder import SweepFolder
from lrtune.results.tables import (
    EXPLOITS_SCHEMA,
    METRICS_SCHEMA,
    TRIALS_SCHEMA,
    config_columns,
    family,
)
from lrtune.training.hparams import columns as hparams_columns
from lrtune.training.trial import trial_config

__all__ = ["ParquetSink", "SinkError", "MERGE_FAN_IN", "TABLES_SHARE", "trial_error_message"]

#: Files of one size (tier) merged into one file of the next.
MERGE_FAN_IN = 16
#: Most of the driver's time that rewriting trials.parquet and exploits.parquet may take.
TABLES_SHARE = 0.05


class SinkError(RuntimeError):
    """The results storage cannot be written; the sweep must stop."""


@dataclass
class _TrialLog:
    """What the sink knows of one trial, from its rows: epoch -> values."""

    metric: dict[int, float] = field(default_factory=dict)
    spans: dict[int, tuple[float, float]] = field(default_factory=dict)  # epoch -> (start, end), Unix s
    status: dict[int, str | None] = field(default_factory=dict)
    run: dict[int, str | None] = field(default_factory=dict)
    part: dict[int, str | None] = field(default_factory=dict)  # file holding the row; None: buffered
    node: str | None = None
    seed: int | None = None
    version: int = 0  # the sink's change count when this log last changed

    @property
    def epochs_run(self) -> int:
        return max(self.metric, default=0)

    @property
    def last_status(self) -> str | None:
        return self.status.get(self.epochs_run)

    @property
    def first_start(self) -> float | None:
        return min((s for s, _ in self.spans.values()), default=None)

    @property
    def last_time(self) -> float | None:
        return max((e for _, e in self.spans.values()), default=None)

    def forget(self, epoch: int, version: int) -> None:
        for values in (self.metric, self.spans, self.status, self.run, self.part):
            values.pop(epoch, None)
        self.version = version

    def best(self, mode: str) -> tuple[int | None, float | None]:
        """(epoch, metric) of the best epoch; the earliest among ties."""
        scored = {e: m for e, m in self.metric.items() if not math.isnan(m)}
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
        flush_seconds: longest time a row waits in memory (the first row
            written waits for no period; Tune's snapshot flushes too), and
            the shortest time between two writes of ``trials.parquet``.
        round_index: the round of the sweep these trials are (its
            ``trials.parquet`` is in the round's folder; None: the sweep's own).
        budget: the sweep's :class:`~lrtune.engine.budget.TimeBudget`
            (None: none), to tell the trials it stopped (``stopped_early``)
            from those an interrupt left (``running``, ``pending``).
        views: what else shows the rows (:class:`lrtune.engine.views.RowView`:
            TensorBoard, MLflow, W&B): each is told of a row once it is written
            to Parquet, of every withdrawal once the files no longer hold it,
            and of each trial's start and end. A view that raises is recorded
            in ``view_failures``, never passed on to Tune.

    Raises:
        SinkError: (from any hook) the storage cannot be written; the
            message names the path.
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
        round_index: int | None = None,
        views: tuple = (),
        budget=None,
    ):
        self.views = tuple(views)
        self.budget = budget
        # Trials Tune ended (complete, error) in this run or before it: Tune's
        # interrupt (Ctrl-C) marks the trials it stops TERMINATED without telling
        # the callbacks, and those are unfinished, not stopped early.
        self._ended: set[str] = set()
        self._ended_before_known = False
        # (trial, status) of the trials ended since the last flush: views hear of them after it.
        self._ending: list[tuple[str, str]] = []
        self.view_failures: list[str] = []
        self.sweep_dir = sweep_dir.rstrip("/")
        self.sweep = sweep
        self.metric = metric
        self.mode = mode
        self.epochs = epochs
        self.flush_seconds = flush_seconds
        self.round_index = round_index
        self._folder = SweepFolder(self.sweep_dir)
        self._trials_path = (
            self._folder.trials_path
            if round_index is None
            else self._folder.round_folder(round_index).trials_path
        )
        self._fs = self._folder.fs
        session = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._parts = PartFiles(self._fs, self._folder.metrics_path, METRICS_SCHEMA, session, self._fail)
        self._buffer: list[dict[str, Any]] = []
        self._logs: dict[str, _TrialLog] = {}
        self._in_part: dict[str, set[tuple[str, int]]] = {}
        self._errors: dict[tuple[str, int], str] = {}
        self._exploits: list[dict[str, Any]] = []
        self._trials: list[Any] = []
        self._last_flush = time.monotonic()
        self._flushed_rows = False  # no row written yet by this sink: the first one goes at once
        self._tiers: dict[str, int] = {}  # file written by this sink -> its merge tier
        self._rows: dict[str, tuple[tuple, Any, dict[str, Any]]] = {}  # trial -> (key, config, trials row)
        # (trial that trained, run) -> family and config.* columns of the settings that run trained with
        self._run_columns: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._changes = 0
        self._tables_due = -math.inf  # monotonic time from which trials.parquet may be written again
        self._exploits_written = 0
        self._ready = False
        self.rows_written = 0
        self.rows_dropped = 0
        self.rows_withdrawn = 0
        self._args = {
            "sweep_dir": sweep_dir,
            "sweep": sweep,
            "metric": metric,
            "mode": mode,
            "epochs": epochs,
            "flush_seconds": flush_seconds,
            "round_index": round_index,
        }

    def __reduce__(self):
        # Tune pickles callbacks into tuner.pkl: keep the settings, not the state.
        return (_rebuild, (self._args,))

    # --- Tune callback hooks -------------------------------------------

    def setup(self, **info):
        self._start()

    def on_step_begin(self, iteration, trials, **info):
        if not self._ended_before_known:
            self._note_ended_before(trials)

    def get_state(self) -> None:
        """Flush; Tune calls this while it saves its experiment snapshot. Keeps no state (None).

        Tune (``TuneController.save_to_dir``, Ray 2.60) writes the trial
        statuses to its driver staging folder, then asks every callback for
        its state, then uploads the folder to storage, where ``--resume``
        reads it. Flushing here puts the rows of every trial that snapshot
        marks ended in Parquet before the snapshot can reach storage.
        (Should an upload still be running when the next snapshot is saved,
        Tune may upload it early; :meth:`_note_ended_before` repairs that.)

        Raises:
            SinkError: the storage cannot be written.
        """
        self.flush(tables=False)
        return None

    def on_trial_start(self, iteration, trials, trial, **info):
        self._show("trial_started", trial.trial_id, trial.config)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._trials = trials
        self.add(trial.trial_id, trial.config, result)
        self.maybe_flush()

    def on_step_end(self, iteration, trials, **info):
        self._trials = trials
        self.maybe_flush()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._trials = trials
        self._end(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._trials = trials
        self._end(trial, errored=True)

    def on_experiment_end(self, trials, **info):
        # No step ran: Tune started no trial, so its cleanup stopped none either.
        if not self._ended_before_known:
            self._note_ended_before(trials)
        self._trials = trials
        self.flush()
        self.compact()

    # --- the sink itself ------------------------------------------------

    def _end(self, trial, errored: bool) -> None:
        self._ended.add(trial.trial_id)
        self._settle(trial)
        self._ending.append((trial.trial_id, self._ended_status(trial.trial_id, errored)))
        self.maybe_flush()

    def _note_ended_before(self, trials) -> None:
        """The trials over when this run began (a restored experiment's finished ones).

        One whose rows stop short of its last result (the snapshot reached
        storage, its last rows did not) gets them from its newest saved state.
        """
        self._start()
        for trial in trials:
            if trial.status not in ("TERMINATED", "ERROR"):
                continue
            self._ended.add(trial.trial_id)
            last = (trial.last_result or {}).get("epoch")
            if isinstance(last, int) and last > self._log_of(trial.trial_id).epochs_run:
                self._settle(trial)
        self._ended_before_known = True

    @property
    def interrupted(self) -> bool:
        """Tune's run ended with trials unfinished, and not because the time budget was spent."""
        if self.budget is not None and self.budget.spent:
            return False
        return any(self.trial_status(t) in ("running", "pending") for t in self._trials)

    def _ended_status(self, trial_id: str, errored: bool) -> str:
        # Tune calls the hooks before it marks the trial TERMINATED or ERROR: trial_status would say running.
        log = self._logs.get(trial_id)
        if log is not None and log.last_status == "diverged":
            return "diverged"
        if errored:
            return "error"
        return "done" if log is not None and log.epochs_run >= self.epochs else "stopped_early"

    def _show(self, event: str, *args: Any) -> None:
        """Tell every view of ``event``; what a view raises is recorded, not raised into Tune."""
        for view in self.views:
            try:
                getattr(view, event)(*args)
            except Exception as e:  # noqa: BLE001 - a view never stops the rows
                self.view_failures.append(f"{type(view).__name__}.{event}: {type(e).__name__}: {e}")

    def _fail(self, path: str, error: Exception) -> None:
        raise SinkError(
            f"cannot write results to {self.sweep_dir} ({path}): {error}. "
            "What was written before is intact; fix the storage and run again with --resume."
        ) from error

    def _start(self) -> None:
        if self._ready:
            return
        try:
            self._fs.create_dir(self._folder.metrics_path, recursive=True)
            self._parts.finish_replacements()
            self._load()
            if self._fs.get_file_info(self._folder.exploits_path).type == fs.FileType.File:
                table = pq.read_table(self._folder.exploits_path, filesystem=self._fs, schema=EXPLOITS_SCHEMA)
                self._exploits = table.to_pylist()
        except OSError as e:
            raise SinkError(f"cannot use results storage {self.sweep_dir}: {e}") from e
        self._ready = True

    def _load(self) -> None:
        columns = [
            "trial_id",
            "epoch",
            "run",
            "timestamp",
            "epoch_seconds",
            "node",
            "status",
            "seed",
            self.metric,
        ]
        for name in self._parts.names():
            for row in self._parts.read(name, columns=columns).to_pylist():
                if int(row["epoch"]) not in self._log_of(row["trial_id"]).metric:
                    self._log(row, part=name)
        self._rows.clear()

    def _log_of(self, trial_id: str) -> _TrialLog:
        return self._logs.setdefault(trial_id, _TrialLog())

    def add(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
        """Buffer the row of one result; False if its epoch was already taken.

        A result that opens a run (it has ``lineage``) first reconciles the
        trial's rows with the history that run resumed from.
        """
        if "epoch" not in result:
            return False
        if "lineage" in result:
            history = json.loads(result["lineage"])
            restored = int(result.get("restored_epoch", len(history)))
            self._reconcile(trial_id, config, restored, history, result.get("restored_from"))
        return self._add_row(self._row(trial_id, config, result))

    def _row(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
        # The settings this epoch trained with: those of the run that trained it. A run
        # sends them once, with its first trained epoch (and every lineage row has its
        # run's); a run the sink has none for (a result from before) gets the trial's.
        own = trial_config(config)
        run = (result.get("trial") or trial_id, result.get("run"))
        if result.get("hparams") is not None:
            hyper = _hyper_columns(result["hparams"], self.epochs)
            self._run_columns[run] = hyper
        else:
            hyper = self._run_columns.get(run) or _hyper_columns(own, self.epochs)
        timestamp = float(result.get("epoch_end") or result.get("timestamp") or time.time())
        return {
            "sweep": self.sweep,
            "trial_id": trial_id,
            "epoch": int(result["epoch"]),
            **{k: _float(result.get(k)) for k in _FLOAT_METRICS},
            "status": result.get("status"),
            "timestamp": dt.datetime.fromtimestamp(timestamp, dt.timezone.utc),
            "node": result.get("node"),
            "node_id": result.get("node_id"),
            "run": result.get("run"),
            "trained_by": result.get("trial") or trial_id,
            "seed": result.get("seed", own.get("seed")),
            **hyper,
            # The trial's arm and repeat, whoever trained the epoch.
            "arm": own.get("label"),
            "repeat": own.get("repeat"),
        }

    def _add_row(self, row: dict[str, Any]) -> bool:
        if row["epoch"] in self._log_of(row["trial_id"]).metric:
            self.rows_dropped += 1
            return False
        self._buffer.append(row)
        self._log(row, part=None)
        return True

    def _log(self, row: Mapping[str, Any], part: str | None) -> None:
        trial_id, epoch = row["trial_id"], int(row["epoch"])
        log = self._log_of(trial_id)
        metric = row.get(self.metric)
        log.metric[epoch] = math.nan if metric is None else float(metric)
        end = row["timestamp"].timestamp()
        log.spans[epoch] = (end - (row.get("epoch_seconds") or 0.0), end)
        log.status[epoch] = row.get("status")
        log.run[epoch] = row.get("run")
        log.part[epoch] = part
        log.node = row.get("node") or log.node
        log.seed = row.get("seed", log.seed)
        self._changes += 1
        log.version = self._changes
        if part is not None:
            self._in_part.setdefault(part, set()).add((trial_id, epoch))

    def _reconcile(
        self,
        trial_id: str,
        config: Mapping[str, Any],
        restored: int,
        history: list[dict[str, Any]],
        source: str | None,
    ) -> None:
        """Make the trial's rows those of the history a new run resumed from."""
        self._start()
        lineage = {int(h["epoch"]): h for h in history}
        log = self._log_of(trial_id)
        reached = log.epochs_run
        stale = {
            e for e in log.metric if e > restored or (e in lineage and log.run[e] != lineage[e].get("run"))
        }
        if stale:
            self._withdraw(trial_id, stale)
        added = [e for e in sorted(lineage) if e <= restored and e not in log.metric]
        for epoch in added:
            self._add_row(self._row(trial_id, config, lineage[epoch]))
        donor = source or (history[-1].get("trial") if history else None)
        if donor not in (None, trial_id) and (stale or added):
            self._exploits.append(
                {
                    "sweep": self.sweep,
                    "trial_id": trial_id,
                    "epoch": reached,
                    "donor_trial_id": donor,
                    "donor_epoch": restored,
                    "timestamp": dt.datetime.now(dt.timezone.utc),
                }
            )

    def _settle(self, trial) -> None:
        """Make an ending trial's rows those of the state it ends with, where its newest state is past them.

        A trial can end without running again: after ``--resume``, a
        scheduler's restored verdict stops it while it is pending. The
        epochs it trained in a killed driver's run whose rows were lost with
        that driver are then only in its newest saved state, the model it
        ends with; a run would have resumed from that state
        (:func:`lrtune.training.checkpoints.choose_state`) and replayed them.
        """
        from lrtune.training.checkpoints import StateStore, choose_state

        store = StateStore(self.sweep_dir, trial.trial_id)
        chosen = choose_state(store, None, trial_config(trial.config), None)
        if chosen is None or chosen[1].epoch <= self._log_of(trial.trial_id).epochs_run:
            return
        state = chosen[1]
        history = store.meta(state.name).get("history", [])
        self._reconcile(trial.trial_id, trial.config, state.epoch, history, trial.trial_id)

    def _withdraw(self, trial_id: str, epochs: set[int]) -> None:
        log = self._log_of(trial_id)
        files = {log.part[e] for e in epochs} - {None}
        self._buffer = [r for r in self._buffer if not (r["trial_id"] == trial_id and r["epoch"] in epochs)]
        values = pa.array(sorted(epochs), pa.int32())
        for name in sorted(files):

            def drop(table: pa.Table) -> pa.Array:
                return pc.and_(pc.equal(table["trial_id"], trial_id), pc.is_in(table["epoch"], values))

            keys = self._in_part.pop(name, set())
            new = self._parts.withdraw(name, drop)
            kept = {k for k in keys if not (k[0] == trial_id and k[1] in epochs)}
            tier = self._tiers.pop(name, None)
            if new is not None:
                self._in_part[new] = kept
                if tier is not None:
                    self._tiers[new] = tier
            for t, e in kept:
                self._logs[t].part[e] = new
        self._changes += 1
        for epoch in epochs:
            log.forget(epoch, self._changes)
        self.rows_withdrawn += len(epochs)
        self._show("rows_withdrawn", trial_id, sorted(epochs))

    def maybe_flush(self) -> None:
        """Flush if ``flush_seconds`` have passed, or if the first row is waiting."""
        if self._buffer and not self._flushed_rows:
            self.flush(tables=False)
        elif time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush(tables=False)

    def flush(self, tables: bool = True) -> None:
        """Write buffered rows as one new file, and trials.parquet (and exploits.parquet).

        ``tables=False``: trials.parquet and exploits.parquet only if they are
        due (see the module's docstring); ``True``: now.
        """
        self._start()
        self._last_flush = time.monotonic()
        if self._buffer:
            table = pa.Table.from_pylist(self._buffer, schema=METRICS_SCHEMA)
            name = self._parts.add(table)
            keys = {(r["trial_id"], r["epoch"]) for r in self._buffer}
            self._add_part(name, keys, tier=0)
            self.rows_written += len(self._buffer)
            written, self._buffer = self._buffer, []
            self._show("rows_kept", written)
            self._flushed_rows = True
            self._merge()
        ending, self._ending = self._ending, []
        for trial_id, status in ending:
            self._show("trial_ended", trial_id, status)
        if tables or time.monotonic() >= self._tables_due:
            self.write_tables()

    def write_tables(self) -> None:
        """Rewrite trials.parquet, and exploits.parquet if it has new rows."""
        self._start()
        start = time.monotonic()
        if self._trials:
            write_atomically(self._fs, self.trials_table(self._trials), self._trials_path, self._fail)
        if self._exploits and len(self._exploits) != self._exploits_written:
            table = pa.Table.from_pylist(self._exploits, schema=EXPLOITS_SCHEMA)
            write_atomically(self._fs, table, self._folder.exploits_path, self._fail)
            self._exploits_written = len(self._exploits)
        # Counted from the flush's start, so the next periodic flush finds the tables due.
        cost = time.monotonic() - start
        self._tables_due = min(start, self._last_flush) + max(self.flush_seconds, cost / TABLES_SHARE)

    def _add_part(self, name: str, keys: set[tuple[str, int]], tier: int) -> None:
        self._in_part[name] = keys
        self._tiers[name] = tier
        for trial_id, epoch in keys:
            self._logs[trial_id].part[epoch] = name

    def _merge(self) -> None:
        """Merge ``MERGE_FAN_IN`` files of one tier into one file of the next, while any tier has that many."""
        tier = 0
        while True:
            names = sorted(n for n, t in self._tiers.items() if t == tier)
            if len(names) < MERGE_FAN_IN:
                return
            merged = self._parts.merge(names)
            keys = set()
            for name in names:
                keys |= self._in_part.pop(name, set())
                del self._tiers[name]
            self._add_part(merged, keys, tier + 1)
            tier += 1

    def compact(self) -> None:
        """Merge the small part files into one, then delete them."""
        self._start()
        self._parts.compact()
        self._in_part.clear()
        self._tiers.clear()
        for log in self._logs.values():
            log.part.clear()
        self._logs.clear()
        self._load()

    # --- trials.parquet ---------------------------------------------------

    def trial_status(self, trial) -> str:
        """``done``, ``stopped_early``, ``diverged``, ``error``, ``running`` or ``pending``.

        A trial Tune marked TERMINATED without ending it (an interrupt's
        cleanup) is ``running`` if it recorded an epoch, else ``pending``;
        one the time budget stopped is ``stopped_early``.
        """
        log = self._logs.get(trial.trial_id)
        if log is not None and log.last_status == "diverged":
            return "diverged"
        if trial.status == "ERROR":
            return "error"
        if trial.status == "TERMINATED":
            if log is not None and log.epochs_run >= self.epochs:
                return "done"
            if trial.trial_id in self._ended or (self.budget is not None and self.budget.spent):
                return "stopped_early"
            return "running" if log is not None and log.epochs_run else "pending"
        if trial.status in ("RUNNING", "PAUSED"):
            return "running"
        return "pending"

    def trial_rows(self, trials) -> list[dict[str, Any]]:
        """One ``TRIALS_SCHEMA`` row per trial, from the rows seen so far.

        A trial's row is built again only when its rows, its Tune status,
        its failure count or its config (PBT replaces it) changed since the
        last call; the rows returned are shared, not copies.
        """
        return [self._trial_row(trial) for trial in trials]

    def _trial_row(self, trial) -> dict[str, Any]:
        log = self._logs.get(trial.trial_id)
        key = (
            log.version if log is not None else -1,
            trial.status,
            getattr(trial, "num_failures", 0),
            trial.trial_id in self._ended,
        )
        cached = self._rows.get(trial.trial_id)
        if cached is not None and cached[0] == key and cached[1] is trial.config:
            return cached[2]
        log = log or _TrialLog()
        hyper = trial_config(trial.config)
        status = self.trial_status(trial)
        best_epoch, best_metric = log.best(self.mode)
        final = log.metric.get(log.epochs_run)
        error = self._error(trial) if status == "error" else None
        row = {
            "sweep": self.sweep,
            "trial_id": trial.trial_id,
            "status": status,
            "error": error,
            "epochs_run": log.epochs_run,
            "metric": self.metric,
            "best_epoch": best_epoch,
            "best_metric": best_metric,
            "final_metric": _float(final),
            "start_time": _utc(log.first_start),
            "end_time": _utc(log.last_time) if status not in ("running", "pending") else None,
            "node": log.node,
            "seed": log.seed,
            **_hyper_columns(hyper, self.epochs),
        }
        if (trial.trial_id, getattr(trial, "num_failures", 0)) in self._errors or status != "error":
            self._rows[trial.trial_id] = (key, trial.config, row)
        return row

    def trials_table(self, trials) -> pa.Table:
        return pa.Table.from_pylist(self.trial_rows(trials), schema=TRIALS_SCHEMA)

    def _error(self, trial) -> str:
        # Read each failure's trace once, not at every flush and redraw.
        key = (trial.trial_id, trial.num_failures)
        if key not in self._errors:
            message = trial_error_message(trial)
            if message is None:  # Tune has not written the trace yet
                return "unknown error"
            self._errors[key] = message
        return self._errors[key]


def _rebuild(args: dict[str, Any]) -> ParquetSink:
    args = dict(args)
    return ParquetSink(args.pop("sweep_dir"), **args)


_FLOAT_METRICS = ("lr", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds", "images_per_second")


def _hyper_columns(hyper: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """``arm``, ``family``, ``repeat`` and the ``config.*`` columns of what ``hyper`` trains with over ``epochs``.

    ``hyper``: a trial config, or a run's resolved settings (resolving them again changes nothing).
    """
    try:
        key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in hyper.items()))
        hash(key)
    except TypeError:  # an unhashable value: build the columns without the cache
        return _columns_of(hyper, epochs)
    return dict(_cached_columns(key, epochs))


@functools.lru_cache(maxsize=4096)
def _cached_columns(items: tuple[tuple[str, Any], ...], epochs: int) -> dict[str, Any]:
    # resolve() inspects the schedule's signature: too slow to run per result.
    return _columns_of(dict(items), epochs)


def _columns_of(hyper: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    try:
        config = config_columns(hyper, epochs)
    except ValueError:
        # Settings the trial refused as well (it failed on them): recorded as given.
        config = hparams_columns({"optimizer": "sgd", "schedule": "constant", **hyper})
    return {
        "arm": hyper.get("label"),
        "family": family(
            config["config.optimizer"], config["config.schedule"], config["config.warmup_epochs"]
        ),
        "repeat": hyper.get("repeat"),
        **config,
    }


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _utc(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def trial_error_message(trial) -> str | None:
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
