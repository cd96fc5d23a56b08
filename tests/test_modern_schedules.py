"""The schedules added after the article, against their published formulas."""

import math

import numpy as np
import pytest

from lrtune.training.schedules import (
    SCHEDULES,
    SPAN_PARAMS,
    constant,
    cosine,
    cosine_restarts,
    cyclic,
    linear_to_zero,
    lr_by_epoch,
    make_schedule,
    one_cycle,
    piecewise,
    polynomial,
    required_params,
    with_warmup,
    wsd,
)


def test_piecewise_holds_each_value_from_its_boundary_to_the_next():
    s = piecewise(boundaries=[3, 5], values=[0.1, 0.02, 0.004])
    expected = {0: 0.1, 2: 0.1, 3: 0.02, 4: 0.02, 5: 0.004, 40: 0.004}
    assert {t: float(s(t)) for t in expected} == expected


def test_piecewise_is_constant_within_an_epoch():
    s = piecewise(boundaries=[1], values=[0.1, 0.01])
    lr = s.at_step(np.arange(8), steps_per_epoch=4)
    assert list(lr) == [0.1] * 4 + [0.01] * 4


def test_piecewise_takes_no_lr():
    with pytest.raises(
        ValueError, match=r"Schedule 'piecewise' takes \(boundaries, values\); got unexpected lr"
    ):
        make_schedule("piecewise", lr=0.1, boundaries=[1], values=[0.1, 0.01])


@pytest.mark.parametrize(
    ("boundaries", "values", "message"),
    [
        (
            [2, 2],
            [0.1, 0.1, 0.1],
            r"`boundaries` must be > 0 and strictly increasing. Received: boundaries=\[2.0, 2.0\]",
        ),
        ([0, 2], [0.1, 0.1, 0.1], r"`boundaries` must be > 0"),
        (
            [2],
            [0.1],
            r"`values` must have one more entry than `boundaries`. Received: 1 values for 1 boundaries",
        ),
        ([2], [0.1, 0.0], r"Argument `values` must be > 0. Received: values=0.0"),
        ([2], "0.1", r"`values` must be a list of numbers. Received: values='0.1'"),
        ([2], [0.1, "x"], r"`values` must be a list of finite numbers"),
    ],
)
def test_piecewise_rejects_bad_lists(boundaries, values, message):
    with pytest.raises(ValueError, match=message):
        piecewise(boundaries, values)


def test_piecewise_config_columns_fit_the_metrics_schema():
    import pyarrow as pa

    from lrtune.results.tables import CONFIG_COLUMNS, config_columns

    row = config_columns(
        {"optimizer": "sgd", "schedule": "piecewise", "boundaries": [2, 4], "values": [0.1, 0.01, 0.001]}
    )
    assert row["config.lr"] is None  # the schedule starts at values[0], not at the optimizer's default lr
    table = pa.Table.from_pylist(
        [row], schema=pa.schema([(f"config.{k}", t) for k, t in CONFIG_COLUMNS.items()])
    )
    assert table["config.boundaries"].to_pylist() == [[2.0, 4.0]]


# --- formulas at boundaries and in between -------------------------------------

#: One valid setting per registered schedule, with its span filled in.
EXAMPLES = {
    "constant": {"lr": 0.1},
    "time": {"lr": 0.1, "decay": 0.001},
    "step": {"lr": 0.1, "drop": 0.5, "epochs_drop": 10},
    "exponential": {"lr": 0.1, "k": 0.1},
    "piecewise": {"boundaries": [10, 20], "values": [0.1, 0.01, 0.001]},
    "cosine": {"lr": 0.1, "decay_epochs": 30, "lr_min": 0.001},
    "cosine_restarts": {"lr": 0.1, "period_epochs": 5, "period_mult": 2, "restart_decay": 0.8},
    "one_cycle": {"max_lr": 0.4, "cycle_epochs": 30},
    "cyclic": {"lr": 0.01, "max_lr": 0.1, "step_size_epochs": 4, "cycle_mode": "triangular2"},
    "polynomial": {"lr": 0.1, "decay_epochs": 30, "end_lr": 0.001, "power": 2.0},
    "plateau": {"lr": 0.1, "factor": 0.5, "patience": 2},  # its function: the rate before any reduction
    "wsd": {"lr": 0.1, "decay_epochs": 30, "decay_fraction": 0.2, "lr_min": 0.001},
    "linear_to_zero": {"lr": 0.1, "decay_epochs": 60},  # 0 from epoch 60 on: the span is the trial's
}


