"""Choosing a configuration: means over repeats, confidence intervals, honesty."""

from __future__ import annotations

import itertools
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_results import PBT_SCHEDULER, STEPS_PER_EPOCH, member, population, run, sgd, write_sweep  # noqa: E402

from lrtune.results.best import Segment, choose, format_choice, segments, t_critical  # noqa: E402
from lrtune.spec import parse_spec  # noqa: E402
from lrtune.training.schedules import lr_by_epoch, make_schedule  # noqa: E402

A = sgd("step", lr=0.05, drop=0.5, epochs_drop=2)
B = sgd("step", lr=0.01, drop=0.5, epochs_drop=2)
ADAM = {"optimizer": "adam", "lr": 0.001}


def finals(config, values, *, epochs=3, **kwargs):
    """One run per value: a flat curve ending at that value, repeats 0, 1, ..."""
    return [run(config, [v - 0.1] * (epochs - 1) + [v], repeat=i, **kwargs) for i, v in enumerate(values)]


def ci_half(values):
    n = len(values)
    return t_critical(n - 1) * np.std(values, ddof=1) / math.sqrt(n)


# --- t quantile ---------------------------------------------------------------------


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)])
def test_t_critical_matches_the_table(df, expected):
    assert t_critical(df) == expected


@pytest.mark.parametrize(("df", "expected"), [(31, 2.040), (40, 2.021), (60, 2.000), (120, 1.980)])
def test_t_critical_beyond_the_table_follows_published_values(df, expected):
    assert t_critical(df) == pytest.approx(expected, abs=0.0015)


def test_t_critical_tends_to_the_normal_quantile_and_never_rises():
    values = [t_critical(df) for df in range(1, 2000)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert t_critical(10**6) == pytest.approx(1.96, abs=1e-3)


@pytest.mark.parametrize("df", [0, -1, 2.5, True])
def test_t_critical_rejects_a_non_positive_or_fractional_df(df):
    with pytest.raises(ValueError, match=r"`df` must be an integer >= 1 .* Received: df="):
        t_critical(df)


# --- the choice ---------------------------------------------------------------------


def test_a_clear_winner_is_chosen_with_its_mean_std_and_ci(tmp_path):
    d = write_sweep(tmp_path, finals(A, [0.80, 0.81, 0.79]) + finals(B, [0.60, 0.61, 0.59]), epochs=3)
    choice = choose(d)
    assert choice.best.config["lr"] == 0.05
    assert choice.best.n == 3
    assert choice.best.mean == pytest.approx(0.80)
    assert choice.best.std == pytest.approx(0.01)
    half = 4.303 * 0.01 / math.sqrt(3)
    assert (choice.best.ci_low, choice.best.ci_high) == pytest.approx((0.80 - half, 0.80 + half))
    assert choice.within_noise == ()
    assert [c.config["lr"] for c in choice.ranked] == [0.05, 0.01]
    assert "clear winner" in choice.note


def test_configurations_within_noise_are_all_listed_and_the_note_says_so(tmp_path):
    d = write_sweep(tmp_path, finals(A, [0.80, 0.72]) + finals(B, [0.76, 0.74]), epochs=3)
    choice = choose(d)
    assert choice.best.mean == pytest.approx(0.76) and choice.best.config["lr"] == 0.05
    assert [c.config["lr"] for c in choice.within_noise] == [0.01]
    assert "within noise" in choice.note and "no single winner" in choice.note
    text = format_choice(choice)
    assert "within noise of the best" in text
    assert "lr: 0.01" in text  # the other candidate's config, as a comment line


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
    assert "The top 4 configurations are within noise" in choice.note
    assert "the 2 best are listed" in choice.note
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
    assert choice.best.n == 2
    assert "The best configuration has 1 more run not in its mean (1 stopped early)" in choice.note


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


def test_one_run_per_configuration_says_there_is_no_spread(tmp_path):
    choice = choose(write_sweep(tmp_path, finals(A, [0.8]) + finals(B, [0.7]), epochs=3))
    assert choice.best.n == 1
    assert math.isnan(choice.best.std)
    assert choice.best.ci_low == choice.best.ci_high == pytest.approx(0.8)
    assert "One run per configuration: no spread to judge noise; set repeats >= 2" in choice.note
    assert json.loads(format_choice(choice, "json"))["best"]["std"] is None


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
    low, high = 0.76 - ci_half([0.80, 0.72]), 0.76 + ci_half([0.80, 0.72])
    assert f"95% CI [{low:.4f}, {high:.4f}]" in comments[1]
    spec = parse_spec({"name": "again", "epochs": 3, **data}, "best.yaml")
    assert spec.space[0].params["lr"].args == (0.05,)


def test_json_output_has_the_documented_keys(tmp_path):
    choice = choose(write_sweep(tmp_path, finals(A, [0.80, 0.72]) + finals(B, [0.76, 0.74]), epochs=3))
    data = json.loads(format_choice(choice, "json"))
    assert set(data) == {"metric", "mode", "at", "best", "within_noise", "note"}
    assert (data["metric"], data["mode"], data["at"]) == ("val_accuracy", "max", "final")
    assert data["best"]["config"]["lr"] == 0.05 and data["best"]["n"] == 2
    assert data["best"]["ci"] == pytest.approx([choice.best.ci_low, choice.best.ci_high])
    assert [c["config"]["lr"] for c in data["within_noise"]] == [0.01]


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
