"""Schedule-free AdamW and Muon: what Keras does with them and what lrtune adds, without Ray."""

import math

import numpy as np
import pytest

from lrtune.training.hparams import resolve
from lrtune.training.optimizers import build_optimizer, muon_split, schedule_conflict
from lrtune.training.schedules import constant
from lrtune.training.trial import TrainSettings, run_trial

SETTINGS = TrainSettings(model="seed-tiny", epochs=2, batch_size=64, threads=1)


def collect(config, data, settings=SETTINGS, **kwargs):
    import shutil
    import tempfile

    rows, checkpoints = [], []

    def report(row, checkpoint_dir):
        rows.append(row)
        if checkpoint_dir:
            keep = tempfile.mkdtemp()
            shutil.copytree(checkpoint_dir, keep, dirs_exist_ok=True)
            checkpoints.append(keep)

    reporter = run_trial(config, data, settings, report, **kwargs)
    return rows, checkpoints, reporter


# --- schedule-free AdamW ---------------------------------------------------------


def schedule_free_reference(w0, grad, steps, lr=0.1, b1=0.9, b2=0.999, eps=1e-8, keras_tf=False):
    """(y, x) after ``steps`` steps of Schedule-Free AdamW (Defazio et al. 2024, Algorithm 1, uniform weights).

    ``keras_tf``: as Keras 3.15 runs it on TensorFlow, where ``momentum_old =
    momentum.value`` reads the variable after its update, so ``x_old`` is
    recovered with the new ``z``.
    """
    y = w0.astype(np.float64).copy()
    z, v = y.copy(), np.zeros_like(y)
    for t in range(1, steps + 1):
        g = grad(y)
        v = b2 * v + (1 - b2) * g * g
        z_old, z = z, z - lr * g / (np.sqrt(v / (1 - b2**t)) + eps)
        x_old = (y - (1 - b1) * (z if keras_tf else z_old)) / b1
        x = (1 - 1 / t) * x_old + z / t
        y = (1 - b1) * z + b1 * x
    return y, x


def test_averaged_weights_are_the_x_that_keras_carries():
    import keras
    import tensorflow as tf

    from lrtune.training.schedule_free import averaged_weights

    w0 = np.array([[0.5], [-0.3]], dtype="float32")
    inputs, targets = np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([[1.0], [0.0]])

    def grad(w):  # of the mean squared error
        return 2 / len(inputs) * inputs.T @ (inputs @ w - targets)

    variable = keras.Variable(w0)
    optimizer = build_optimizer("schedule_free_adamw", constant(0.1), steps_per_epoch=1)
    optimizer.build([variable])
    for _ in range(3):
        optimizer.apply_gradients([(tf.constant(grad(variable.numpy()), dtype="float32"), variable)])
    y, x = schedule_free_reference(w0, grad, 3, keras_tf=True)
    np.testing.assert_allclose(variable.numpy(), y, rtol=1e-5)  # the model holds y
    np.testing.assert_allclose(averaged_weights(optimizer, [variable])[0], x, rtol=1e-5)
    # Keras on TensorFlow is not the paper's algorithm from step 2 on: its x and y drift from the paper's.
    y_paper, x_paper = schedule_free_reference(w0, grad, 3)
    assert not np.allclose(x, x_paper, rtol=1e-3) and not np.allclose(y, y_paper, rtol=1e-3)


@pytest.fixture(scope="module")
def schedule_free_run(tiny_dataset):
    config = {"optimizer": "schedule_free_adamw", "lr": 0.005, "warmup_epochs": 0.5, "seed": 2}
    return config, collect(config, tiny_dataset)


def test_schedule_free_validation_metrics_are_those_of_the_averaged_weights(schedule_free_run, tiny_dataset):
    import keras

    from lrtune.training.batches import validation_batches
    from lrtune.training.schedule_free import averaged_weights

    _, (rows, _, reporter) = schedule_free_run
    model = reporter.model
    y = [keras.ops.convert_to_numpy(v.value) for v in model.trainable_variables]
    at_y = model.evaluate(validation_batches(tiny_dataset.x_val, tiny_dataset.y_val, 64), verbose=0)
    for variable, x in zip(
        model.trainable_variables, averaged_weights(model.optimizer, model.trainable_variables), strict=True
    ):
        variable.assign(x)
    at_x = model.evaluate(validation_batches(tiny_dataset.x_val, tiny_dataset.y_val, 64), verbose=0)
    assert rows[-1]["val_loss"] == pytest.approx(at_x[0], rel=1e-5)
    assert rows[-1]["val_accuracy"] == pytest.approx(at_x[1], rel=1e-6)
    assert at_x[0] != pytest.approx(at_y[0], rel=1e-5)  # the swap matters: y would report another loss
    # After training the model holds y again (what training and the checkpoints need).
    for variable, kept in zip(model.trainable_variables, y, strict=True):
        variable.assign(kept)