def cos_anneal(high, low, p):
    return low + (high - low) * (1 + math.cos(math.pi * p)) / 2


def test_examples_cover_every_registered_schedule():
    assert set(EXAMPLES) == set(SCHEDULES)


def test_cosine_goes_from_lr_to_lr_min_over_decay_epochs():
    s = cosine(lr=0.1, decay_epochs=20, lr_min=0.002)
    assert s(0) == pytest.approx(0.1, rel=1e-12)
    assert s(10) == pytest.approx((0.1 + 0.002) / 2, rel=1e-12)
    assert s(20) == pytest.approx(0.002, rel=1e-12) and s(35) == pytest.approx(0.002, rel=1e-12)
    for x in (0.25, 3.7, 15.0):
        assert s(x) == pytest.approx(0.002 + 0.098 * (1 + math.cos(math.pi * x / 20)) / 2, rel=1e-12)


def test_cosine_changes_at_every_step():
    lr = cosine(lr=0.1, decay_epochs=2).at_step(np.arange(20), steps_per_epoch=10)
    assert np.all(np.diff(lr) < 0)
    assert lr[5] == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.5 / 2)), rel=1e-12)


def test_cosine_restarts_periods_grow_by_period_mult_and_peaks_fall_by_restart_decay():
    s = cosine_restarts(lr=0.1, period_epochs=2, lr_min=0.01, period_mult=3, restart_decay=0.5)
    # periods: [0, 2), [2, 8), [8, 26); peaks 0.1, 0.05, 0.025
    assert s(0) == pytest.approx(0.1)
    assert s(1) == pytest.approx(cos_anneal(0.1, 0.01, 0.5))
    assert s(1.999999) == pytest.approx(0.01, abs=1e-9)
    assert s(2) == pytest.approx(0.05)
    assert s(5) == pytest.approx(cos_anneal(0.05, 0.01, 0.5))
    assert s(8) == pytest.approx(0.025)
    assert s(8 + 18 * 0.25) == pytest.approx(cos_anneal(0.025, 0.01, 0.25))


def test_cosine_restarts_with_period_mult_one_repeats_the_period():
    s = cosine_restarts(lr=0.1, period_epochs=3, period_mult=1)
    x = np.array([0.0, 1.5, 3.0, 4.5, 6.0, 7.5])
    np.testing.assert_allclose(s(x), [0.1, 0.05, 0.1, 0.05, 0.1, 0.05], rtol=1e-12)


def test_cosine_restarts_never_falls_below_lr_min_when_peaks_decay_past_it():
    s = cosine_restarts(lr=0.1, period_epochs=1, lr_min=0.05, period_mult=1, restart_decay=0.1)
    assert np.all(s(np.linspace(0, 10, 101)) >= 0.05 - 1e-15)


def test_one_cycle_matches_pytorch_one_cycle_lr_shape():
    s = one_cycle(max_lr=0.5, cycle_epochs=10)  # pct_start 0.3, div 25, final div 1e4, cos
    lr0, lr_end = 0.5 / 25, 0.5 / 25 / 1e4
    assert s(0) == pytest.approx(lr0)
    assert s(1.5) == pytest.approx(0.5 + (lr0 - 0.5) * (1 + math.cos(math.pi * 0.5)) / 2)
    assert s(3) == pytest.approx(0.5)
    assert s(6.5) == pytest.approx(cos_anneal(0.5, lr_end, 0.5))
    assert s(10) == pytest.approx(lr_end) and s(12) == pytest.approx(lr_end)


def test_one_cycle_linear_anneals_in_straight_lines():
    s = one_cycle(
        max_lr=1.0, cycle_epochs=4, pct_start=0.25, div_factor=4, final_div_factor=2, anneal="linear"
    )
    np.testing.assert_allclose(s(np.array([0, 0.5, 1, 2.5, 4])), [0.25, 0.625, 1.0, 0.5625, 0.125])


