"""Choosing a configuration: means over repeats, Welch's test against the best, intervals, honesty."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from scipy.stats import t as scipy_t

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_results import PBT_SCHEDULER, STEPS_PER_EPOCH, member, population, run, sgd, write_sweep  # noqa: E402

from lrtune.results.best import Segment, choose, format_choice, segments  # noqa: E402
from lrtune.results.stats import compare_with_best, mean_confidence_interval  # noqa: E402
from lrtune.spec import parse_spec  # noqa: E402
from lrtune.training.schedules import lr_by_epoch, make_schedule  # noqa: E402

A = sgd("step", lr=0.05, drop=0.5, epochs_drop=2)
B = sgd("step", lr=0.01, drop=0.5, epochs_drop=2)
ADAM = {"optimizer": "adam", "lr": 0.001}


def finals(config, values, *, epochs=3, **kwargs):
    """One run per value: a flat curve ending at that value, repeats 0, 1, ..."""
    return [run(config, [v - 0.1] * (epochs - 1) + [v], repeat=i, **kwargs) for i, v in enumerate(values)]


# Two-sided 95% critical values of Student's t, t_{0.975, df} (NIST/SEMATECH e-Handbook 1.3.6.7.2).
T_975 = {1: 12.706, 2: 4.303, 4: 2.776, 8: 2.306}


def welch(a, b):
    """Welch's t and its Welch-Satterthwaite df, written out (Welch 1947)."""
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return t, df


def welch_p(a, b):
    t, df = welch(a, b)
    return 2 * scipy_t.sf(abs(t), df)


# --- the statistics: intervals and the test on the difference ---------------------------


@pytest.mark.parametrize("values", [[0.80, 0.81, 0.79], [0.5, 0.52, 0.49, 0.55, 0.51], [0.3, 0.4]])
def test_confidence_interval_is_the_student_t_interval_of_the_table(values):
    n, mean, std = len(values), np.mean(values), np.std(values, ddof=1)
    half = T_975[n - 1] * std / math.sqrt(n)
    assert mean_confidence_interval(values) == pytest.approx((mean - half, mean + half), abs=1e-4)


def test_the_issues_n2_accuracy_interval_is_clipped_to_0_1(tmp_path):
    # mean 0.165, std 0.0785: the t interval is 0.165 -/+ 12.706 * 0.0785 / sqrt(2) = [-0.54, 0.87].
    choice = choose(write_sweep(tmp_path, finals(A, [0.1095, 0.2205]), epochs=3))
    assert choice.best.ci_low == 0.0
    assert choice.best.ci_high == pytest.approx(0.165 + 12.706 * 0.0785 / math.sqrt(2), abs=1e-3)
    assert (
        "95% CI of the mean [0.0000, 0.8702] (Student's t, seed spread pooled over the configurations, within [0, 1])"
        in (format_choice(choice))
    )


def test_an_accuracy_interval_never_passes_1_nor_a_loss_interval_0():
    assert mean_confidence_interval([0.99, 0.90], bounds=(0.0, 1.0))[1] == 1.0
    assert mean_confidence_interval([0.05, 0.60], bounds=(0.0, math.inf))[0] == 0.0


def test_one_value_has_no_interval_its_spread_is_unknown():
    low, high = mean_confidence_interval([0.8])
    assert math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": []}, r"`values` must be a non-empty sequence of numbers. Received: \[\]"),
        ({"values": [0.5, math.nan]}, r"`values` must hold finite numbers only. Received: \[0.5, nan\]"),
        ({"values": [0.5, 1.2], "bounds": (0.0, 1.0)}, r"`values` must lie in bounds \[0.0, 1.0\]"),
        (
            {"values": [0.5, 0.6], "confidence": 95},
            r"`confidence` must be in \(0, 1\). Received: confidence=95",
        ),
        ({"values": [0.5, 0.6], "bounds": (1.0, 0.0)}, r"`bounds` must be \(low, high\) with low <= high"),
    ],
)
def test_confidence_interval_rejects_bad_input_with_the_value(kwargs, message):
    values = kwargs.pop("values")
    with pytest.raises(ValueError, match=message):
        mean_confidence_interval(values, **kwargs)


def test_welch_p_value_and_statistic_follow_the_formula():
    best, other = [0.80, 0.81, 0.79, 0.82], [0.74, 0.79, 0.70]
    (cmp,) = compare_with_best({"other": other, "best": best}, mode="max").comparisons
    t, df = welch(best, other)
    assert (cmp.statistic, cmp.df, cmp.p_value) == pytest.approx((t, df, welch_p(best, other)))
    assert cmp.statistic > 0 and cmp.significant is (cmp.p_value < 0.05)


