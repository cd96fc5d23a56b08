"""Population-based training that clones only a better member at least as far on.

:class:`PopulationBasedTraining` is Ray Tune's asynchronous PBT (Jaderberg
et al. 2017, "Population based training of neural networks") with one
change to its *exploit* step. Ray ranks the members by their last score and
has each member of the bottom ``quantile_fraction`` clone a member of the
top one, whatever the scores are and whenever they were measured, and the
clone takes the donor's time. With more members than slots the donors are
paused at their time; the clone, set back to it, again has the least time,
takes the slot, reaches the next perturbation and meets the donors' older
scores. If those still look better (every member tied at ``val_accuracy``
1.0, or a metric that gets worse with training, such as ``val_loss`` once a
small set overfits), it clones again: the donors never run again and the
sweep never ends (Ray 2.60; ``tests/test_pbt.py``).

Here a member of the bottom quantile clones only a top member that scores
strictly higher than it and whose score was measured at the same time or
later (drawn at random among those, as Ray draws among the whole top
quantile). A clone's time then never goes back, so every member reaches
the end. With no such donor the member keeps its own weights and
hyperparameters and trains on. Everything else (the quantiles, the
perturbation interval, explore, fair share of time between members) is
Ray's.
"""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining as _RayPopulationBasedTraining

__all__ = ["PopulationBasedTraining"]


class PopulationBasedTraining(_RayPopulationBasedTraining):
    """Ray Tune's ``PopulationBasedTraining``, cloning only a strictly better donor at least as far on.

    Takes Ray's arguments unchanged. Scores are Ray's mode-adjusted
    ``last_score`` (``metric`` for ``mode="max"``, ``-metric`` for ``"min"``),
    recorded at each member's last perturbation.
    """

    def _checkpoint_or_exploit(
        self,
        trial: Trial,
        tune_controller,
        upper_quantile: list[Trial],
        lower_quantile: list[Trial],
    ) -> None:
        """Ray's step, with donors cut to the top members that score strictly above ``trial`` at no earlier time."""
        if trial in lower_quantile:
            own = self._trial_state[trial]
            better = [
                t
                for t in upper_quantile
                if self._trial_state[t].last_score > own.last_score
                and self._trial_state[t].last_train_time >= own.last_train_time
            ]
            if better:
                upper_quantile = better  # Ray draws the donor from these
            else:
                lower_quantile = [t for t in lower_quantile if t is not trial]
        super()._checkpoint_or_exploit(trial, tune_controller, upper_quantile, lower_quantile)