def test_cyclic_triangular_rises_and_falls_linearly_every_step_size():
    s = cyclic(lr=0.01, max_lr=0.05, step_size_epochs=2)
    np.testing.assert_allclose(s(np.array([0, 1, 2, 3, 4, 6, 8])), [0.01, 0.03, 0.05, 0.03, 0.01, 0.05, 0.01])


def test_cyclic_triangular2_halves_the_amplitude_each_cycle():
    s = cyclic(lr=0.01, max_lr=0.09, step_size_epochs=1, cycle_mode="triangular2")
    np.testing.assert_allclose(s(np.array([1, 3, 5])), [0.09, 0.05, 0.03])


def test_cyclic_exp_range_scales_the_amplitude_by_gamma_per_epoch():
    s = cyclic(lr=0.01, max_lr=0.11, step_size_epochs=1, cycle_mode="exp_range", gamma=0.5)
    np.testing.assert_allclose(
        s(np.array([1, 3, 2.5])), [0.01 + 0.1 * 0.5, 0.01 + 0.1 * 0.125, 0.01 + 0.1 * 0.5 * 0.5**2.5]
    )


def test_polynomial_decays_as_a_power_to_end_lr():
    s = polynomial(lr=0.1, decay_epochs=10, end_lr=0.01, power=0.5)
    for x in (0, 2.5, 9, 10, 20):
        assert s(x) == pytest.approx(0.09 * (1 - min(x, 10) / 10) ** 0.5 + 0.01, rel=1e-12)


@pytest.mark.parametrize(
    ("shape", "g"),
    [
        ("linear", lambda p: 1 - p),
        ("cosine", lambda p: (1 + math.cos(math.pi * p)) / 2),
        ("1-sqrt", lambda p: 1 - math.sqrt(p)),
    ],
)
def test_wsd_is_constant_then_cools_down_over_the_last_fraction(shape, g):
    # T = 20 epochs, the last 25% (epochs 15-20) cool down from 0.1 to 0.002.
    s = wsd(lr=0.1, decay_epochs=20, decay_fraction=0.25, decay_shape=shape, lr_min=0.002)
    for x in (0, 7.3, 15):
        assert s(x) == pytest.approx(0.1, rel=1e-12)
    for x in (15.5, 17.5, 19.9):
        assert s(x) == pytest.approx(0.002 + 0.098 * g((x - 15) / 5), rel=1e-12)
    assert s(20) == pytest.approx(0.002, rel=1e-12) and s(31) == pytest.approx(0.002, rel=1e-12)


def test_wsd_defaults_are_the_papers_20_percent_1_sqrt_cooldown_to_zero():
    s = wsd(lr=0.1, decay_epochs=10)
    assert s.params == {
        "lr": 0.1, "decay_epochs": 10.0, "decay_fraction": 0.2, "decay_shape": "1-sqrt", "lr_min": 0.0
    }  # fmt: skip
    assert s(8) == 0.1 and s(9) == pytest.approx(0.1 * (1 - math.sqrt(0.5)), rel=1e-12) and s(10) == 0.0


def test_wsd_with_fraction_one_is_a_decay_from_the_start():
    s = wsd(lr=0.1, decay_epochs=4, decay_fraction=1, decay_shape="linear")
    np.testing.assert_allclose(s(np.array([0, 1, 2, 4])), [0.1, 0.075, 0.05, 0.0], rtol=1e-12)


def test_wsd_changes_at_every_step_of_the_cooldown():
    lr = wsd(lr=0.1, decay_epochs=2, decay_fraction=0.5, decay_shape="linear").at_step(np.arange(20), 10)
    assert np.all(lr[:11] == 0.1) and np.all(np.diff(lr[10:]) < 0)
    assert lr[15] == pytest.approx(0.1 * (1 - 0.5 / 1), rel=1e-12)


def test_linear_to_zero_falls_in_a_straight_line_to_exactly_zero():
    s = linear_to_zero(lr=0.2, decay_epochs=8)
    for x in (0, 1, 2.5, 7.75):
        assert s(x) == pytest.approx(0.2 * (1 - x / 8), rel=1e-12)
    assert s(8) == 0.0 and s(9) == 0.0


