"""The sweep file's ``time_budget_s``: Tune's time-out stopper, which says whether it stopped the run."""

from __future__ import annotations

from ray.tune.stopper import TimeoutStopper

__all__ = ["TimeBudget"]


class TimeBudget(TimeoutStopper):
    """Stop every trial once ``seconds`` of the Tune run have passed; ``spent`` says it did.

    Tune's interrupt (Ctrl-C) and this stopper both leave the trials they
    stop TERMINATED without ending them through the callbacks; the sink
    reads ``spent`` to record the budget's as ``stopped_early`` and the
    interrupt's as unfinished. Each run of a sweep (a ``--resume`` too)
    gets the whole budget, as Tune's ``TuneConfig.time_budget_s`` does.

    Raises:
        ValueError: ``seconds`` is not a number.
    """

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.spent = False

    def stop_all(self) -> bool:
        if super().stop_all():
            self.spent = True
        return self.spent
