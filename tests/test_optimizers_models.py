"""Optimizer settings (the article's defaults, not Keras 3's) and model shapes."""

import pytest

from lrtune.optimizers import DEFAULTS, build_optimizer
from lrtune.schedules import constant, step_decay


@pytest.mark.parametrize(
    ("name", "lr", "expected"),
    [
        ("sgd", 0.1, {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}),
        ("adagrad", 0.01, {"epsilon": 1e-8}),
        ("adadelta", 1.0, {"rho": 0.95, "epsilon": 1e-8}),
        ("rmsprop", 0.001, {"rho": 0.9, "epsilon": 1e-8}),
        ("adam", 0.001, {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "weight_decay": 0.0}),
        ("adamw", 0.001, {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "weight_decay": 0.01}),
        ("nadam", 0.002, {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "weight_decay": 0.0}),
        ("lion", 1e-4, {"beta_1": 0.9, "beta_2": 0.99, "weight_decay": 0.0}),
    ],
)
def test_defaults_are_the_articles_and_the_papers(name, lr, expected):
    assert DEFAULTS[name] == {"lr": lr, **expected}
    optimizer = build_optimizer(name, constant(DEFAULTS[name]["lr"]), steps_per_epoch=10)
    config = optimizer.get_config()
    for key, value in expected.items():
        got = 0.0 if key == "weight_decay" and config[key] is None else config[key]  # None: no decay step
        assert got == pytest.approx(value), key
    assert float(optimizer.learning_rate) == pytest.approx(lr)


def test_sgd_takes_momentum_and_nesterov():
    optimizer = build_optimizer("sgd", constant(0.05), 10, momentum=0.9, nesterov=True)
    assert optimizer.get_config()["momentum"] == pytest.approx(0.9)
    assert optimizer.get_config()["nesterov"] is True


def test_any_schedule_drives_an_adaptive_optimizer():
    optimizer = build_optimizer("adam", step_decay(0.01, 0.5, 1), steps_per_epoch=4)
    optimizer.iterations.assign(4)  # first step of epoch 1
    assert float(optimizer.learning_rate) == pytest.approx(0.005)


def test_applied_learning_rate_is_the_last_updates_rate():
    from lrtune.keras_schedule import applied_learning_rate

    optimizer = build_optimizer("sgd", step_decay(0.1, 0.5, 1), steps_per_epoch=4)
    optimizer.iterations.assign(4)  # epoch 0 just ended: its 4 updates used 0.1
    assert applied_learning_rate(optimizer) == pytest.approx(0.1)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)  # Keras reports the next step's


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: build_optimizer("adamax", constant(0.1), 1),
            r"Unknown optimizer 'adamax'. Valid optimizers: sgd, adagrad, adadelta, rmsprop, adam, adamw, nadam, lion",
        ),
        (
            lambda: build_optimizer("adam", constant(0.1), 1, momentum=0.9),
            r"Optimizer 'adam' takes \(beta_1, beta_2, epsilon, weight_decay\); got unexpected momentum",
        ),
        (
            lambda: build_optimizer("rmsprop", constant(0.1), 1, weight_decay=0.1),
            r"Optimizer 'rmsprop' takes \(rho, epsilon\); got unexpected weight_decay",
        ),
    ],
)
def test_bad_optimizer_settings_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _shapes(model):
    return [tuple(layer.output.shape[1:]) for layer in model.layers]


def test_seed_tiny_layers_are_the_notebooks():
    from lrtune.models import build_model

    model = build_model("seed-tiny", num_classes=2)
    assert _shapes(model) == [
        (32, 32, 3),
        (30, 30, 4),
        (28, 28, 8),
        (14, 14, 8),
        (14, 14, 8),
        (1568,),
        (16,),
        (16,),
        (2,),
    ]
    assert model.count_params() == (3 * 3 * 3 * 4 + 4) + (3 * 3 * 4 * 8 + 8) + (1568 * 16 + 16) + (16 * 2 + 2)


def test_keras_cifar10_cnn_layers_are_the_keras_examples():
    from lrtune.models import build_model

    model = build_model("keras-cifar10-cnn", num_classes=10)
    assert _shapes(model) == [
        (32, 32, 3),
        (32, 32, 32),
        (30, 30, 32),
        (15, 15, 32),
        (15, 15, 32),
        (15, 15, 64),
        (13, 13, 64),
        (6, 6, 64),
        (6, 6, 64),
        (2304,),
        (512,),
        (512,),
        (10,),
    ]
    assert model.count_params() == 1_250_858


def test_models_scale_uint8_pixels_to_unit_range():
    import numpy as np

    from lrtune.models import build_model

    model = build_model("seed-tiny", num_classes=3)
    scaled = model.layers[0](np.full((1, 32, 32, 3), 255, dtype=np.uint8))
    assert float(np.max(scaled)) == pytest.approx(1.0)
    assert model.layers[-1].units == 3


def test_unknown_model_lists_valid_ones():
    from lrtune.models import build_model

    with pytest.raises(
        ValueError, match="Unknown model 'resnet'. Valid models: seed-tiny, keras-cifar10-cnn"
    ):
        build_model("resnet", 10)
