"""Schedules against their formulas, at boundaries and as properties."""

import math

import numpy as np
import pytest

from lrtune.training.schedules import (
    constant,
    exponential,
    lr_by_epoch,
    make_schedule,
    schedule_params,
    step_decay,
    time_based,
)

ARTICLE = {
    "constant": {"lr": 0.1},
    "time": {"lr": 0.1, "decay": 0.001},
    "step": {"lr": 0.1, "drop": 0.5, "epochs_drop": 10},
    "exponential": {"lr": 0.1, "k": 0.1},
}


def test_constant_is_lr_at_every_step():
    assert np.all(constant(0.1)(np.arange(1000)) == 0.1)


def test_time_based_divides_by_one_plus_decay_times_iteration():
    s = time_based(lr=0.1, decay=0.001)
    for t in (0, 1, 157, 1570, 15700):
        assert s(t) == pytest.approx(0.1 / (1 + 0.001 * t), rel=1e-12)


def test_time_based_decays_per_iteration_across_epochs():
    """Keras 2 SGD(decay=) semantics: the rate changes every batch, not every epoch."""
    s = time_based(lr=0.1, decay=0.01)
    steps_per_epoch = 10
    lr = s.at_step(np.arange(3 * steps_per_epoch), steps_per_epoch)
    assert np.all(np.diff(lr) < 0)  # falls at every single iteration
    assert lr[25] == pytest.approx(0.1 / 1.25)


def test_step_decay_halves_every_epochs_drop():
    s = step_decay(lr=0.1, drop=0.5, epochs_drop=10)
    epochs = np.arange(35)
    expected = 0.1 * 0.5 ** np.floor(epochs / 10)
    np.testing.assert_allclose(s(epochs), expected)
    assert s(9) == 0.1 and s(10) == 0.05 and s(19) == 0.05 and s(20) == 0.025


def test_step_decay_differs_from_articles_code_by_one_epoch():
    """The article's code used floor((1 + epoch) / epochs_drop): it drops at epoch 9."""
    s = step_decay(lr=0.1, drop=0.5, epochs_drop=10)
    article = lambda epoch: 0.1 * 0.5 ** math.floor((1 + epoch) / 10)  # noqa: E731
    assert s(9) == 0.1 and article(9) == 0.05
    assert all(s(e) == article(e - 1) for e in range(1, 40))


def test_exponential_is_lr_times_exp_minus_k_epoch():
    s = exponential(lr=0.1, k=0.1)
    for epoch in (0, 1, 10, 50):
        assert s(epoch) == pytest.approx(0.1 * math.exp(-0.1 * epoch), rel=1e-12)


def test_epoch_schedules_hold_within_an_epoch():
    for name in ("constant", "step", "exponential"):
        s = make_schedule(name, **ARTICLE[name])
        lr = s.at_step(np.arange(50), steps_per_epoch=25)
        assert len(set(lr[:25])) == 1 and len(set(lr[25:])) == 1, name


@pytest.mark.parametrize("name", list(ARTICLE))
def test_every_article_schedule_starts_at_lr_and_never_rises(name):
    s = make_schedule(name, **ARTICLE[name])
    lr = s.at_step(np.arange(0, 20000, 7), steps_per_epoch=157)
    assert lr[0] == pytest.approx(0.1)
    assert np.all(np.diff(lr) <= 0)
    assert np.all(lr > 0)


@pytest.mark.parametrize("name", list(ARTICLE))
def test_keras_ops_and_numpy_agree(name):
    import keras

    from lrtune.training.keras_schedule import KerasSchedule

    s = make_schedule(name, **ARTICLE[name])
    adapter = KerasSchedule(s, steps_per_epoch=13)
    steps = [0, 1, 12, 13, 129, 130, 1000]
    got = [float(keras.ops.convert_to_numpy(adapter(t))) for t in steps]
    np.testing.assert_allclose(got, s.at_step(np.array(steps, dtype=float), 13), rtol=1e-6)


def test_keras_schedule_round_trips_through_config():
    from lrtune.training.keras_schedule import KerasSchedule

    adapter = KerasSchedule(step_decay(0.2, 0.25, 3), steps_per_epoch=5)
    again = KerasSchedule.from_config(adapter.get_config())
    assert again.get_config() == {
        "name": "step",
        "params": {"lr": 0.2, "drop": 0.25, "epochs_drop": 3.0},
        "steps_per_epoch": 5,
    }


def test_lr_by_epoch_is_rate_of_each_epochs_last_iteration():
    lr = lr_by_epoch(time_based(lr=1.0, decay=0.1), epochs=3, steps_per_epoch=10)
    np.testing.assert_allclose(lr, [1 / (1 + 0.1 * 9), 1 / (1 + 0.1 * 19), 1 / (1 + 0.1 * 29)])


def test_schedule_params_name_the_articles_hyperparameters():
    assert {n: schedule_params(n) for n in ARTICLE} == {
        "constant": ("lr",),
        "time": ("lr", "decay"),
        "step": ("lr", "drop", "epochs_drop"),
        "exponential": ("lr", "k"),
    }


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: constant(0), r"Argument `lr` must be > 0. Received: lr=0.0"),
        (lambda: constant(float("nan")), r"`lr` must be > 0"),
        (lambda: time_based(0.1, -1), r"Argument `decay` must be >= 0. Received: decay=-1.0"),
        (lambda: step_decay(0.1, 1.5, 10), r"Argument `drop` must be in \(0, 1\]. Received: drop=1.5"),
        (lambda: step_decay(0.1, 0.5, 0), r"Argument `epochs_drop` must be > 0"),
        (lambda: exponential(0.1, -0.1), r"Argument `k` must be >= 0"),
        (
            lambda: make_schedule("cosinus", lr=0.1),
            r"Unknown schedule 'cosinus'. Valid schedules: constant, time, step, exponential, ",
        ),
        (
            lambda: make_schedule("step", lr=0.1, drop=0.5),
            r"Schedule 'step' takes \(lr, drop, epochs_drop\); missing epochs_drop",
        ),
        (lambda: make_schedule("time", lr=0.1, decay=0.1, k=1), r"got unexpected k"),
    ],
)
def test_bad_arguments_raise_with_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()