def test_overlapping_95_percent_intervals_can_still_be_significantly_different():
    # Equal spreads s over n = 5: the CIs overlap while the difference < 2 * 2.776 * s / sqrt(5) =
    # 2.48 s; Welch rejects at 0.05 once it is > 2.306 * s * sqrt(2 / 5) = 1.46 s. Here it is 2.02 s.
    spread = np.array([-0.01, -0.005, 0.0, 0.005, 0.01])
    best, other = 0.80 + spread, 0.784 + spread
    b_low, _ = mean_confidence_interval(best)
    _, o_high = mean_confidence_interval(other)
    assert o_high > b_low  # the intervals overlap: the old rule called these within noise
    result = compare_with_best({"best": best, "other": other}, mode="max")
    assert (
        result.comparisons[0].p_value == pytest.approx(welch_p(best, other)) and welch_p(best, other) < 0.05
    )
    assert result.clear_winner and result.within_noise == ()


def test_mode_min_picks_the_lowest_mean_and_a_positive_statistic_means_the_best_is_lower():
    result = compare_with_best({"high": [0.9, 0.95, 0.92], "low": [0.4, 0.42, 0.41]}, mode="min")
    assert result.best == "low" and result.comparisons[0].key == "high"
    assert result.comparisons[0].statistic > 0 and result.comparisons[0].significant


def test_a_single_run_is_never_called_separated_however_far_it_is():
    result = compare_with_best({"best": [0.80, 0.81, 0.79], "far": [0.10]}, mode="max")
    (cmp,) = result.comparisons
    assert cmp.p_value is None and not cmp.significant and cmp.reason == "one run: spread unknown"
    assert not result.clear_winner
    lone = compare_with_best({"best": [0.90], "other": [0.1, 0.11, 0.12]}, mode="max").comparisons[0]
    assert not lone.significant and lone.reason == "the best has one run: spread unknown"


def test_two_samples_without_spread_are_not_tested():
    (cmp,) = compare_with_best({"a": [0.8, 0.8], "b": [0.6, 0.6]}, mode="max").comparisons
    assert cmp.p_value is None and not cmp.significant
    assert cmp.reason == "no spread in either (identical runs)"


def test_ties_go_to_more_runs_then_to_the_first_given():
    assert compare_with_best({"a": [0.7, 0.9], "b": [0.8, 0.8, 0.8]}, mode="max").best == "b"
    assert compare_with_best({"a": [0.7, 0.9], "b": [0.9, 0.7]}, mode="max").best == "a"


@pytest.mark.parametrize(
    ("samples", "kwargs", "message"),
    [
        ({}, {}, r"`samples` must hold at least one configuration"),
        ({"a": [0.5]}, {"mode": "best"}, r"`mode` must be 'max' or 'min'. Received: mode='best'"),
        ({"a": [0.5]}, {"alpha": 5}, r"`alpha` must be a number in \(0, 1\). Received: alpha=5"),
        ({"a": [0.5], "b": []}, {}, r"`samples\['b'\]` must be a non-empty sequence"),
        ({"a": [math.inf]}, {}, r"`samples\['a'\]` must hold finite numbers only"),
    ],
)
def test_compare_with_best_rejects_bad_input_with_the_value(samples, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare_with_best(samples, **{"mode": "max", **kwargs})


@pytest.mark.parametrize("k", [2, 5])
def test_equal_configurations_are_called_a_clear_winner_at_most_alpha_of_the_time(k):
    # Best picked from the data, k - 1 comparisons each at 0.05, no adjustment: a clear winner
    # needs all of them (intersection-union), so among k equal configurations the false
    # "clear winner" rate stays <= 0.05 (exactly 0.05 for k = 2 when Welch is exact).
    rng = np.random.default_rng(14)
    sims = 300
    wins = sum(
        compare_with_best({i: rng.normal(0.5, 0.02, 3) for i in range(k)}, mode="max").clear_winner
        for _ in range(sims)
    )
    assert wins / sims <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / sims)


# --- the choice ---------------------------------------------------------------------


def test_a_clear_winner_is_chosen_with_its_mean_std_and_ci(tmp_path):
    d = write_sweep(tmp_path, finals(A, [0.80, 0.81, 0.79]) + finals(B, [0.60, 0.61, 0.59]), epochs=3)
    choice = choose(d)
    assert choice.best.config["lr"] == 0.05
    assert choice.best.n == 3
    assert choice.best.mean == pytest.approx(0.80)
    assert choice.best.std == pytest.approx(0.01)
    # The seed spread pooled over both configurations (stats.pooled_spread): s 0.01, df 2 + 2 = 4.
    half = 2.776 * 0.01 / math.sqrt(3)
    assert (choice.best.ci_low, choice.best.ci_high) == pytest.approx((0.80 - half, 0.80 + half), abs=1e-5)
    assert choice.within_noise == ()
    assert [c.config["lr"] for c in choice.ranked] == [0.05, 0.01]
    assert choice.test.clear_winner
    assert choice.ranked[1].comparison.p_value == pytest.approx(
        welch_p([0.80, 0.81, 0.79], [0.60, 0.61, 0.59])
    )
    assert (
        "The best is significantly better than the other configuration "
        "(Welch's two-sided t-test vs the best, alpha 0.05 each): a clear winner at that level."
        in choice.note
    )


