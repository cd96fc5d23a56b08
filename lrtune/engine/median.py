"""The median stopping rule, whose record of results survives a driver kill.

:class:`MedianStopping` is Ray Tune's ``MedianStoppingRule`` (Golovin et
al. 2017, "Google Vizier"): a trial at time ``t`` past ``grace_period``
stops if its best metric so far is worse than the median, over the other
trials that reached ``t``, of their running means up to ``t`` (once
``min_samples_required`` trials did). The results it compares with live in
the driver, and Tune restores the rule empty on ``lrtune sweep --resume``:
after a resume every trial that had ended was forgotten, so too few
samples were left and the hopeless trials that follow ran on (4 good
trials then 4 hopeless ones, one at a time: 18 epochs run straight, 24
after one kill).

Here the rule takes the sweep's rows back (:meth:`MedianStopping.restore_decisions`)
as Tune adds each restored trial, so the medians are those of a run never
killed. The rows include the epochs that only an unfinished trial's newest
saved state holds (a killed driver had not written them yet): without them
a trial judged before those trials replay their epochs met too few samples
and was paused, and judged next at a later epoch that fewer trials had
reached (a hopeless trial ran to the end that way).

A result at a time the rule already holds for a trial (a resumed
trial replaying the epochs after its checkpoint, a trial's last result
given again when it completes) replaces the one held instead of counting
twice.

A stop decided but not yet recorded by Tune or ``trials.parquet`` when the
driver died is decided again: the resumed trial would otherwise be judged
only at its next epoch, where fewer trials may have arrived than at the
one it was stopped at, too few to judge it (in review, seed 508529 of the
kill soak: a hopeless trial stopped at epoch 1, the driver killed before
that was recorded, and the trial ran to the end). So as Tune adds a
restored trial that is not over, the rule is applied to its last recorded
epoch with the samples it had then: the other trials' rows that ended
before that row did (their ``timestamp``). If that says stop, the trial
stops at its next result, one epoch late, as with ASHA.
"""

from __future__ import annotations

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import MedianStoppingRule, TrialScheduler

from lrtune.engine.record import SweepRecord

__all__ = ["MedianStopping"]


class MedianStopping(MedianStoppingRule):
    """Ray Tune's ``MedianStoppingRule`` (same arguments), with :meth:`restore_decisions` for a resumed sweep."""

    #: The record holds the epochs of each unfinished trial's newest state too
    #: (:func:`lrtune.engine.record.read_record`, ``with_states``): rows lost
    #: with the driver are samples of the rule before their trials replay them.
    reads_state_histories = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._record = SweepRecord()
        #: restored trial -> the recorded epoch at which its stop was lost with the driver
        self._lost_stops: dict[str, int] = {}

    def restore_decisions(self, record: SweepRecord) -> None:
        """Hold ``record.history`` as each trial's results when Tune adds it."""
        self._record = record

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)
        rows = self._record.history.get(trial.trial_id)
        if rows:
            self._results[trial] = [{self._time_attr: e, self._metric: rows[e]} for e in sorted(rows)]
            if not self._record.over(trial.trial_id) and self.stopped_when_recorded(trial.trial_id):
                self._lost_stops[trial.trial_id] = max(rows)

    def stopped_when_recorded(self, trial_id: str) -> bool:
        """Whether the rule stops ``trial_id`` at its last epoch in the record, as it stood then.

        Ray's rule at time ``t`` (the trial's last recorded epoch, if
        ``t >= grace_period``): the samples are the other trials that had a
        row at ``t`` or later ending before this trial's row at ``t`` did,
        each contributing the mean of its metric over epochs
        ``grace_period..t`` (non-finite means left out); with at least
        ``min_samples_required`` of them, it stops if their median is better
        than the trial's best value so far. Rows without a timestamp
        (sweeps written before lrtune recorded one) decide nothing: False.
        """
        rows, times = self._record.history.get(trial_id), self._record.times.get(trial_id, {})
        if not rows:
            return False
        t = max(rows)
        if t < self._grace_period or t not in times:
            return False
        means = []
        for other, values in self._record.history.items():
            at = self._record.times.get(other, {})
            seen = {e: v for e, v in values.items() if e in at and at[e] <= times[t]}
            if other == trial_id or not seen or max(seen) < t:
                continue
            window = [v for e, v in seen.items() if self._grace_period <= e <= t]
            if window and np.isfinite(mean := float(np.mean(window))):
                means.append(mean)
        if len(means) < self._min_samples_required:
            return False
        best = self._compare_op([rows[e] for e in rows if e <= t])
        median = float(np.median(means))
        return self._compare_op(median, best) != best

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._forget_from(trial, result)
        lost = self._lost_stops.get(trial.trial_id)
        # Not on a row replayed from before that epoch: its values are the trial's own rows again.
        if lost is not None and self._metric in result and result.get(self._time_attr, -1) >= lost:
            del self._lost_stops[trial.trial_id]
            self._results[trial].append(result)
            self._stopped_trials.add(trial)
            return TrialScheduler.STOP
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        if result and self._time_attr in result and self._metric in result:
            self._forget_from(trial, result)
            super().on_trial_complete(tune_controller, trial, result)

    def _forget_from(self, trial: Trial, result: dict) -> None:
        """Drop the trial's results at or after ``result``'s time: ``result`` takes their place."""
        time = result.get(self._time_attr)
        if time is not None and trial in self._results:
            self._results[trial] = [r for r in self._results[trial] if r[self._time_attr] < time]
