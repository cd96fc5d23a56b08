"""Optimizer settings (the article's defaults, not Keras 3's) and model shapes."""

import pytest

from lrtune.training.optimizers import DEFAULTS, build_optimizer
from lrtune.training.schedules import constant, step_decay


@pytest.mark.parametrize(
    ("name", "lr", "expected"),
    [
        ("sgd", 0.1, {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}),
        ("adagrad", 0.01, {"epsilon": 1e-8}),
        ("adadelta", 1.0, {"rho": 0.95, "epsilon": 1e-8}),
        ("rmsprop", 0.001, {"rho": 0.9, "epsilon": 1e-8}),
        (
            "adam",
            0.001,
            {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "weight_decay": 0.0, "amsgrad": False},
        ),
        (
            "adamw",
            0.001,
            {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "weight_decay": 0.01, "amsgrad": False},
        ),
        ("nadam", 0.002, {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "weight_decay": 0.0}),
        ("lion", 1e-4, {"beta_1": 0.9, "beta_2": 0.99, "weight_decay": 0.0}),
        (
            "schedule_free_adamw",
            0.0025,
            {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "weight_decay": 0.0},
        ),
        (
            "muon",
            0.001,
            {
                "momentum": 0.95,
                "nesterov": True,
                "beta_1": 0.9,
                "beta_2": 0.999,
                "epsilon": 1e-7,
                "weight_decay": 0.004,
            },
        ),  # fmt: skip
    ],
)
def test_defaults_are_the_articles_and_the_papers(name, lr, expected):
    assert DEFAULTS[name] == {"lr": lr, **expected}
    optimizer = build_optimizer(name, constant(DEFAULTS[name]["lr"]), steps_per_epoch=10)
    config = optimizer.get_config()
    keras_names = {"beta_1": "adam_beta_1", "beta_2": "adam_beta_2"} if name == "muon" else {}
    for key, value in expected.items():
        key = keras_names.get(key, key)
        got = 0.0 if key == "weight_decay" and config[key] is None else config[key]  # None: no decay step
        assert got == pytest.approx(value), key
    assert float(optimizer.learning_rate) == pytest.approx(lr)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_and_adamw_take_amsgrad(name):
    assert build_optimizer(name, constant(0.001), 10).get_config()["amsgrad"] is False
    assert build_optimizer(name, constant(0.001), 10, amsgrad=True).get_config()["amsgrad"] is True


def test_sgd_takes_momentum_and_nesterov():
    optimizer = build_optimizer("sgd", constant(0.05), 10, momentum=0.9, nesterov=True)
    assert optimizer.get_config()["momentum"] == pytest.approx(0.9)
    assert optimizer.get_config()["nesterov"] is True


def test_any_schedule_drives_an_adaptive_optimizer():
    optimizer = build_optimizer("adam", step_decay(0.01, 0.5, 1), steps_per_epoch=4)
    optimizer.iterations.assign(4)  # first step of epoch 1
    assert float(optimizer.learning_rate) == pytest.approx(0.005)