def test_a_clear_winner_over_several_says_it_beat_each_of_them(tmp_path):
    runs = finals(A, [0.80, 0.81, 0.79]) + finals(B, [0.74, 0.76, 0.72]) + finals(ADAM, [0.50, 0.52, 0.51])
    choice = choose(write_sweep(tmp_path, runs, epochs=3))
    assert choice.test.clear_winner and all(c.comparison.significant for c in choice.ranked[1:])
    assert "The best is significantly better than each of the other 2 configurations" in choice.note
    text = format_choice(choice)
    assert "within noise" not in text
    largest = welch_p([0.80, 0.81, 0.79], [0.74, 0.76, 0.72])  # B is the closer call
    assert 0.001 < largest < 0.05
    assert (
        f"# significantly worse than the best: 2 configurations (each p < 0.05; the largest p={largest:.3f})"
        in text
    )


def test_configurations_within_noise_are_all_listed_and_the_note_says_so(tmp_path):
    d = write_sweep(tmp_path, finals(A, [0.80, 0.72]) + finals(B, [0.76, 0.74]), epochs=3)
    choice = choose(d)
    assert choice.best.mean == pytest.approx(0.76) and choice.best.config["lr"] == 0.05
    assert [c.config["lr"] for c in choice.within_noise] == [0.01]
    p = welch_p([0.80, 0.72], [0.76, 0.74])
    assert choice.within_noise[0].comparison.p_value == pytest.approx(p) and p > 0.05
    assert (
        "1 other configuration is within noise of the best: not significantly worse (Welch's two-sided "
        "t-test vs the best, alpha 0.05 each). There is no single winner; rerun these with more repeats"
    ) in choice.note
    comments = [line for line in format_choice(choice).splitlines() if line.startswith("#")]
    assert comments[4] == (
        "# test: Welch's two-sided t-test on the difference of means, each configuration vs the best, "
        "alpha 0.05 each"
    )
    assert comments[5] == "# within noise of the best (not significantly worse, or untested):"
    assert "lr: 0.01" in comments[6] and comments[6].endswith(f"0.7500 ± 0.0141 (n=2)  p={p:.3f}")


def test_within_noise_is_capped_at_top_and_the_note_says_how_many(tmp_path):
    runs = []
    for lr, values in [
        (0.05, [0.80, 0.70]),
        (0.04, [0.76, 0.72]),
        (0.03, [0.75, 0.71]),
        (0.02, [0.74, 0.70]),
    ]:
        runs += finals(sgd("constant", lr=lr), values)
    choice = choose(write_sweep(tmp_path, runs, epochs=3), top=2)
    assert [c.config["lr"] for c in choice.within_noise] == [0.04, 0.03]
    assert "3 other configurations are within noise of the best" in choice.note
    assert "; the 2 best are listed)" in choice.note
    assert len(choice.ranked) == 4


def test_at_best_and_at_final_pick_differently_when_a_configuration_peaks_early(tmp_path):
    peaks = [run(A, [0.90, 0.50, 0.50], repeat=0), run(A, [0.91, 0.51, 0.50], repeat=1)]
    steady = [run(B, [0.60, 0.70, 0.80], repeat=0), run(B, [0.61, 0.71, 0.81], repeat=1)]
    d = write_sweep(tmp_path, peaks + steady, epochs=3)
    assert choose(d, at="final").best.config["lr"] == 0.01
    best = choose(d, at="best")
    assert best.best.config["lr"] == 0.05
    assert best.best.values == pytest.approx((0.90, 0.91))
    assert "optimistic" in best.note


def test_diverged_and_failed_trials_are_never_chosen_and_are_counted(tmp_path):
    runs = finals(B, [0.60, 0.62]) + [
        run(A, [0.99, math.nan], status="diverged"),
        run(A, [0.98, 0.99], status="error", error="RuntimeError: node died"),
        run(ADAM, [0.97], status="stopped_early"),
    ]
    choice = choose(write_sweep(tmp_path, runs, epochs=3))
    assert choice.best.config["lr"] == 0.01
    assert [c.config["lr"] for c in choice.ranked] == [0.01]
    assert "1 diverged (never chosen)" in choice.note
    assert "1 error (never chosen)" in choice.note
    assert "1 stopped early (ran fewer epochs" in choice.note


def test_runs_of_the_best_configuration_left_out_of_its_mean_are_reported(tmp_path):
    runs = finals(A, [0.80, 0.81]) + finals(B, [0.60, 0.61])
    runs.append(run(A, [0.30], repeat=2, status="stopped_early"))
    choice = choose(write_sweep(tmp_path, runs, epochs=3))
    assert choice.best.n == 2 and choice.best.left_out == {"stopped_early": 1}
    assert (
        "Survivorship: 1 of the 2 compared configurations (the best) has runs not in its mean "
        "(1 stopped early): the runs that survived may flatter it, and the test sees only those."
    ) in choice.note
    assert "# trials: synthetic_00000, synthetic_00001 (+ not in mean: 1 stopped early)" in format_choice(
        choice
    )