def test_schedule_free_lr_column_is_the_warmup_then_constant(schedule_free_run, tiny_dataset):
    from lrtune.training.schedules import lr_by_epoch, make_schedule

    _, (rows, _, _) = schedule_free_run
    spe = math.ceil(len(tiny_dataset.x_train) / SETTINGS.batch_size)
    expected = lr_by_epoch(make_schedule("constant", lr=0.005, warmup_epochs=0.5), 2, spe)
    np.testing.assert_allclose([r["lr"] for r in rows], expected, rtol=1e-6)


def test_schedule_free_resumed_from_its_checkpoint_continues_bit_for_bit(schedule_free_run, tiny_dataset):
    config, (rows, checkpoints, _) = schedule_free_run
    resumed, _, _ = collect(config, tiny_dataset, restore_from=checkpoints[0])
    assert [r["epoch"] for r in resumed] == [2]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert resumed[0][key] == rows[1][key], key


def test_schedule_free_refuses_a_decaying_schedule_with_the_reason():
    assert schedule_conflict("schedule_free_adamw", "constant") is None
    with pytest.raises(
        ValueError,
        match=r"optimizer schedule_free_adamw replaces the schedule .* use schedule: constant, with "
        r"warmup_epochs if wanted. Received: schedule=cosine",
    ):
        resolve({"optimizer": "schedule_free_adamw", "schedule": "cosine", "lr": 0.001}, epochs=5)


# --- Muon ---------------------------------------------------------------------------


def test_muon_on_seed_tiny_gives_only_the_dense_kernels_to_muon():
    """Keras's Muon: 2-D variables get Muon, the rest (4-D Conv2D kernels, biases) AdamW."""
    from lrtune.training.models import build_model

    model = build_model("seed-tiny", 10, (32, 32, 3))
    # Dense kernels: 1568x16 and 16x10; conv kernels 3x3x3x4, 3x3x4x8; biases 4, 8, 16, 10.
    assert muon_split(model) == {
        "muon": {"variables": 2, "weights": 1568 * 16 + 16 * 10},
        "adamw": {"variables": 6, "weights": 3 * 3 * 3 * 4 + 3 * 3 * 4 * 8 + 4 + 8 + 16 + 10},
    }


def test_muon_settings_reach_keras_under_its_own_names():
    config = build_optimizer(
        "muon", constant(0.001), 10, beta_1=0.8, beta_2=0.99, weight_decay=0.1
    ).get_config()
    assert (config["adam_beta_1"], config["adam_beta_2"]) == (0.8, 0.99)
    assert config["weight_decay"] == config["adam_weight_decay"] == 0.1  # one decay for both kinds of step
    no_decay = build_optimizer("muon", constant(0.001), 10, weight_decay=0).get_config()
    assert no_decay["weight_decay"] is None and no_decay["adam_weight_decay"] is None


# --- PBT and find -------------------------------------------------------------------


def test_pbt_refuses_to_perturb_schedule_free_beta_1_with_the_reason():
    from lrtune.spec import SweepFileError, parse_spec

    document = {
        "name": "p",
        "space": {"optimizer": "schedule_free_adamw", "lr": 0.002, "beta_1": 0.9},
        "scheduler": {"pbt": {"mutations": {"beta_1": {"uniform": [0.8, 0.95]}}}},
    }
    with pytest.raises(
        SweepFileError,
        match=r"p.yaml: scheduler.pbt.mutations.beta_1: PBT cannot change beta_1 of optimizer "
        r"schedule_free_adamw during training: Keras keeps only y and z",
    ):
        parse_spec(document, "p.yaml")
    document["scheduler"] = {"pbt": {"mutations": {"lr": {"loguniform": [0.001, 0.01]}}}}
    assert parse_spec(document, "p.yaml").pbt_mutations().keys() == {"lr"}


def test_find_leaves_schedule_free_out_and_says_why_when_nothing_is_left():
    from lrtune.engine.errors import SweepError
    from lrtune.engine.find import range_arms
    from lrtune.spec import parse_spec

    space = [{"optimizer": "schedule_free_adamw"}, {"optimizer": "muon", "schedule": "wsd", "lr": 0.001}]
    arms = range_arms(parse_spec({"name": "f", "space": space}, "f.yaml"))
    assert [(a.optimizer, a.arms) for a in arms] == [("muon", (1,))]
    with pytest.raises(SweepError, match=r"schedule_free_adamw's training loss, at its interpolation y"):
        range_arms(parse_spec({"name": "f", "space": space[:1]}, "f.yaml"))