def test_linear_to_zero_over_a_trial_ends_at_its_last_step_above_zero():
    lr = lr_by_epoch(linear_to_zero(lr=0.1, decay_epochs=3), epochs=3, steps_per_epoch=5)
    np.testing.assert_allclose(lr, [0.1 * (1 - s / 15) for s in (4, 9, 14)], rtol=1e-12)
    assert lr[-1] == pytest.approx(0.1 / 15)


# --- warmup as composition ------------------------------------------------------


def test_warmup_rises_linearly_then_the_schedule_counts_from_its_own_start():
    s = with_warmup(cosine(lr=0.1, decay_epochs=4), warmup_epochs=2, warmup_start=0.02)
    spe = 10
    lr = s.at_step(np.arange(80), spe)
    np.testing.assert_allclose(lr[:20], 0.02 + 0.08 * np.arange(20) / 20, rtol=1e-12)
    np.testing.assert_allclose(
        lr[20:60], cosine(lr=0.1, decay_epochs=4).at_step(np.arange(40), spe), rtol=1e-12
    )


def test_warmup_before_an_epoch_schedule_shifts_its_epochs():
    s = with_warmup(piecewise(boundaries=[1], values=[0.1, 0.01]), warmup_epochs=1)
    np.testing.assert_allclose(
        s.at_step(np.arange(12), steps_per_epoch=4), [0, 0.025, 0.05, 0.075] + [0.1] * 4 + [0.01] * 4
    )


def test_warmup_is_written_in_the_schedules_params():
    s = make_schedule("cyclic", lr=0.01, max_lr=0.1, step_size_epochs=2, warmup_epochs=1.5)
    assert (s.params["warmup_epochs"], s.params["warmup_start"], s.warmup_epochs) == (1.5, 0.0, 1.5)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_every_schedule_takes_a_warmup_that_rises_to_its_first_rate(name):
    spe = 7
    s = make_schedule(name, **EXAMPLES[name], warmup_epochs=3, warmup_start=0.0)
    lr = s.at_step(np.arange(3 * spe + 1), spe)
    assert lr[0] == 0.0 and np.all(np.diff(lr[: 3 * spe + 1]) > 0)
    assert lr[3 * spe] == pytest.approx(float(make_schedule(name, **EXAMPLES[name]).at_step(0, spe)))


# --- properties over every schedule ---------------------------------------------


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_every_schedule_is_positive_and_finite(name):
    s = make_schedule(name, **EXAMPLES[name])
    lr = s.at_step(np.arange(0, 60 * 13), steps_per_epoch=13)
    assert np.all(np.isfinite(lr)) and np.all(lr > 0)


@pytest.mark.parametrize(
    "name",
    ["cosine", "polynomial", "piecewise", "step", "exponential", "time", "plateau", "wsd", "linear_to_zero"],
)
def test_decaying_schedules_never_rise(name):
    lr = make_schedule(name, **EXAMPLES[name]).at_step(np.arange(0, 60 * 13), steps_per_epoch=13)
    assert np.all(np.diff(lr) <= 1e-15)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_keras_ops_and_numpy_agree_with_warmup_too(name):
    import keras

    from lrtune.training.keras_schedule import KerasSchedule

    for s in (make_schedule(name, **EXAMPLES[name]), make_schedule(name, **EXAMPLES[name], warmup_epochs=2)):
        adapter = KerasSchedule(s, steps_per_epoch=13)
        steps = [0, 1, 12, 13, 25, 26, 64, 65, 129, 130, 200, 333, 390, 1000]
        got = [float(keras.ops.convert_to_numpy(adapter(t))) for t in steps]
        np.testing.assert_allclose(got, s.at_step(np.array(steps, dtype=float), 13), rtol=2e-5, atol=1e-9)
        again = KerasSchedule.from_config(adapter.get_config())
        assert again.schedule.params == s.params and again.schedule.warmup_epochs == s.warmup_epochs


def test_span_params_are_required_by_their_schedules():
    assert {n for n in SCHEDULES if set(SPAN_PARAMS) & set(required_params(n))} == {
        "cosine",
        "one_cycle",
        "polynomial",
        "wsd",
        "linear_to_zero",
    }