def test_survivorship_caveat_covers_every_compared_configuration_not_only_the_best(tmp_path):
    # B lost two of its four seeds to early stopping and A one of three; C lost none.
    C = sgd("constant", lr=0.1)
    runs = finals(A, [0.80, 0.70, 0.75]) + finals(B, [0.78, 0.72]) + finals(C, [0.74, 0.70])
    runs += [run(A, [0.3], repeat=3, status="stopped_early")]
    runs += [run(B, [0.3], repeat=r, status="stopped_early") for r in (2, 3)]
    runs += [run(B, [0.2, math.nan], repeat=4, status="diverged")]
    choice = choose(write_sweep(tmp_path, runs, epochs=3))
    assert [c.left_out for c in choice.ranked] == [
        {"stopped_early": 1},
        {"diverged": 1, "stopped_early": 2},
        {},
    ]
    assert (
        "Survivorship: 2 of the 3 compared configurations (the best included) have runs not in their mean "
        "(1 diverged, 3 stopped early): the runs that survived may flatter them, and the test sees only those."
    ) in " ".join(choice.note.split())
    within = [line for line in format_choice(choice).splitlines() if line.startswith("#   ")]
    assert within[0].endswith("; +3 runs not in mean (1 diverged, 2 stopped early)")
    assert not within[1].endswith(")")  # C lost no run: no caveat on its line
    data = json.loads(format_choice(choice, "json"))
    assert [c["left_out"] for c in data["ranked"]] == [
        {"stopped_early": 1},
        {"diverged": 1, "stopped_early": 2},
        {},
    ]


def test_survivorship_of_other_configurations_is_reported_when_the_best_lost_none(tmp_path):
    runs = (
        finals(A, [0.80, 0.81]) + finals(B, [0.79, 0.80]) + [run(B, [0.3], repeat=2, status="stopped_early")]
    )
    choice = choose(write_sweep(tmp_path, runs, epochs=3))
    assert "Survivorship: 1 of the 2 compared configurations (not the best) has runs not in its mean" in (
        " ".join(choice.note.split())
    )


def test_without_a_finished_trial_stopped_ones_are_compared_and_the_note_warns(tmp_path):
    runs = [run(A, [0.5, 0.7], status="stopped_early"), run(B, [0.6], status="stopped_early")]
    choice = choose(write_sweep(tmp_path, runs, epochs=10))
    assert choice.best.config["lr"] == 0.05
    assert "No trial has run all 10 epochs yet" in choice.note
    assert "after 1 to 2 epochs" in choice.note


def test_a_running_sweep_without_trials_parquet_reads_statuses_from_the_metrics(tmp_path):
    runs = finals(A, [0.8, 0.82]) + [run(B, [0.9, 0.95], status="running")]
    choice = choose(write_sweep(tmp_path, runs, epochs=3, trials_file=False))
    assert choice.best.config["lr"] == 0.05  # the running trial is not done
    assert "1 running (not finished)" in choice.note


def test_one_run_per_configuration_is_never_separated_and_says_the_spread_is_unknown(tmp_path):
    choice = choose(write_sweep(tmp_path, finals(A, [0.8]) + finals(B, [0.3]), epochs=3))
    assert choice.best.n == 1
    assert math.isnan(choice.best.std) and math.isnan(choice.best.ci_low) and math.isnan(choice.best.ci_high)
    assert [c.config["lr"] for c in choice.within_noise] == [0.01]  # 0.5 below, yet not separated
    assert (
        "One run per configuration: the spread is unknown, not zero, so no configuration is separated from "
        "the best; set repeats >= 2"
    ) in choice.note
    text = format_choice(choice)
    assert "95% CI of the mean: none (one run: spread unknown)" in text
    assert "95% prediction interval for a rerun's mean: none (one run: spread unknown)" in text
    assert text.splitlines()[6].endswith("0.3000 ± n/a (n=1)  one run each: spread unknown")
    data = json.loads(text := format_choice(choice, "json"))
    assert data["best"]["std"] is None and data["best"]["ci"] is None
    assert data["within_noise"][0]["vs_best"] == {
        "statistic": None,
        "df": None,
        "p_value": None,
        "significant": False,
        "reason": "one run each: spread unknown",
    }


def test_a_single_run_far_below_the_best_is_listed_within_noise_with_the_reason(tmp_path):
    choice = choose(write_sweep(tmp_path, finals(A, [0.80, 0.81, 0.79]) + finals(B, [0.2]), epochs=3))
    assert [c.config["lr"] for c in choice.within_noise] == [0.01] and not choice.test.clear_winner
    assert "1 configuration has one run: spread unknown, never called separated from the best." in choice.note
    assert format_choice(choice).splitlines()[6].endswith("0.2000 ± n/a (n=1)  one run: spread unknown")