def test_applied_learning_rate_is_the_last_updates_rate():
    from lrtune.training.keras_schedule import applied_learning_rate

    optimizer = build_optimizer("sgd", step_decay(0.1, 0.5, 1), steps_per_epoch=4)
    optimizer.iterations.assign(4)  # epoch 0 just ended: its 4 updates used 0.1
    assert applied_learning_rate(optimizer) == pytest.approx(0.1)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)  # Keras reports the next step's


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: build_optimizer("adamax", constant(0.1), 1),
            r"Unknown optimizer 'adamax'. Valid optimizers: sgd, adagrad, adadelta, rmsprop, adam, adamw, nadam, lion, "
            r"schedule_free_adamw, muon",
        ),
        (
            lambda: build_optimizer("adam", constant(0.1), 1, momentum=0.9),
            r"Optimizer 'adam' takes \(beta_1, beta_2, epsilon, weight_decay, amsgrad\); got unexpected momentum",
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
    from lrtune.training.models import build_model

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
    from lrtune.training.models import build_model

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

    from lrtune.training.models import build_model

    model = build_model("seed-tiny", num_classes=3)
    scaled = model.layers[0](np.full((1, 32, 32, 3), 255, dtype=np.uint8))
    assert float(np.max(scaled)) == pytest.approx(1.0)
    assert model.layers[-1].units == 3


def test_unknown_model_lists_valid_ones():
    from lrtune.training.models import build_model

    with pytest.raises(
        ValueError, match="Unknown model 'resnet'. Valid models: seed-tiny, keras-cifar10-cnn"
    ):
        build_model("resnet", 10)


# --- update rules against the article's Keras (2.0.x keras/optimizers.py) ----------
#
# Two steps on known gradients, each optimizer against the Keras 2.0 formula
# written out in NumPy (float64). Gradients are >= 0.05 in size, where the
# one remaining difference (epsilon inside or outside the square root, below)
# is under 1e-6 relative.

import numpy as np  # noqa: E402

GRADIENTS = np.array([[0.5, -0.2, 0.05], [-0.3, 0.4, 0.1]])
START = np.array([1.0, -1.0, 0.5])


def keras2_sgd(p, grads, lr, momentum, nesterov):
    v = np.zeros_like(p)
    for g in grads:
        v = momentum * v - lr * g
        p = p + (momentum * v - lr * g if nesterov else v)
    return p


def keras2_adagrad(p, grads, lr, epsilon):
    a = np.zeros_like(p)  # K.zeros: the accumulator starts at 0
    for g in grads:
        a = a + g**2
        p = p - lr * g / (np.sqrt(a) + epsilon)
    return p


def keras2_adadelta(p, grads, lr, rho, epsilon):
    a, d = np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        a = rho * a + (1 - rho) * g**2
        update = g * np.sqrt(d + epsilon) / np.sqrt(a + epsilon)
        p = p - lr * update
        d = rho * d + (1 - rho) * update**2
    return p


def keras2_rmsprop(p, grads, lr, rho, epsilon):
    a = np.zeros_like(p)
    for g in grads:
        a = rho * a + (1 - rho) * g**2
        p = p - lr * g / (np.sqrt(a) + epsilon)
    return p


def keras2_adam(p, grads, lr, beta_1, beta_2, epsilon):
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        lr_t = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g**2
        p = p - lr_t * m / (np.sqrt(v) + epsilon)
    return p


KERAS2 = {
    "sgd": keras2_sgd,
    "adagrad": keras2_adagrad,
    "adadelta": keras2_adadelta,
    "rmsprop": keras2_rmsprop,
    "adam": keras2_adam,
}


def keras3_steps(name, grads, **settings):
    import keras

    lr = settings.pop("lr", DEFAULTS[name]["lr"])
    optimizer = build_optimizer(name, constant(lr), steps_per_epoch=1, **settings)
    variable = keras.Variable(START.astype("float32"))
    for g in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g.astype("float32"))], [variable])
    return np.asarray(variable.numpy(), dtype=np.float64)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("sgd", {"momentum": 0.0, "nesterov": False}),
        ("sgd", {"momentum": 0.9, "nesterov": False}),
        ("sgd", {"momentum": 0.9, "nesterov": True}),
        ("adagrad", {}),
        ("adadelta", {}),
        ("rmsprop", {}),
        ("adam", {}),
        ("adam", {"lr": 0.01, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-4}),
    ],
)
def test_update_rule_matches_keras_2_0(name, settings):
    expected_settings = {**DEFAULTS[name], **settings}
    lr = expected_settings.pop("lr")
    assert expected_settings.pop("weight_decay", 0.0) == 0.0  # Keras 2.0 had none; 0 is the same rule
    assert expected_settings.pop("amsgrad", False) is False  # Keras 2.0 had none (2.1.3 added it)
    expected = KERAS2[name](START, GRADIENTS, lr, **expected_settings)
    got = keras3_steps(name, GRADIENTS, **settings)
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-7)


def test_adagrad_first_step_is_lr_times_the_sign_of_the_gradient():
    # Keras 2.0: a = 0 + g**2, step lr * g / (|g| + eps). Keras 3's default
    # accumulator 0.1 would give lr * 0.05 / sqrt(0.1025), a third of it.
    got = keras3_steps("adagrad", GRADIENTS[:1], lr=0.01)
    np.testing.assert_allclose(START - got, 0.01 * np.sign(GRADIENTS[0]), rtol=1e-6)


@pytest.mark.parametrize("name", ["adagrad", "rmsprop"])
def test_epsilon_inside_the_square_root_is_the_remaining_difference(name):
    # Documented in the README: Keras 3 divides by sqrt(a + eps), Keras 2.0 by
    # sqrt(a) + eps. With a gradient of 1e-5 (a ~ 1e-10, eps 1e-8) they differ 10x.
    g, eps, lr = 1e-5, 1e-8, DEFAULTS[name]["lr"]
    a = g**2 if name == "adagrad" else (1 - DEFAULTS["rmsprop"]["rho"]) * g**2
    step = START - keras3_steps(name, np.full((1, 3), g))
    np.testing.assert_allclose(step, lr * g / np.sqrt(a + eps), rtol=1e-3)  # float32 weights
    assert np.all(step < 0.2 * lr * g / (np.sqrt(a) + eps))


def test_keras_sgd_refuses_an_integer_momentum():
    # Why lrtune turns whole numbers into floats: YAML reads `momentum: 0` as an int.
    import keras

    with pytest.raises(ValueError, match=r"`momentum` must be a float between \[0, 1\]"):
        keras.optimizers.SGD(momentum=0)


def test_whole_number_settings_reach_keras_as_floats():
    optimizer = build_optimizer("sgd", constant(1), 10, momentum=0)
    assert optimizer.get_config()["momentum"] == 0.0
    adam = build_optimizer("adam", constant(1), 10, beta_1=0, epsilon=1)
    assert isinstance(adam.beta_1, float) and isinstance(adam.epsilon, float)