def test_lr_by_epoch_of_a_per_step_schedule_is_its_rate_at_each_epochs_last_step():
    lr = lr_by_epoch(cosine(lr=0.1, decay_epochs=3), epochs=3, steps_per_epoch=4)
    np.testing.assert_allclose(lr, [0.05 * (1 + math.cos(math.pi * (e * 4 - 1) / 4 / 3)) for e in (1, 2, 3)])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cosine(0.1, 0), r"Argument `decay_epochs` must be > 0. Received: decay_epochs=0.0"),
        (
            lambda: cosine(0.1, 10, lr_min=0.2),
            r"Argument `lr_min` must be <= lr. Received: lr_min=0.2, lr=0.1",
        ),
        (
            lambda: cosine_restarts(0.1, 5, period_mult=0.5),
            r"Argument `period_mult` must be >= 1. Received: period_mult=0.5",
        ),
        (lambda: cosine_restarts(0.1, 5, restart_decay=0), r"Argument `restart_decay` must be in \(0, 1\]"),
        (
            lambda: one_cycle(0.1, 10, pct_start=1),
            r"Argument `pct_start` must be in \(0, 1\). Received: pct_start=1.0",
        ),
        (lambda: one_cycle(0.1, 10, div_factor=0.5), r"Argument `div_factor` must be >= 1"),
        (
            lambda: one_cycle(0.1, 10, anneal="cosine"),
            r"Argument `anneal` must be one of cos, linear. Received: anneal='cosine'",
        ),
        (lambda: cyclic(0.1, 0.01, 2), r"Argument `max_lr` must be >= lr. Received: max_lr=0.01, lr=0.1"),
        (
            lambda: cyclic(0.01, 0.1, 2, cycle_mode="tri"),
            r"Argument `cycle_mode` must be one of triangular, triangular2, exp_range",
        ),
        (lambda: cyclic(0.01, 0.1, 2, gamma=0.9), r"`gamma` applies to cycle_mode exp_range only"),
        (lambda: polynomial(0.1, 10, power=0), r"Argument `power` must be > 0"),
        (
            lambda: wsd(0.1, 10, decay_fraction=0),
            r"Argument `decay_fraction` must be in \(0, 1\]. Received: decay_fraction=0.0",
        ),
        (
            lambda: wsd(0.1, 10, decay_shape="sqrt"),
            r"Argument `decay_shape` must be one of linear, cosine, 1-sqrt. Received: decay_shape='sqrt'",
        ),
        (lambda: wsd(0.1, 10, lr_min=0.2), r"Argument `lr_min` must be <= lr. Received: lr_min=0.2, lr=0.1"),
        (lambda: linear_to_zero(0.1, 0), r"Argument `decay_epochs` must be > 0. Received: decay_epochs=0.0"),
        (lambda: with_warmup(constant(0.1), 0), r"Argument `warmup_epochs` must be > 0"),
        (
            lambda: with_warmup(constant(0.1), 1, warmup_start=0.5),
            r"`warmup_start` must be <= the schedule's first rate",
        ),
        (lambda: with_warmup(with_warmup(constant(0.1), 1), 1), r"already has a warmup"),
        (
            lambda: make_schedule("constant", lr=0.1, warmup_start=0.01),
            r"`warmup_start` needs `warmup_epochs`",
        ),
    ],
)
def test_bad_arguments_raise_with_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_schedules_plot_draws_every_schedule_and_a_warmup(tmp_path):
    from lrtune.results.plots import plot_schedules, schedule_catalogue

    catalogue = schedule_catalogue(["cosine.lr_min=0.001"], epochs=20)
    labels = [label for label, *_ in catalogue]
    assert set(SCHEDULES) | {"warmup+cosine"} == set(labels)
    assert dict((label, p) for label, _, _, p in catalogue)["cosine"]["decay_epochs"] == 20
    png = plot_schedules(
        [(label, name, p) for label, _, name, p in catalogue],
        tmp_path / "s.png",
        epochs=20,
        steps_per_epoch=5,
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schedules_overrides_name_what_takes_them():
    from lrtune.results.plots import schedule_catalogue

    with pytest.raises(ValueError, match=r"--set 'step.lr_min=0.1': no schedule takes 'lr_min'"):
        schedule_catalogue(["step.lr_min=0.1"])