def test_a_best_whose_runs_agree_exactly_is_flagged_as_understating_the_noise(tmp_path):
    choice = choose(write_sweep(tmp_path, finals(A, [0.282, 0.282]) + finals(B, [0.20, 0.25]), epochs=3))
    assert choice.best.std == 0
    # Its interval is not a point: the spread pooled with B's (0.025, df 2) gives it a width.
    half = 4.303 * 0.025 / math.sqrt(2)
    assert (choice.best.ci_low, choice.best.ci_high) == pytest.approx((0.282 - half, 0.282 + half), abs=1e-4)
    assert (
        "The best's 2 runs gave identical values: a sample spread of 0 understates the noise between seeds "
        "(its intervals use the spread pooled over the configurations; its test does not)."
    ) in " ".join(choice.note.split())
    alone = choose(write_sweep(tmp_path / "alone", finals(A, [0.282, 0.282]), epochs=3))
    assert alone.best.ci_low == alone.best.ci_high == pytest.approx(0.282)
    assert "(its interval has no width)." in " ".join(alone.note.split())


def test_a_lone_configuration_that_lost_runs_gets_the_caveat_in_the_singular(tmp_path):
    runs = finals(A, [0.8]) + [run(A, [0.3], repeat=1, status="stopped_early")]
    choice = choose(write_sweep(tmp_path, runs, epochs=3))
    assert choice.note.startswith("Compared 1 configuration (1 trial) on val_accuracy")
    assert "Survivorship: the only compared configuration has runs not in its mean (1 stopped early)" in (
        " ".join(choice.note.split())
    )


def test_a_best_with_one_run_separates_nothing(tmp_path):
    choice = choose(write_sweep(tmp_path, finals(A, [0.9]) + finals(B, [0.50, 0.51, 0.49]), epochs=3))
    assert choice.best.n == 1 and [c.config["lr"] for c in choice.within_noise] == [0.01]
    assert "The best has one run: its spread is unknown, not zero, so no configuration is separated" in (
        " ".join(choice.note.split())
    )


def test_mode_min_for_val_loss_picks_the_lowest_mean(tmp_path):
    # A has the higher accuracy but the higher loss: a loss sweep must pick B.
    runs = [
        run(A, [0.7, 0.8], val_loss=[0.9, 0.60], repeat=0),
        run(A, [0.7, 0.8], val_loss=[0.9, 0.62], repeat=1),
        run(B, [0.6, 0.7], val_loss=[0.8, 0.40], repeat=0),
        run(B, [0.6, 0.7], val_loss=[0.8, 0.42], repeat=1),
    ]
    d = write_sweep(tmp_path, runs, epochs=2, metric="val_loss")
    choice = choose(d)
    assert (choice.metric, choice.mode) == ("val_loss", "min")
    assert choice.best.config["lr"] == 0.01 and choice.best.mean == pytest.approx(0.41)
    assert choose(d, metric="val_accuracy").best.config["lr"] == 0.05  # max for an accuracy


def test_an_explicit_mode_in_sweep_yaml_is_respected(tmp_path):
    d = write_sweep(tmp_path, finals(A, [0.8, 0.8]) + finals(B, [0.6, 0.6]), epochs=3, mode="min")
    assert choose(d).best.config["lr"] == 0.01


def test_family_filter_chooses_within_that_family_only(tmp_path):
    d = write_sweep(tmp_path, finals(A, [0.8, 0.81]) + finals(ADAM, [0.70, 0.72]), epochs=3)
    assert choose(d).best.family == "step"
    choice = choose(d, family="adam")
    assert choice.best.family == "adam" and choice.best.config["optimizer"] == "adam"
    assert [c.family for c in choice.ranked] == ["adam"]


def test_a_piecewise_schedule_is_chosen_with_its_lists(tmp_path):
    piecewise = {"optimizer": "sgd", "schedule": "piecewise", "boundaries": [2], "values": [0.1, 0.01]}
    choice = choose(write_sweep(tmp_path, finals(piecewise, [0.80, 0.78]) + finals(B, [0.6, 0.61]), epochs=3))
    assert choice.best.n == 2 and choice.best.config["boundaries"] == [2]
    assert "  boundaries: [2]\n  values: [0.1, 0.01]\n" in format_choice(choice)


def test_candidate_config_holds_only_the_settings_that_apply(tmp_path):
    choice = choose(write_sweep(tmp_path, finals(ADAM, [0.7, 0.72]), epochs=3))
    assert choice.best.config == {
        "optimizer": "adam",
        "schedule": "constant",
        "lr": 0.001,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-8,
        "weight_decay": 0.0,  # Adam takes a (decoupled) weight decay, default 0
        "amsgrad": False,
    }


# --- output ---------------------------------------------------------------------------


