"""Population-based training whose exploits always move a member forward.

:class:`PopulationBasedTraining` is Ray Tune's asynchronous PBT (Jaderberg
et al. 2017, "Population based training of neural networks") with two
rules added to its *exploit* step. Ray ranks the members by their last
score and has each member of the bottom ``quantile_fraction`` clone a
member of the top one, and the clone takes the donor's time. With more
members than slots, Ray's fair share then gives the slot back to the
member that just cloned (it has the least time); it trains one interval,
meets the paused donor's score again and clones it again. Nothing moves:
in review, 4 members on 2 slots with a metric whose best lies at epoch 1
made 149 exploits in 158 s before the sweep ended; with a metric that
worsens with training, members sat at epochs 2/2/1/1 after 60 s. Ties did
the same (every member at ``val_accuracy`` 1.0).

The rules:

1. **Strictly better.** A member of the bottom quantile clones only a top
   member whose score is strictly higher than its own (drawn at random
   among those, as Ray draws among the whole top quantile). A tie is no
   evidence that any donor is better.
2. **Forward in time.** A member clones a donor only at a later time than
   every donor state it cloned before. Cloning the same paused donor again
   is the loop above; cloning an older state than one it already took
   moves it back.

A member with no donor left by these rules keeps its own weights and
hyperparameters and trains on. The donor times a member clones strictly
rise, and no member acts on its last epoch (lrtune's trials end there), so
a sweep of ``epochs`` epochs makes at most ``members * (epochs - 1)``
exploits, whatever the metric does. The usual exploit still happens, including that
of a member one interval ahead of its donor under Tune's fair share (a
time rule against the member's own time, tried before, blocked those).
Declined exploits are counted per rule; :meth:`PopulationBasedTraining.summary`
says how many of each the sweep made, and ``lrtune sweep`` prints it.

Everything else (the quantiles, the perturbation interval, explore, the
fair share of time between members) is Ray's. On ``--resume`` the donor
times each member cloned come back from ``exploits.parquet``
(:meth:`PopulationBasedTraining.restore_decisions`).
"""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining as _RayPopulationBasedTraining

from lrtune.engine.record import SweepRecord

__all__ = ["PopulationBasedTraining"]


class PopulationBasedTraining(_RayPopulationBasedTraining):
    """Ray Tune's ``PopulationBasedTraining``; exploits only a strictly better donor, forward in time.

    Takes Ray's arguments unchanged. Scores are Ray's mode-adjusted
    ``last_score`` (``metric`` for ``mode="max"``, ``-metric`` for ``"min"``),
    recorded at each member's last perturbation; times are ``time_attr``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        #: trial id -> the latest donor time it cloned
        self._cloned_until: dict[str, float] = {}
        #: why exploits were declined -> how many
        self.declined = {"no better donor": 0, "no donor ahead of the last one cloned": 0}
        self.exploits = 0

    def restore_decisions(self, record: SweepRecord) -> None:
        """Take up the donor times each member cloned from ``record.exploits``."""
        for e in record.exploits:
            tid = e["trial_id"]
            self._cloned_until[tid] = max(self._cloned_until.get(tid, float("-inf")), e["donor_epoch"])

    def summary(self) -> str:
        """One line: the exploits made and those declined, by reason."""
        declined = "; ".join(f"{n} {why}" for why, n in self.declined.items() if n)
        return f"PBT: {self.exploits} exploits" + (
            f", {sum(self.declined.values())} declined ({declined})" if declined else ""
        )

    def _checkpoint_or_exploit(
        self,
        trial: Trial,
        tune_controller,
        upper_quantile: list[Trial],
        lower_quantile: list[Trial],
    ) -> None:
        """Ray's step, with donors cut to those the two rules allow (none: ``trial`` trains on)."""
        if trial in lower_quantile:
            score = self._trial_state[trial].last_score
            better = [t for t in upper_quantile if self._trial_state[t].last_score > score]
            since = self._cloned_until.get(trial.trial_id, float("-inf"))
            ahead = [t for t in better if self._trial_state[t].last_train_time > since]
            if ahead:
                upper_quantile = ahead  # Ray draws the donor from these
            else:
                self.declined["no donor ahead of the last one cloned" if better else "no better donor"] += 1
                lower_quantile = [t for t in lower_quantile if t is not trial]
        super()._checkpoint_or_exploit(trial, tune_controller, upper_quantile, lower_quantile)

    def _exploit(self, tune_controller, trial: Trial, trial_to_clone: Trial) -> None:
        donor_time = self._trial_state[trial_to_clone].last_train_time
        super()._exploit(tune_controller, trial, trial_to_clone)
        self._cloned_until[trial.trial_id] = donor_time
        self.exploits += 1
