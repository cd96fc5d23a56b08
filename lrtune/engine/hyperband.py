"""HyperBand whose brackets survive a driver kill.

:class:`HyperBand` is Ray Tune's ``HyperBandScheduler`` (Li et al. 2017,
"Hyperband: a novel bandit-based approach to hyperparameter optimization"):
trials fill brackets in the order Tune adds them; in a bracket every live
trial trains to the bracket's milestone and is paused there until all have
reached it, then the best ``1 / reduction_factor`` go on to the next
milestone and the others stop. The brackets live in the driver, and Tune
restores the scheduler on ``lrtune sweep --resume`` as it was built,
empty; it then adds the restored trials newest first, so they would land
in other brackets than before, the ended ones would sit in them as live
trials that never report, and the paused ones would come back PENDING and
run past their milestone before the halving.

Here (:meth:`HyperBand.restore_decisions`) the restored trials are put in
the brackets in the order they were first added (their Tune counter), and
each bracket replays the sweep's rows milestone by milestone: the halvings
a run never killed made are made again on the same values, the trials they
stopped (whether or not Tune had recorded the stop) stop, and a trial that
had reached its bracket's milestone waits there for the others, as paused.
Rows a resumed trial reports again (the epochs after its checkpoint) were
counted from the record already and change nothing. Still lost, as with
ASHA: a halving decided but not recorded in a row or a status when the
driver died is made again once the trials reach the milestone, on the
same rows.
"""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandScheduler, TrialScheduler

from lrtune.engine.record import SweepRecord

__all__ = ["HyperBand"]

_OVER = (Trial.TERMINATED, Trial.ERROR)


def _added_order(trial: Trial) -> tuple[int, str]:
    """Tune's trial ids end in a counter of the order they were created: ``<prefix>_00003``."""
    tail = trial.trial_id.rsplit("_", 1)[-1]
    return (int(tail) if tail.isdigit() else -1, trial.trial_id)


class HyperBand(HyperBandScheduler):
    """Ray Tune's ``HyperBandScheduler`` (same arguments), with :meth:`restore_decisions` for a resumed sweep."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._record = SweepRecord()
        self._deferred: list[Trial] = []  # restored trials, put in brackets once Tune has added them all
        self._recorded_until: dict[str, int] = {}  # trial id -> last epoch the record gave its bracket

    def restore_decisions(self, record: SweepRecord) -> None:
        """Rebuild the brackets from ``record`` as Tune adds the restored trials."""
        self._record = record

    # --- Tune's hooks, each taking up the restored trials first ----------------------

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        if trial.trial_id in self._record.status or trial.trial_id in self._record.history:
            self._deferred.append(trial)
            return
        self._take_up(tune_controller)
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._take_up(tune_controller)
        time = result.get(self._time_attr)
        if time is not None and time <= self._recorded_until.get(trial.trial_id, -1):
            return TrialScheduler.CONTINUE  # an epoch replayed after a resume: the bracket has it
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._take_up(tune_controller)
        if trial in self._trial_info:
            super().on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        """Ray's choice, except that a restored trial waiting at its milestone (PENDING) waits on."""
        self._take_up(tune_controller)
        for band in self._hyperbands:
            for bracket in sorted(
                (b for b in band if b is not None), key=lambda b: b.completion_percentage()
            ):
                for trial in bracket.current_trials():
                    waiting = trial in bracket.trials_to_unpause or bracket.continue_trial(trial)
                    if (trial.status == Trial.PAUSED and trial in bracket.trials_to_unpause) or (
                        trial.status == Trial.PENDING and waiting
                    ):
                        return trial
        return None

    def _process_bracket(self, tune_controller, bracket) -> str:
        """Ray's ``_process_bracket``, where a trial PENDING at the milestone (restored) counts as paused.

        Ray's raises on a PENDING trial to stop, and leaves a PENDING one to
        go on to :meth:`choose_trial_to_run`, which runs any PENDING trial.
        """
        action = TrialScheduler.PAUSE
        if not bracket.cur_iter_done():
            return action
        if bracket.finished():
            for trial in bracket.current_trials():
                if trial.status in (Trial.PAUSED, Trial.PENDING):
                    tune_controller.stop_trial(trial)
            return TrialScheduler.STOP
        bracket.is_being_processed = True
        good, bad = bracket.successive_halving(self._metric, self._metric_op)
        self._num_stopped += len(bad)
        for trial in bad:
            if trial.status in (Trial.PAUSED, Trial.PENDING) or trial.is_saving:
                tune_controller.stop_trial(trial)
            elif trial.status == Trial.RUNNING:
                bracket.cleanup_trial(trial)
                action = TrialScheduler.STOP
        for trial in good:
            if bracket.continue_trial(trial):
                if trial.status in (Trial.PAUSED, Trial.PENDING) or trial.is_saving:
                    bracket.trials_to_unpause.add(trial)
                elif trial.status == Trial.RUNNING:
                    action = TrialScheduler.CONTINUE
            elif bracket.finished() and bracket.stop_last_trials:
                if trial.status in (Trial.PAUSED, Trial.PENDING) or trial.is_saving:
                    tune_controller.stop_trial(trial)
                elif trial.status == Trial.RUNNING:
                    bracket.cleanup_trial(trial)
                    action = TrialScheduler.STOP
        return action

    # --- the record ------------------------------------------------------------------

    def _take_up(self, tune_controller) -> None:
        """Put the restored trials in brackets in their first order, and replay their rows there."""
        if not self._deferred:
            return
        trials, self._deferred = sorted(self._deferred, key=_added_order), []
        brackets = []
        for trial in trials:
            super().on_trial_add(tune_controller, trial)
            bracket = self._trial_info[trial][0]
            if bracket not in brackets:
                brackets.append(bracket)
        for bracket in brackets:
            for trial in self._replay(bracket):
                tune_controller.stop_trial(trial)

    def _replay(self, bracket) -> list[Trial]:
        """Make the halvings the record shows in ``bracket``; the trials they stopped that Tune has not."""
        stop: list[Trial] = []
        while bracket.current_trials():
            milestone = bracket._cumul_r
            for trial in bracket.current_trials():
                rows = self._record.history.get(trial.trial_id, {})
                self._recorded_until[trial.trial_id] = max(rows, default=-1)
                reached = [e for e in rows if e <= milestone]
                if (trial.status in _OVER or self._record.over(trial.trial_id)) and max(
                    rows, default=0
                ) < milestone:
                    bracket.cleanup_trial(trial)  # ended on its own (diverged, failed) before the milestone
                    continue
                if reached:
                    epoch = max(reached)
                    bracket.update_trial_stats(trial, {self._time_attr: epoch, self._metric: rows[epoch]})
            if not bracket.current_trials() or not bracket.cur_iter_done():
                break
            if bracket.finished():
                stop += [t for t in bracket.current_trials() if t.status not in _OVER]
                break
            good, bad = bracket.successive_halving(self._metric, self._metric_op)
            for trial in bad:
                bracket.cleanup_trial(trial)
                self._num_stopped += 1
                if trial.status not in _OVER:
                    stop.append(trial)
        return stop