def test_yaml_output_is_a_space_fragment_of_plain_values_that_a_sweep_file_accepts(tmp_path):
    choice = choose(write_sweep(tmp_path, finals(A, [0.80, 0.72]) + finals(B, [0.76, 0.74]), epochs=3))
    text = format_choice(choice, "yaml")
    data = yaml.safe_load(text)
    assert list(data) == ["space"]
    assert data["space"] == {
        "optimizer": "sgd",
        "schedule": "step",
        "lr": 0.05,
        "drop": 0.5,
        "epochs_drop": 2,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 0.0,
    }
    assert type(data["space"]["lr"]) is float and type(data["space"]["drop"]) is float
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert "val_accuracy 0.7600 ± 0.0566 (n=2)" in comments[1]
    # The spread pooled over both configurations: sqrt((0.0032 + 0.0002) / 2), df 2.
    pooled = math.sqrt((np.var([0.80, 0.72], ddof=1) + np.var([0.76, 0.74], ddof=1)) / 2)
    half = 4.3027 * pooled / math.sqrt(2)
    assert (
        f"95% CI of the mean [{0.76 - half:.4f}, {0.76 + half:.4f}] "
        "(Student's t, seed spread pooled over the configurations, within [0, 1])"
    ) in comments[1]
    # A rerun's mean over 2 new seeds: sqrt(1/2 + 1/2) = 1 standard deviation per t, not 1/sqrt(2).
    pi = 4.3027 * pooled * math.sqrt(1 / 2 + 1 / 2)
    assert comments[2] == (
        f"# 95% prediction interval for a rerun's mean over 2 new seeds [{0.76 - pi:.4f}, {0.76 + pi:.4f}] "
        "(where the next sweep's mean lands; the CI bounds the true mean)"
    )
    spec = parse_spec({"name": "again", "epochs": 3, **data}, "best.yaml")
    assert spec.space[0].params["lr"].args == (0.05,)


def test_json_output_has_the_documented_keys(tmp_path):
    choice = choose(write_sweep(tmp_path, finals(A, [0.80, 0.72]) + finals(B, [0.76, 0.74]), epochs=3))
    data = json.loads(format_choice(choice, "json"))
    assert set(data) == {"metric", "mode", "at", "test", "best", "within_noise", "ranked", "note"}
    assert (data["metric"], data["mode"], data["at"]) == ("val_accuracy", "max", "final")
    assert data["test"] == {
        "name": "Welch's two-sided t-test",
        "compares": "each configuration vs the best: difference of means",
        "alpha": 0.05,
        "adjustment": "none: alpha per comparison (a clear winner must pass every one)",
        "clear_winner": False,
    }
    assert data["best"]["config"]["lr"] == 0.05 and data["best"]["n"] == 2 and data["best"]["vs_best"] is None
    assert data["best"]["ci"] == pytest.approx([choice.best.ci_low, choice.best.ci_high])
    assert data["best"]["prediction_interval"] == pytest.approx([choice.best.pi_low, choice.best.pi_high])
    assert choice.best.pi_low < choice.best.ci_low  # wider: it holds a rerun's mean, not the true mean
    assert [c["config"]["lr"] for c in data["within_noise"]] == [0.01]
    other = data["ranked"][1]
    assert other["n"] == 2 and other["vs_best"]["p_value"] == pytest.approx(
        welch_p([0.80, 0.72], [0.76, 0.74])
    )
    assert other["vs_best"]["significant"] is False and other["vs_best"]["reason"] == "p >= 0.05"


def test_a_loss_interval_stays_at_or_above_0(tmp_path):
    runs = [run(A, [0.7, 0.8], val_loss=[0.9, v], repeat=i) for i, v in enumerate([0.05, 0.60])]
    runs += [run(B, [0.6, 0.7], val_loss=[0.9, v], repeat=i) for i, v in enumerate([0.90, 0.95])]
    choice = choose(write_sweep(tmp_path, runs, epochs=2, metric="val_loss"))
    assert choice.best.mean == pytest.approx(0.325) and choice.best.ci_low == 0.0
    assert "(Student's t, seed spread pooled over the configurations, within [0, inf))" in format_choice(
        choice
    )


def test_the_command_prints_the_test_its_level_and_each_p_value(tmp_path):
    runs = finals(A, [0.80, 0.81, 0.79]) + finals(B, [0.60, 0.61, 0.59]) + finals(ADAM, [0.79, 0.80])
    d = write_sweep(tmp_path, runs, epochs=3)
    root = Path(__file__).parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "lrtune", "best", d, "--format", "json"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["test"]["name"] == "Welch's two-sided t-test" and data["test"]["alpha"] == 0.05
    assert data["test"]["clear_winner"] is False
    assert [(c["config"]["lr"], c["n"]) for c in data["ranked"]] == [(0.05, 3), (0.001, 2), (0.01, 3)]
    ps = [c["vs_best"]["p_value"] for c in data["ranked"][1:]]
    assert ps == pytest.approx(
        [welch_p([0.80, 0.81, 0.79], [0.79, 0.80]), welch_p([0.80, 0.81, 0.79], [0.60, 0.61, 0.59])]
    )
    assert [c["vs_best"]["significant"] for c in data["ranked"][1:]] == [False, True]
    assert [c["config"]["lr"] for c in data["within_noise"]] == [0.001]


# --- errors -------------------------------------------------------------------------------


def test_an_empty_directory_names_the_missing_metrics(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path}: no metrics/ dataset here")):
        choose(str(tmp_path))


def test_metrics_without_rows_say_no_epoch_yet(tmp_path):
    d = write_sweep(tmp_path, [], epochs=3)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}: metrics/ holds no epochs yet")):
        choose(d)


def test_an_unknown_family_lists_the_families_present(tmp_path):
    d = write_sweep(tmp_path, finals(A, [0.8]) + finals(ADAM, [0.7]), epochs=3)
    with pytest.raises(ValueError, match=r"no trials of family 'time'; families here: step, adam"):
        choose(d, family="time")


