"""Spec -> Ray Tune: the param space, the trial scheduler, the searcher and Tune's config.

Pure translation: nothing here starts Ray or touches storage, so each
piece is testable on its own.

Each arm of the space becomes a dict of Tune domains under the key
``arm``, once per sample, numbered ``sample`` (several arms or samples: a
``tune.grid_search`` over them, so every family gets the same budget),
repeats become a grid over ``repeat`` inside each arm, and random values
are drawn once per sample and held across the grid
(``constant_grid_search``), so the repeats of a configuration differ only
in their seed (:func:`lrtune.training.trial.trial_seed`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from lrtune.engine import tune_internals
from lrtune.space import KeepInBounds
from lrtune.spec import SweepSpec

__all__ = [
    "ArmSpace",
    "Concurrency",
    "check_limit",
    "concurrency",
    "make_scheduler",
    "param_space",
    "pbt_mutations",
    "tpe_search",
    "tune_config",
]

log = logging.getLogger(__name__)

#: Schedulers that hold trials paused for others (a rung, a population): a
#: limit on *live* trials would leave them waiting for trials it never starts.
PAUSING_SCHEDULERS = ("sha", "hyperband", "pbt")
#: Schedulers that never pause a trial: with trial slots they also get the live
#: limit. Not median: Ray's rule pauses a trial that lacks samples while others wait.
NEVER_PAUSING = ("fifo", "asha")


def param_space(spec: SweepSpec) -> dict[str, Any]:
    """The Tune ``param_space``: ``{"arm": <domains of one arm, or a grid of arms>}``.

    TPE defines its own space (:func:`tpe_search`): it gets an empty one.
    """
    from ray import tune

    if spec.search == "tpe":
        return {}
    arms = []
    for arm in spec.space:
        domains: dict[str, Any] = {
            key: (
                tune.grid_search(list(d.args))
                if spec.search == "grid" and d.kind == "choice"
                else d.to_tune()
            )
            for key, d in arm.params.items()
        }
        domains["label"] = arm.label
        domains["repeat"] = tune.grid_search(list(range(spec.repeats))) if spec.repeats > 1 else 0
        arms.append(domains)
    # One grid entry per (sample, arm), numbered for the seed rule (lrtune.training.trial.trial_seed):
    # Tune draws each entry's random values once and holds them across its inner grid.
    draws = [{**domains, "sample": i} for i in range(spec.num_samples) for domains in arms]
    return {"arm": draws[0] if len(draws) == 1 else tune.grid_search(draws)}


def make_scheduler(spec: SweepSpec):
    """The Tune trial scheduler named in ``spec.scheduler``."""
    from ray.tune.schedulers import FIFOScheduler

    from lrtune.engine.asha import AsyncSuccessiveHalving
    from lrtune.engine.hyperband import HyperBand
    from lrtune.engine.median import MedianStopping
    from lrtune.engine.pbt import PopulationBasedTraining

    name, s = spec.scheduler.name, spec.scheduler.settings
    if name == "asha":
        return AsyncSuccessiveHalving(
            time_attr="epoch",
            max_t=spec.epochs,
            grace_period=min(s.grace_period, spec.epochs),
            reduction_factor=s.reduction_factor,
            brackets=s.brackets,
        )
    if name == "sha":
        from lrtune.engine.schedulers import SuccessiveHalving

        return SuccessiveHalving(
            time_attr="epoch",
            max_t=spec.epochs,
            grace_period=min(s.grace_period, spec.epochs),
            reduction_factor=s.reduction_factor,
        )
    if name == "hyperband":
        return HyperBand(time_attr="epoch", max_t=spec.epochs, reduction_factor=s.reduction_factor)
    if name == "median":
        return MedianStopping(
            time_attr="epoch", grace_period=s.grace_period, min_samples_required=s.min_samples_required
        )
    if name == "pbt":
        return PopulationBasedTraining(
            time_attr="epoch",
            perturbation_interval=s.perturbation_interval,
            quantile_fraction=s.quantile_fraction,
            resample_probability=s.resample_probability,
            hyperparam_mutations={"arm": pbt_mutations(spec)},
            custom_explore_fn=KeepInBounds(spec.pbt_mutations()),
        )
    return FIFOScheduler()


def pbt_mutations(spec: SweepSpec) -> dict[str, Any]:
    """PBT's ``hyperparam_mutations`` for the trial config's ``arm`` (:meth:`SweepSpec.pbt_mutations`)."""
    return {
        key: list(dist.args) if dist.kind in ("grid", "choice") else dist.to_tune()
        for key, dist in spec.pbt_mutations().items()
    }


@dataclasses.dataclass(frozen=True)
class Concurrency:
    """How a run keeps at most ``limit`` trials running at once.

    ``slot``: each trial holds one of the embedded Ray's trial slots while
    it runs (:data:`lrtune.engine.ray_runtime.TRIAL_SLOT`); ``live``: Tune's
    limit on live trials (paused ones included), or None.
    """

    limit: int | None
    slot: bool
    live: int | None


def concurrency(
    limit: int | None, *, slots: float | None, scheduler: str = "fifo", search: str = "grid"
) -> Concurrency:
    """How to hold ``limit`` trials at once on a Ray with ``slots`` trial slots (None: not lrtune's Ray).

    On lrtune's embedded Ray (it has trial slots, as many as the limit it
    was started for) each trial holds a slot while it runs; with a
    scheduler that never pauses (fifo, asha) Tune's live limit is set too,
    so that Tune creates no trials ahead of the slots (sha, hyperband and
    PBT need every trial of a rung created before the first reaches it). Otherwise
    (``--address``, or a ``ray.init`` of the caller's) the only limit Tune
    has counts *live* trials, paused ones included: it applies to
    schedulers that never hold a trial paused for others (fifo, asha,
    median); sha, hyperband and PBT would wait for trials such a limit
    never starts, so there it is ignored, with a warning. TPE always gets
    the live limit (Tune's ConcurrencyLimiter: it suggests from finished
    trials, not ahead of them).

    >>> concurrency(2, slots=2.0)
    Concurrency(limit=2, slot=True, live=2)
    >>> concurrency(2, slots=2.0, scheduler="sha")
    Concurrency(limit=2, slot=True, live=None)
    >>> concurrency(2, slots=None, scheduler="asha")
    Concurrency(limit=2, slot=False, live=2)
    >>> concurrency(2, slots=2.0, search="tpe")
    Concurrency(limit=2, slot=True, live=2)
    """
    if slots and limit and slots != limit:
        log.warning("max_concurrent %s: this Ray was started with %g trial slots; those apply", limit, slots)
    if search == "tpe" or not limit:
        return Concurrency(limit, bool(slots), limit)
    if slots:
        # fifo and asha never pause a trial, so live trials are running ones: the live limit
        # too, as plain Tune has it. Without it Tune creates up to 200 trials ahead, each with
        # a placement group that waits for a slot, and the driver spends its time on them
        # (issue 26: 1.3-2x plain Tune's wall time at 500 short trials).
        return Concurrency(limit, True, limit if scheduler in NEVER_PAUSING else None)
    if scheduler in PAUSING_SCHEDULERS:
        log.warning(
            "max_concurrent %s is ignored on this Ray (not lrtune's own): with scheduler %s it would "
            "leave paused trials waiting for trials it never starts. Leave out --address to run "
            "on lrtune's embedded Ray, where it holds.",
            limit,
            scheduler,
        )
        return Concurrency(limit, False, None)
    return Concurrency(limit, False, limit)


def check_limit(spec: SweepSpec, limit: int | None) -> None:
    """Refuse a limit on concurrent trials that would leave ``spec``'s scheduler nothing to decide.

    ``search: tpe`` with ``scheduler: sha`` and a limit: TPE's limit counts
    live trials, so a new trial starts only when one ends, and ``sha``
    judges a rung among the live trials: each trial is alone at every rung
    and ``sha`` stops nothing.

    >>> check_limit(SweepSpec.model_construct(search="tpe", scheduler=None), None)

    Raises:
        ValueError: the combination, why, and what to do instead.
    """
    if limit and spec.search == "tpe" and spec.scheduler is not None and spec.scheduler.name == "sha":
        raise ValueError(
            f"search: tpe with scheduler: sha and max_concurrent {limit}: TPE starts a trial only when "
            "another ends, and sha judges a rung among the live trials, so each trial would be alone "
            "at every rung and sha would stop nothing. Use scheduler: asha (it judges each trial "
            "against the values recorded at its rung), or leave out max_concurrent."
        )


def tune_config(spec: SweepSpec, live_limit: int | None, trial_prefix: str | None = None):
    """Tune's ``TuneConfig``; ``trial_prefix`` replaces Tune's random trial-id prefix (rounds: ``r<k>``).

    ``live_limit``: most live trials (paused ones included), from :func:`concurrency`.
    """
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if spec.search == "tpe":
        search_alg = tpe_search(spec)
    else:
        # Tune ignores max_concurrent_trials beside a given BasicVariantGenerator: the limit goes here.
        search_alg = BasicVariantGenerator(
            constant_grid_search=True, random_state=spec.seed, max_concurrent=live_limit or 0
        )
        if trial_prefix is not None:
            # Tune names trials <random 5 hex>_<counter>; a round's "r<k>_" prefix
            # cannot equal a hex prefix, so trial ids stay unique across rounds.
            tune_internals.set_trial_id_prefix(search_alg, f"{trial_prefix}_")
    return tune.TuneConfig(
        metric=spec.metric,
        mode=spec.metric_mode,
        # Random and grid search: the samples are in the param space (param_space).
        num_samples=spec.num_samples * spec.repeats if spec.search == "tpe" else 1,
        # TPE: a ConcurrencyLimiter, so it suggests from finished trials.
        max_concurrent_trials=live_limit if spec.search == "tpe" else None,
        # time_budget_s: a TimeBudget stopper in the run's RunConfig (lrtune.engine.budget).
        scheduler=make_scheduler(spec),
        search_alg=search_alg,
        # A finished trial's process takes the next trial: TensorFlow is
        # imported once per worker, not once per trial (seconds each).
        reuse_actors=True,
        trial_dirname_creator=lambda trial: f"{trial.trial_id}",
    )


class ArmSpace:
    """Optuna define-by-run space over the arms (picklable: Tune saves its searcher)."""

    def __init__(self, arms):
        self.arms = list(arms)

    def __call__(self, trial) -> dict[str, Any]:
        index = (
            trial.suggest_categorical("arm_index", list(range(len(self.arms)))) if len(self.arms) > 1 else 0
        )
        arm = self.arms[index]
        values: dict[str, Any] = {"label": arm.label}
        for key, dist in arm.params.items():
            name = f"arm{index}.{key}"
            if dist.kind == "fixed":
                values[key] = dist.args[0]
            elif dist.kind in ("choice", "grid"):
                values[key] = trial.suggest_categorical(name, list(dist.args))
            elif dist.kind == "randint":
                values[key] = trial.suggest_int(name, dist.args[0], dist.args[1])
            elif dist.kind == "quniform":
                low, high, q = dist.args
                values[key] = dist.on_grid(trial.suggest_float(name, low, high, step=q))
            else:  # uniform, loguniform, qloguniform (Optuna has no log with a step: onto the grid after)
                value = trial.suggest_float(name, dist.args[0], dist.args[1], log="log" in dist.kind)
                values[key] = dist.on_grid(value) if dist.kind == "qloguniform" else value
        values["sample"] = trial.number  # Optuna numbers its trials 0, 1, ...: the seed rule's sample
        return {"arm": values}


def tpe_search(spec: SweepSpec):
    """Optuna's TPE over the arms, define-by-run so each arm keeps its own space.

    Repeats go through Tune's ``Repeater``: each suggestion runs once per
    seed and TPE learns from their mean.
    """
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(
        space=ArmSpace(spec.space), metric=spec.metric, mode=spec.metric_mode, seed=spec.seed
    )
    return Repeater(searcher, repeat=spec.repeats, set_index=True) if spec.repeats > 1 else searcher
