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
killed. A result at a time the rule already holds for a trial (a resumed
trial replaying the epochs after its checkpoint, a trial's last result
given again when it completes) replaces the one held instead of counting
twice. Still lost, as with ASHA: a stop decided but not yet recorded by
Tune or ``trials.parquet`` when the driver died; the trial trains one more
epoch and is judged again there.
"""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import MedianStoppingRule

from lrtune.engine.record import SweepRecord

__all__ = ["MedianStopping"]


class MedianStopping(MedianStoppingRule):
    """Ray Tune's ``MedianStoppingRule`` (same arguments), with :meth:`restore_decisions` for a resumed sweep."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._record = SweepRecord()

    def restore_decisions(self, record: SweepRecord) -> None:
        """Hold ``record.history`` as each trial's results when Tune adds it."""
        self._record = record

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)
        rows = self._record.history.get(trial.trial_id)
        if rows:
            self._results[trial] = [{self._time_attr: e, self._metric: rows[e]} for e in sorted(rows)]

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._forget_from(trial, result)
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
