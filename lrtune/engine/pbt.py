"""Population-based training that exploits only strictly better members.

:class:`PopulationBasedTraining` is Ray Tune's asynchronous PBT (Jaderberg
et al. 2017, "Population based training of neural networks") with one
change to its *exploit* step. Ray ranks the members by their last score and
has each member of the bottom ``quantile_fraction`` clone a member of the
top one, whatever the scores are. When scores tie (every member at
``val_accuracy`` 1.0, or the same accuracy on a small validation set), a
member "behind" by sort order alone clones a donor no better than itself,
and it inherits the donor's time: with more members than slots, the donors
are paused at that time, the exploiting member again has the least time and
takes the slot, reaches the next perturbation, ties again and clones again.
The donors never run again and the sweep never ends (Ray 2.60; the PBT
sweep of ``tests/test_pbt.py``, on ``val_accuracy``, did so).

Here a member of the bottom quantile clones only a top member whose score
is strictly higher than its own (drawn at random among those, as Ray
draws among the whole top quantile); with none, a tie is no evidence that
any donor is better, so the member keeps its own weights and
hyperparameters and trains on. Everything else (the quantiles, the
perturbation interval, explore, fair share of time between members) is
Ray's.

Not prevented: the same loop when the donors' older scores stay strictly
better, as with a metric that gets worse with training (``val_loss`` once
a small set overfits). Requiring the donor to be as far on in time stops
it, but also the usual exploit of a member one epoch behind under
Tune's fair share, so it is not done.
"""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining as _RayPopulationBasedTraining

__all__ = ["PopulationBasedTraining"]


class PopulationBasedTraining(_RayPopulationBasedTraining):
    """Ray Tune's ``PopulationBasedTraining``; a tie never triggers an exploit.

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
        """Ray's step, with donors cut to the top members that score strictly above ``trial``."""
        if trial in lower_quantile:
            score = self._trial_state[trial].last_score
            better = [t for t in upper_quantile if self._trial_state[t].last_score > score]
            if better:
                upper_quantile = better  # Ray draws the donor from these
            else:
                lower_quantile = [t for t in lower_quantile if t is not trial]
        super()._checkpoint_or_exploit(trial, tune_controller, upper_quantile, lower_quantile)
