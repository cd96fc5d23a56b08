"""Successive halving judges a rung with every configuration that reached it, after a kill.

Found by the sha kill soak, seed 267072 (tests/test_kill_soak.py, sha: lr 0.05, 1e-6 and 2e-6,
one slot, rungs at epochs 1 and 3): the driver died after trial 0 (lr 0.05) had passed rung 1
and trained on, before the sink had written its rows. Resumed, Tune knew trial 0 was past the
rung (its last result), the Parquet rows did not hold its value there, so the rung was ranked
over trials 1 and 2 alone: top 1 of 2, and the hopeless lr 1e-6 went on to epoch 3, where a run
never killed stops it at epoch 1. A trial's newest saved state holds those epochs
(:func:`lrtune.engine.record.read_record`, ``with_states``); the rule reads them.
"""

from __future__ import annotations

from ray.tune.experiment import Trial

from lrtune.engine.record import SweepRecord
from lrtune.engine.schedulers import SuccessiveHalving


class Controller:
    """What the rule asks Tune: the trials, and to stop one."""

    def __init__(self, trials):
        self.trials, self.stopped = trials, []

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        self.stopped.append(trial.trial_id)
        trial.set_status(Trial.TERMINATED)


def trial(trial_id: str, lr: float, status: str, last_epoch: int | None = None) -> Trial:
    t = Trial("fn", trial_id=trial_id, stub=True, config={"arm": {"optimizer": "sgd", "lr": lr, "repeat": 0}})
    t.set_status(status)
    if last_epoch is not None:
        t.run_metadata.last_result = {"epoch": last_epoch, "val_accuracy": 0.9}
    return t


def resume(record: SweepRecord) -> tuple[SuccessiveHalving, Controller]:
    """The soak's sweep resumed: trial 0 past rung 1 (Tune's last result: epoch 2), 1 and 2 paused at it."""
    sha = SuccessiveHalving(max_t=4, grace_period=1, reduction_factor=3, metric="val_accuracy", mode="max")
    sha.restore_decisions(record)
    trials = [
        trial("t0", 0.05, Trial.PENDING, last_epoch=2),
        trial("t1", 1e-6, Trial.PENDING, last_epoch=1),
        trial("t2", 2e-6, Trial.PENDING, last_epoch=1),
    ]
    controller = Controller(trials)
    for t in trials:
        sha.on_trial_add(controller, t)
    sha.choose_trial_to_run(controller)
    return sha, controller


RUNNING = {"t0": "running", "t1": "running", "t2": "running"}


def test_the_rule_reads_the_epochs_only_a_trials_saved_state_holds():
    # sweep.py reads the record with_states for a scheduler that asks for it.
    assert SuccessiveHalving.reads_state_histories


def test_a_rung_is_ranked_with_the_value_of_a_trial_that_passed_it_before_the_kill():
    # With trial 0's epochs from its saved state (with_states): 1 of 3 goes on, trial 0's.
    record = SweepRecord(history={"t0": {1: 0.9, 2: 0.95}, "t1": {1: 0.5}, "t2": {1: 0.5}}, status=RUNNING)
    _, controller = resume(record)
    assert sorted(controller.stopped) == ["t1", "t2"]


def test_without_that_value_the_rung_promotes_a_hopeless_trial():
    # The record the soak's resume read (rows only): trial 0 is missing at rung 1, so the rung
    # is ranked over two configurations and one of the hopeless ones goes on. This is why the
    # rule reads the states.
    record = SweepRecord(history={"t1": {1: 0.5}, "t2": {1: 0.51}}, status=RUNNING)
    _, controller = resume(record)
    assert controller.stopped == ["t1"]  # t2 (0.51) went on: the fault the states prevent


def test_a_trial_one_epoch_past_a_rung_undecided_waits_there_again():
    # Seed 267072's second resume: trial 1 had waited at rung 1 in the first resume and trained
    # epoch 2 before it could pause (a replayed result carries no checkpoint); trial 2 had not
    # run. Epoch 2 is no proof of a promotion: trial 1 waits at rung 1, trial 2 runs, and the
    # rung is ranked over all three.
    sha = SuccessiveHalving(max_t=4, grace_period=1, reduction_factor=3, metric="val_accuracy", mode="max")
    sha.restore_decisions(
        SweepRecord(
            history={"t0": {1: 1.0}, "t1": {1: 0.46, 2: 0.46}},
            status={"t0": "running", "t1": "running", "t2": "pending"},
        )
    )
    trials = [
        trial("t0", 0.05, Trial.PENDING, last_epoch=1),
        trial("t1", 1e-6, Trial.PENDING, last_epoch=2),
        trial("t2", 2e-6, Trial.PENDING),
    ]
    controller = Controller(trials)
    for t in trials:
        sha.on_trial_add(controller, t)
    assert sha.choose_trial_to_run(controller).trial_id == "t2"
    trials[2].set_status(Trial.RUNNING)
    decision = sha.on_trial_result(
        controller, trials[2], {"epoch": 1, "val_accuracy": 0.46, "restored_epoch": 0}
    )
    assert decision == "STOP"
    assert controller.stopped == ["t1"]
    assert sha.choose_trial_to_run(controller).trial_id == "t0"  # promoted, it resumes


def test_a_trial_that_ran_to_the_end_passed_every_rung():
    record = SweepRecord(history={"t0": {e: 1.0 for e in (1, 2, 3, 4)}}, status={"t0": "done"})
    sha = SuccessiveHalving(max_t=4, grace_period=1, reduction_factor=3, metric="val_accuracy", mode="max")
    sha.restore_decisions(record)
    t0 = trial("t0", 0.05, Trial.TERMINATED, last_epoch=4)
    sha.on_trial_add(Controller([t0]), t0)
    key = sha._key["t0"]
    assert [v.get(key) for v in sha._verdict] == [True, True]
