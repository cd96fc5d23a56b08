"""One trial, without Ray: the reporter's rows, divergence, checkpoints."""

import math

import numpy as np
import pytest

from lrtune.training.schedules import lr_by_epoch, make_schedule
from lrtune.training.trial import TrainSettings, run_trial

SETTINGS = TrainSettings(model="seed-tiny", epochs=3, batch_size=32, threads=1)
STEP = {
    "optimizer": "sgd",
    "schedule": "step",
    "lr": 0.05,
    "drop": 0.5,
    "epochs_drop": 1,
    "momentum": 0.5,
    "seed": 3,
}


def collect(config, data, settings=SETTINGS, **kwargs):
    rows, checkpoints = [], []

    def report(row, checkpoint_dir):
        rows.append(row)
        if checkpoint_dir:
            import shutil
            import tempfile

            keep = tempfile.mkdtemp()
            shutil.copytree(checkpoint_dir, keep, dirs_exist_ok=True)
            checkpoints.append(keep)

    reporter = run_trial(config, data, settings, report, **kwargs)
    return rows, checkpoints, reporter


@pytest.fixture(scope="module")
def step_run(tiny_dataset):
    return collect(STEP, tiny_dataset)


def test_reports_every_epoch_with_the_documented_fields(step_run):
    rows, _, reporter = step_run
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {
        "lr",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "epoch_seconds",
        "images_per_second",
        "status",
    } <= set(rows[0])
    assert [r["status"] for r in rows] == ["running", "running", "done"] and reporter.status == "done"
    assert all(r["images_per_second"] > 0 and r["epoch_seconds"] > 0 for r in rows)


def test_loss_falls_on_learnable_data(step_run):
    rows, _, _ = step_run
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["val_accuracy"] > 0.8


def test_reported_lr_is_the_schedules_at_each_epochs_last_step(step_run, tiny_dataset):
    rows, _, _ = step_run
    steps_per_epoch = math.ceil(len(tiny_dataset.x_train) / SETTINGS.batch_size)
    expected = lr_by_epoch(make_schedule("step", lr=0.05, drop=0.5, epochs_drop=1), 3, steps_per_epoch)
    np.testing.assert_allclose([r["lr"] for r in rows], expected, rtol=1e-6)


def test_same_seed_same_run(step_run, tiny_dataset):
    again, _, _ = collect(STEP, tiny_dataset)
    assert [r["loss"] for r in again] == [r["loss"] for r in step_run[0]]


def test_resume_continues_the_time_based_schedule_from_the_checkpoint(tiny_dataset):
    config = {"optimizer": "sgd", "schedule": "time", "lr": 0.05, "decay": 0.01, "seed": 1}
    full, checkpoints, _ = collect(config, tiny_dataset)
    resumed, _, _ = collect(config, tiny_dataset, restore_from=checkpoints[0])
    assert [r["epoch"] for r in resumed] == [2, 3]
    # The iteration count came back: the rate goes on decaying, not restarting at 0.05.
    assert [r["lr"] for r in resumed] == pytest.approx([r["lr"] for r in full[1:]], rel=1e-6)


def test_nan_loss_ends_the_trial_as_diverged(tiny_dataset):
    rows, checkpoints, reporter = collect(
        {"optimizer": "sgd", "lr": 1e20, "momentum": 0.9, "seed": 0}, tiny_dataset
    )
    assert reporter.status == "diverged"
    assert len(rows) == 1 and rows[0]["status"] == "diverged" and not math.isfinite(rows[0]["loss"])
    assert checkpoints == []  # a diverged state is not worth resuming


def test_reported_lr_under_mixed_precision_is_the_applied_one(tiny_dataset):
    # Keras wraps the optimizer in a LossScaleOptimizer; the schedule is its inner optimizer's.
    import dataclasses

    import keras

    settings = dataclasses.replace(SETTINGS, epochs=2, mixed_precision=True)
    try:
        rows, _, _ = collect(STEP, tiny_dataset, settings)
        # It trained in float16: clear_session() (a reused worker's reset) once undid the policy.
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    steps_per_epoch = math.ceil(len(tiny_dataset.x_train) / SETTINGS.batch_size)
    expected = lr_by_epoch(make_schedule("step", lr=0.05, drop=0.5, epochs_drop=1), 2, steps_per_epoch)
    np.testing.assert_allclose(
        [r["lr"] for r in rows], expected, rtol=1e-6
    )  # [0.05, 0.025], not [0.025, 0.0125]


def test_trial_seed_rule():
    from lrtune.training.trial import trial_seed

    # repeats of a configuration: seed, seed+1, ...; the next sample continues after them
    assert [trial_seed(10, s, r, repeats=2) for s in range(3) for r in range(2)] == [10, 11, 12, 13, 14, 15]


def test_the_last_epoch_is_reported_after_fit_returns(tiny_dataset):
    """Tune ends a trial at its last report; sent from inside fit(), that unwound Keras's
    data iterator by an exception and the worker took seconds before its next trial."""
    import keras

    inside_fit = []

    class Watch(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            inside_fit.append(True)

        def on_train_end(self, logs=None):
            inside_fit.append(False)

    rows, checkpoints = [], []

    def report(row, checkpoint_dir):
        rows.append((row["epoch"], row["status"], inside_fit[-1]))
        checkpoints.append(checkpoint_dir is not None)

    settings = TrainSettings(model="seed-tiny", epochs=2, batch_size=32, threads=1)
    # A callback that records whether fit() is running, added to every fit() call.
    original_fit = keras.Model.fit

    def fit(self, *args, callbacks=None, **kwargs):
        return original_fit(self, *args, callbacks=[Watch(), *(callbacks or [])], **kwargs)

    keras.Model.fit = fit
    try:
        run_trial(STEP, tiny_dataset, settings, report)
    finally:
        keras.Model.fit = original_fit
    assert rows == [(1, "running", True), (2, "done", False)]
    assert checkpoints == [True, True]  # the last epoch still carries its checkpoint