def test_an_unknown_metric_lists_the_recorded_ones(tmp_path):
    d = write_sweep(tmp_path, finals(A, [0.8]), epochs=3)
    with pytest.raises(
        ValueError, match=r"metric 'top5' is not recorded; choose one of: val_accuracy, val_loss"
    ):
        choose(d, metric="top5")


def test_nothing_to_choose_from_says_what_the_trials_did(tmp_path):
    runs = [run(A, [0.5, math.nan], status="diverged"), run(B, [], status="error", error="ValueError: x")]
    d = write_sweep(tmp_path, runs, epochs=3)
    with pytest.raises(ValueError, match=r"no trial to choose from: .*\(1 diverged, 1 error\)"):
        choose(d)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"at": "last"}, r"`at` must be 'final' or 'best'. Received: at='last'"),
        ({"top": 0}, r"`top` must be an integer >= 1. Received: top=0"),
    ],
)
def test_bad_arguments_are_rejected_with_the_value(tmp_path, kwargs, message):
    d = write_sweep(tmp_path, finals(A, [0.8]), epochs=3)
    with pytest.raises(ValueError, match=message):
        choose(d, **kwargs)


# --- PBT: the final population and the schedule the winner learned --------------------


def test_pbt_picks_the_best_member_of_the_final_population_alone(tmp_path):
    choice = choose(population(tmp_path))
    assert choice.best.trial_ids == ("synthetic_00002",) and choice.best.n == 1
    assert choice.best.mean == pytest.approx(0.80)
    assert [c.trial_ids[0] for c in choice.ranked] == [
        "synthetic_00002",
        "synthetic_00001",
        "synthetic_00000",
    ]
    assert choice.within_noise == ()
    assert "PBT: compared the final population, 3 members" in choice.note
    assert "1 diverged (never chosen)" in choice.note
    assert "not independent repeats" in choice.note


def test_pbt_learned_schedule_reads_the_values_in_effect_and_the_lineage(tmp_path):
    learned = choose(population(tmp_path)).learned
    assert learned.lr == (Segment(1, 3, 0.05), Segment(4, 6, 0.06))
    assert learned.momentum == (Segment(1, 3, 0.9), Segment(4, 6, 0.72))
    assert learned.lineage == (Segment(1, 3, "synthetic_00001"), Segment(4, 6, "synthetic_00002"))
    assert learned.space == {
        "optimizer": "sgd",
        "schedule": "piecewise",
        "boundaries": [3],
        "values": [0.05, 0.06],
        "momentum": 0.72,
        "nesterov": False,
        "weight_decay": 0.0,
    }


def test_pbt_equal_rates_across_a_lineage_boundary_are_one_segment(tmp_path):
    hparams = [{"lr": 0.05}] * 4 + [{"lr": 0.04}] * 2
    learned = choose(
        population(tmp_path, winner_hparams=hparams, winner_trained_by=(0, 0, 1, 1, None, None))
    ).learned
    assert learned.lr == (Segment(1, 4, 0.05), Segment(5, 6, 0.04))
    assert [s.value for s in learned.lineage] == ["synthetic_00000", "synthetic_00001", "synthetic_00002"]
    assert learned.space["boundaries"] == [4] and learned.space["values"] == [0.05, 0.04]
    assert len(learned.momentum) == 1 and "momentum" not in choose(population(tmp_path)).learned.changed


def test_pbt_fragment_is_a_piecewise_schedule_that_replays_the_winners_lr(tmp_path):
    d = population(tmp_path)
    text = format_choice(choose(d))
    data = yaml.safe_load(text)
    assert list(data) == ["space"]
    spec = parse_spec({"name": "replay", "epochs": 6, **data}, "best.yaml")
    arm = {k: dist.args[0] for k, dist in spec.space[0].params.items()}
    schedule = make_schedule("piecewise", boundaries=arm["boundaries"], values=arm["values"])
    winner = pq.read_table(Path(d) / "metrics", filters=[("trial_id", "=", "synthetic_00002")])
    replayed = lr_by_epoch(schedule, 6, STEPS_PER_EPOCH)
    assert list(replayed) == winner.sort_by("epoch")["lr"].to_pylist() == [0.05] * 3 + [0.06] * 3


def test_pbt_yaml_comments_give_the_population_schedule_lineage_and_the_momentum_replayed(tmp_path):
    text = format_choice(choose(population(tmp_path)))
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert comments[0] == (
        "# PBT: best val_accuracy (max) of the final population at its final epoch: synthetic_00002 (constant)"
    )
    assert (
        "# final population: synthetic_00002 0.8000, synthetic_00001 0.7500, synthetic_00000 0.6000"
        in comments
    )
    assert "# learned lr (config.lr, in effect each epoch): epochs 1-3: 0.05, 4-6: 0.06" in comments
    assert "# learned momentum: epochs 1-3: 0.9, 4-6: 0.72" in comments
    assert "# lineage (trained_by): epochs 1-3 by synthetic_00001, 4-6 by synthetic_00002" in comments
    note = " ".join(line[2:] for line in comments)
    assert "there is no momentum schedule: the replay uses the final momentum, 0.72, for every epoch" in note
    assert "boundaries: [3]" in text and "values: [0.05, 0.06]" in text


