"""The Keras callback that reports each epoch, and the trial checkpoint.

A checkpoint is a folder of three files:

- ``model.weights.h5``: the model's weights;
- ``optimizer.npz``: every optimizer variable, the iteration count first,
  so a resumed time-based or step schedule continues where it stopped;
- ``trial.json``: ``{"epoch": <epochs done>, "history": [<rows>]}``, plus
  ``"extra_state"``: the state of callbacks that must survive a resume
  (reduce on plateau's), when the trial has any.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np

from lrtune.keras_schedule import applied_learning_rate

__all__ = ["Reporter", "save_checkpoint", "load_checkpoint", "load_extra_state"]

ReportFn = Callable[[dict[str, Any], "str | None"], None]


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

    With ``checkpoint=True`` each report carries a freshly written
    checkpoint folder, deleted once ``report`` returns (Ray Tune has copied
    it to storage by then).
    """

    def __init__(
        self,
        report: ReportFn,
        *,
        num_train: int,
        epochs: int,
        extra: Mapping[str, Any] | None = None,
        checkpoint: bool = True,
        history: list[dict[str, Any]] | None = None,
        extra_state: Callable[[], Mapping[str, Any]] | None = None,
    ):
        super().__init__()
        self._report = report
        self._num_train = num_train
        self._epochs = epochs
        self._extra = dict(extra or {})
        self._checkpoint = checkpoint
        self.history: list[dict[str, Any]] = list(history or [])
        self._extra_state = extra_state
        self.status = "running"

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
        self.history.append(row)
        if not self._checkpoint or self.status == "diverged":
            self._report(row, None)
            return
        with tempfile.TemporaryDirectory(prefix="lrtune-ckpt-") as directory:
            extra_state = self._extra_state() if self._extra_state else None
            save_checkpoint(directory, self.model, epoch + 1, self.history, extra_state=extra_state)
            self._report(row, directory)


def save_checkpoint(
    directory: str,
    model: keras.Model,
    epoch: int,
    history: list[dict[str, Any]],
    extra_state: Mapping[str, Any] | None = None,
) -> None:
    """Write weights, optimizer state and progress (and ``extra_state``) into ``directory``."""
    model.save_weights(os.path.join(directory, "model.weights.h5"))
    state = {f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)}
    np.savez(os.path.join(directory, "optimizer.npz"), **state)
    with open(os.path.join(directory, "trial.json"), "w") as f:
        progress = {"epoch": epoch, "history": history}
        if extra_state is not None:
            progress["extra_state"] = dict(extra_state)
        json.dump(progress, f)


def load_checkpoint(directory: str, model: keras.Model) -> tuple[int, list[dict[str, Any]]]:
    """Restore what :func:`save_checkpoint` wrote; returns (epoch, history).

    ``model`` must be compiled with the optimizer the checkpoint was saved
    with; its hyperparameters (lr, momentum) may differ, as after a PBT
    exploit, and the new ones apply from the next step.
    """
    model.load_weights(os.path.join(directory, "model.weights.h5"))
    model.optimizer.build(model.trainable_variables)
    with np.load(os.path.join(directory, "optimizer.npz")) as saved:
        values = [saved[f"v{i}"] for i in range(len(saved.files))]
    variables = model.optimizer.variables
    if len(values) != len(variables):
        raise ValueError(
            f"Checkpoint {directory} holds {len(values)} optimizer variables but the "
            f"{type(model.optimizer).__name__} optimizer has {len(variables)}: "
            "it was saved with another optimizer."
        )
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)
    with open(os.path.join(directory, "trial.json")) as f:
        state = json.load(f)
    return int(state["epoch"]), list(state["history"])


def load_extra_state(directory: str) -> dict[str, Any]:
    """The ``extra_state`` a checkpoint was saved with; ``{}`` if none."""
    with open(os.path.join(directory, "trial.json")) as f:
        return dict(json.load(f).get("extra_state") or {})
