"""The median stopping rule takes a stop lost with the driver up again (lrtune.engine.median).

The record is the one the kill soak's seed 508529 left (tests/test_kill_soak.py, median): two
Adam trials at val_accuracy 1.0, then a hopeless SGD trial stopped at epoch 1 against them, the
driver killed before Tune or trials.parquet recorded that stop. Resumed, the trial trains epoch
2, where only one other trial had arrived: too few samples, so Ray's rule let it run to the end.
"""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from lrtune.engine.median import MedianStopping
from lrtune.engine.record import SweepRecord

T0 = 1_796_531_800.0  # POSIX seconds; only the order of the rows matters


class NoOtherTrials:
    """What the rule asks Tune when samples are too few: the live trials (none waiting here)."""

    def get_live_trials(self):
        return []


def rule(record: SweepRecord, grace_period: int = 1) -> MedianStopping:
    median = MedianStopping(time_attr="epoch", grace_period=grace_period, min_samples_required=2)
    median.set_search_properties(metric="val_accuracy", mode="max")
    median.restore_decisions(record)
    return median


def resumed(median: MedianStopping, trial_id: str) -> Trial:
    trial = Trial("fn", trial_id=trial_id, stub=True, config={})
    median.on_trial_add(NoOtherTrials(), trial)
    return trial


def record(hopeless_first_row_at: float, status: str = "running") -> SweepRecord:
    """Trials 0 and 1 at 1.0 (epochs 1-2 and 1), trial 3 at 0.46 (epoch 1) ending at the given time."""
    return SweepRecord(
        history={"t0": {1: 1.0}, "t1": {1: 1.0, 2: 1.0}, "t3": {1: 0.46}},
        status={"t0": "running", "t1": "running", "t3": status},
        times={"t0": {1: T0}, "t1": {1: T0 + 2, 2: T0 + 30}, "t3": {1: hopeless_first_row_at}},
    )


def test_a_stop_lost_with_the_driver_is_decided_again_at_the_next_result():
    median = rule(record(hopeless_first_row_at=T0 + 26))
    trial = resumed(median, "t3")
    # Epoch 2 of the resumed trial: only t1 has reached it, too few for Ray's rule alone.
    assert median.on_trial_result(NoOtherTrials(), trial, {"epoch": 2, "val_accuracy": 0.46}) == (
        TrialScheduler.STOP
    )


def test_a_trial_judged_before_enough_others_arrived_is_not_stopped_by_the_record():
    # Its epoch-1 row ended before the others' rows: at that moment too few samples, so it went on.
    median = rule(record(hopeless_first_row_at=T0 - 5))
    trial = resumed(median, "t3")
    assert median.on_trial_result(NoOtherTrials(), trial, {"epoch": 2, "val_accuracy": 0.46}) == (
        TrialScheduler.CONTINUE
    )


def test_a_good_trial_is_not_stopped_and_an_ended_one_is_not_judged_again():
    median = rule(record(hopeless_first_row_at=T0 + 26))
    assert not median.stopped_when_recorded("t1")  # 1.0 is the median, not worse than it
    ended = rule(record(hopeless_first_row_at=T0 + 26, status="stopped_early"))
    resumed(ended, "t3")
    assert ended._lost_stops == {}


def test_a_replayed_row_from_before_the_lost_stop_does_not_stop_the_trial():
    median = SweepRecord(
        history={"t0": {1: 1.0, 2: 1.0}, "t1": {1: 1.0, 2: 1.0}, "t3": {1: 0.46, 2: 0.46}},
        times={"t0": {1: T0, 2: T0 + 3}, "t1": {1: T0 + 1, 2: T0 + 4}, "t3": {1: T0 + 5, 2: T0 + 6}},
    )
    scheduler = rule(median, grace_period=2)  # judged at epoch 2 only
    trial = resumed(scheduler, "t3")
    assert scheduler._lost_stops == {"t3": 2}
    replay = scheduler.on_trial_result(NoOtherTrials(), trial, {"epoch": 1, "val_accuracy": 0.46})
    assert replay == TrialScheduler.CONTINUE
    again = scheduler.on_trial_result(NoOtherTrials(), trial, {"epoch": 2, "val_accuracy": 0.46})
    assert again == TrialScheduler.STOP


def test_the_record_holds_the_epochs_only_an_unfinished_trials_newest_state_has(tmp_path):
    # Rows a killed driver had not written yet: the trial's saved state (trial.json) holds them.
    import json

    from lrtune.engine.record import _add_state_history

    state = tmp_path / "t1" / "state" / "epoch-000002-0123456789ab"
    state.mkdir(parents=True)
    rows = [{"epoch": e, "val_accuracy": 1.0, "epoch_end": T0 + e} for e in (1, 2)]
    (state / "trial.json").write_text(json.dumps({"epoch": 2, "history": rows}))
    history, times = {"t1": {1: 0.9}}, {"t1": {1: T0}}
    _add_state_history(str(tmp_path), "t1", "val_accuracy", history, times)
    assert history == {"t1": {1: 0.9, 2: 1.0}}  # a row written already stays as written
    assert times == {"t1": {1: T0, 2: T0 + 2}}
    _add_state_history(str(tmp_path), "never-saved", "val_accuracy", history, times)
    assert "never-saved" not in history