def test_pbt_json_has_the_population_and_the_learned_schedule(tmp_path):
    data = json.loads(format_choice(choose(population(tmp_path)), "json"))
    assert [c["trial_ids"] for c in data["population"]] == [
        ["synthetic_00002"],
        ["synthetic_00001"],
        ["synthetic_00000"],
    ]
    assert data["test"] is None  # members share weights: no test over repeats
    learned = data["learned_schedule"]
    assert learned["trial_id"] == "synthetic_00002" and learned["replayable"] is True
    assert learned["lr"] == [{"epochs": [1, 3], "value": 0.05}, {"epochs": [4, 6], "value": 0.06}]
    assert learned["momentum"] == [{"epochs": [1, 3], "value": 0.9}, {"epochs": [4, 6], "value": 0.72}]
    assert learned["lineage"] == [
        {"epochs": [1, 3], "trained_by": "synthetic_00001"},
        {"epochs": [4, 6], "trained_by": "synthetic_00002"},
    ]
    assert learned["space"]["schedule"] == "piecewise" and learned["space"]["values"] == [0.05, 0.06]


def test_pbt_winner_whose_lr_never_changed_is_a_constant_schedule(tmp_path):
    choice = choose(population(tmp_path, winner_hparams=[{"lr": 0.07}] * 6))
    assert choice.learned.space["schedule"] == "constant" and choice.learned.space["lr"] == 0.07
    assert "boundaries" not in choice.learned.space
    assert "space:\n  optimizer: sgd\n  schedule: constant\n  lr: 0.07\n" in format_choice(choice)


def test_pbt_over_a_non_constant_schedule_says_the_fragment_is_no_replay(tmp_path):
    hparams = [
        {"schedule": "step", "drop": 0.5, "epochs_drop": 2, "lr": lr} for lr in [0.05] * 3 + [0.06] * 3
    ]
    learned = choose(population(tmp_path, winner_hparams=hparams)).learned
    assert not learned.replayable
    assert learned.space["schedule"] == "step" and learned.space["lr"] == 0.06
    assert "no single schedule replays that: the fragment is the final configuration" in learned.notes[0]


def test_pbt_members_tied_at_the_top_are_named_and_the_first_by_id_wins(tmp_path):
    d = write_sweep(
        tmp_path,
        [
            member([0.5, 0.7], [{"lr": 0.05}] * 2),
            member([0.5, 0.7], [{"lr": 0.05}] * 2, trained_by=(0, None)),
        ],
        epochs=2,
        scheduler=PBT_SCHEDULER,
    )
    choice = choose(d)
    assert choice.best.trial_ids == ("synthetic_00000",)
    assert "Tied with synthetic_00001 on val_accuracy" in choice.note


@pytest.mark.parametrize("scheduler", ["pbt", {"pbt": {"perturbation_interval": 1}}])
def test_a_sweep_yaml_naming_pbt_either_way_is_read_as_pbt(tmp_path, scheduler):
    runs = [member([0.5, 0.7], [{"lr": 0.05}] * 2), member([0.5, 0.6], [{"lr": 0.05}] * 2)]
    assert choose(write_sweep(tmp_path, runs, epochs=2, scheduler=scheduler)).learned is not None
    assert choose(write_sweep(tmp_path / "fifo", runs, epochs=2, scheduler="fifo")).learned is None


def test_pbt_is_compared_at_the_final_epoch_only(tmp_path):
    with pytest.raises(
        ValueError, match=r"is a PBT sweep: its members are compared as the final population.*at='best'"
    ):
        choose(population(tmp_path), at="best")


def test_segments_join_equal_neighbours_only():
    assert segments([1, 2, 3], ["a", "b", "a"]) == (
        Segment(1, 1, "a"),
        Segment(2, 2, "b"),
        Segment(3, 3, "a"),
    )
    with pytest.raises(
        ValueError, match=r"`epochs` and `values` must have the same length. Received: 2 and 1"
    ):
        segments([1, 2], [0.1])


def test_the_intervals_pool_the_seed_spread_of_every_configuration():
    # From 3 seeds a configuration's own spread can come out at 0.002 by chance; its 95%
    # prediction interval then held a rerun's mean 91% of the time (benchmarks/calibration.py).
    from lrtune.results.stats import pooled_spread, prediction_interval

    s, df = pooled_spread([[0.60, 0.601, 0.602], [0.50, 0.55, 0.60], [0.7]])
    assert df == 4 and s == pytest.approx(math.sqrt((2 * 1e-6 + 2 * 0.0025) / 4))
    own = prediction_interval([0.60, 0.601, 0.602])
    pooled = prediction_interval([0.60, 0.601, 0.602], spread=(s, df))
    assert pooled[1] - pooled[0] > 5 * (own[1] - own[0])
    assert pooled_spread([[0.5], [0.6]]) is None
