"""Asynchronous successive halving whose rungs survive a driver kill.

:class:`AsyncSuccessiveHalving` is Ray Tune's ``ASHAScheduler`` (Li et al.
2018, "A system for massively parallel hyperparameter tuning"): a trial
reaching a rung (``grace_period * reduction_factor**k`` epochs) goes on
only if its metric is in the top ``1 / reduction_factor`` of the values
recorded at that rung so far. Those records live in the driver, and Tune
does not keep them across ``lrtune sweep --resume``: it restores the
scheduler as it was when the sweep started, empty. After a resume, every
trial that had ended (done, or stopped early) was missing from the rungs,
so the next trial to reach a rung met an empty one and went on whatever
its metric: a sweep killed once kept trials the same sweep run straight
would have stopped.

On ``--resume`` lrtune gives the scheduler every row the sweep has in
Parquet (:meth:`AsyncSuccessiveHalving.restore_decisions`, a
:class:`lrtune.engine.record.SweepRecord`); as Tune adds each
restored trial, its rows are recorded at the rungs exactly as its results
were when they first arrived. With one bracket (lrtune's default) the rungs
are then those of a run never killed; with several, a restored trial may
land in another bracket than before (Ray draws it at random on adding).
Still lost: a decision taken but not yet recorded by Tune when the driver
died (a trial stopped at a rung whose stop had not reached Tune's snapshot
or ``trials.parquet``); that trial trains on to its next rung and is
judged there.
"""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler

from lrtune.engine.record import SweepRecord

__all__ = ["AsyncSuccessiveHalving"]


class AsyncSuccessiveHalving(ASHAScheduler):
    """Ray Tune's ``ASHAScheduler`` (same arguments), with :meth:`restore_decisions` for a resumed sweep."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._record = SweepRecord()

    def restore_decisions(self, record: SweepRecord) -> None:
        """Record ``record.history`` at the rungs as Tune adds each trial.

        Trials Tune does not add (another round's) are ignored.
        """
        self._record = record

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)
        rows = self._record.history.get(trial.trial_id)
        if not rows:
            return
        bracket = self._trial_info[trial.trial_id]
        for epoch in sorted(rows):
            # As _Bracket.on_result records a result: at the highest rung it has
            # reached and not yet recorded, one rung per result (no decision here).
            for milestone, recorded in bracket._rungs:  # highest first
                if epoch < milestone or trial.trial_id in recorded:
                    continue
                recorded[trial.trial_id] = self._metric_op * rows[epoch]
                break
