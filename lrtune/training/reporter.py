"""The Keras callback that reports each epoch.

Each report is ``report(row, checkpoint_dir)``: the epoch's row and, unless
the epoch diverged, a folder to checkpoint (see :mod:`lrtune.training.checkpoints`
for what a checkpoint holds and where).

The first report of every *run* (a trial's training from a start or a
restore) also carries ``restored_epoch`` (the epoch it resumed from, 0 for
a fresh start), ``restored_from`` (the trial whose state it was) and ``lineage``: the JSON list of the rows of the history
it resumed with. A trial restored from an older state than its last
reported epoch (a driver killed and resumed, a lost node, a PBT exploit of
another trial's weights) re-runs epochs; the sink uses the lineage to keep,
for every epoch, the row of the model the trial goes on with.

The settings a run trains with (``hparams``: :meth:`lrtune.training.hparams.ResolvedTrial.values`)
travel once per run, with the first epoch it trains, not with every epoch:
the sink keeps them per run. Every row of the history holds its run's, so a
lineage (and a checkpoint's history) says what each of its epochs trained with.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import keras

from lrtune.training.checkpoints import save_state
from lrtune.training.keras_schedule import applied_learning_rate

__all__ = ["Reporter", "local_checkpoint"]

ReportFn = Callable[[dict[str, Any], "str | None"], None]
#: ``checkpoint(model, epoch, history, extra_state)``: a context giving the folder to report.
Checkpointer = Callable[[keras.Model, int, list, "Mapping[str, Any] | None"], AbstractContextManager[str]]


@contextlib.contextmanager
def local_checkpoint(
    model: keras.Model, epoch: int, history: list[dict[str, Any]], extra_state: Mapping[str, Any] | None
):
    """A temporary folder holding the whole state (outside Ray: nothing to point to)."""
    with tempfile.TemporaryDirectory(prefix="lrtune-ckpt-") as directory:
        save_state(directory, model, epoch, history, extra_state=extra_state)
        yield directory


class Reporter(keras.callbacks.Callback):
    """Report one row per epoch to ``report(row, checkpoint_dir)``.

    The row: ``epoch`` (1-based), ``lr`` applied by the epoch's last update
    (read from the optimizer), ``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``, ``epoch_seconds`` (training plus validation),
    ``images_per_second`` (training images / training seconds), ``epoch_end``
    (Unix time), ``status``
    and the fields of ``extra``. ``status`` is ``running``, ``done`` at the
    last epoch, or ``diverged``: a NaN or infinite loss stops training at
    the end of that epoch instead of raising, and writes no checkpoint.

    ``checkpoint`` writes the folder each report carries (None: no
    checkpoints); the folder is deleted once ``report`` returns (Ray Tune
    has copied it to storage by then). ``history`` is the rows of the
    epochs the run resumed with, ``restored_from`` the trial whose state
    that was (another one's after a PBT exploit). ``extra_state()`` gives the state of
    callbacks that must survive a resume (reduce on plateau's), saved with
    each checkpoint. ``hparams``: the settings this run trains with, in
    every history row and in the first trained row reported (see the module).
    """

    def __init__(
        self,
        report: ReportFn,
        *,
        num_train: int,
        epochs: int,
        extra: Mapping[str, Any] | None = None,
        checkpoint: Checkpointer | None = local_checkpoint,
        history: list[dict[str, Any]] | None = None,
        extra_state: Callable[[], Mapping[str, Any]] | None = None,
        restored_from: str | None = None,
        hparams: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self._report = report
        self._num_train = num_train
        self._epochs = epochs
        self._extra = dict(extra or {})
        self._checkpoint = checkpoint
        self.history: list[dict[str, Any]] = list(history or [])
        self._extra_state = extra_state
        self._hparams = dict(hparams) if hparams is not None else None
        self._hparams_sent = False
        self.status = "running"
        self._final: dict[str, Any] | None = None
        self._lineage: dict[str, Any] | None = {
            "restored_epoch": len(self.history),
            "restored_from": restored_from,
            "lineage": json.dumps(self.history),
        }

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._train_end = None

    def on_test_begin(self, logs=None):
        # fit() runs validation through evaluate(), which calls this hook.
        self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        logs = logs or {}
        train_seconds = (self._train_end or now) - self._epoch_start
        loss = float(logs.get("loss", math.nan))
        if not math.isfinite(loss):
            self.status = "diverged"
            self.model.stop_training = True
        elif epoch + 1 >= self._epochs:
            self.status = "done"
        row = {
            "epoch": epoch + 1,
            "lr": applied_learning_rate(self.model.optimizer),
            "loss": loss,
            "accuracy": float(logs.get("accuracy", math.nan)),
            "val_loss": float(logs.get("val_loss", math.nan)),
            "val_accuracy": float(logs.get("val_accuracy", math.nan)),
            "epoch_seconds": now - self._epoch_start,
            "images_per_second": self._num_train / max(train_seconds, 1e-9),
            "status": self.status,
            # Tune overwrites a result's "timestamp" with whole seconds of its own.
            "epoch_end": time.time(),
            **self._extra,
        }
        if self._hparams is not None:
            row["hparams"] = self._hparams
        self.history.append(row)
        if self._hparams_sent:
            row = {k: v for k, v in row.items() if k != "hparams"}
        self._hparams_sent = True
        if self.status in ("done", "diverged"):
            # The last row is sent by finish(), once fit() has returned: Tune ends
            # the trial at this report, and ending it inside fit() unwinds Keras's
            # data iterator by an exception (measured: 8-35 s before the worker
            # took its next trial, against 0.3 s from outside fit()).
            self._final = row
            return
        self._send(row, self._checkpoint)

    def finish(self) -> None:
        """Send the last epoch's row (``done`` or ``diverged``), held back by ``on_epoch_end``; call after ``fit``."""
        row, self._final = self._final, None
        if row is not None:
            self._send(row, None if row["status"] == "diverged" else self._checkpoint)

    def replay(self, after_epoch: int) -> None:
        """Report again the resumed history's rows after ``after_epoch``.

        A trial restored from a newer state than the one Tune's experiment
        snapshot names has epochs the scheduler never saw (they were lost
        with a killed driver): replayed, an early-stopping rung records them
        and can stop the trial before it trains more. The last row is always
        sent, so a run restored at its final epoch still reports.
        """
        rows = [r for r in self.history if r["epoch"] > after_epoch] or self.history[-1:]
        for row in rows:
            self.status = row.get("status", "running")
            self._send(dict(row), None)

    def _send(self, row: dict[str, Any], checkpoint: Checkpointer | None) -> None:
        payload = {**row, **(self._lineage or {})}
        self._lineage = None
        if checkpoint is None:
            self._report(payload, None)
            return
        extra_state = self._extra_state() if self._extra_state else None
        with checkpoint(self.model, row["epoch"], self.history, extra_state) as directory:
            self._report(payload, directory)
