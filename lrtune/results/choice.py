"""Ranking a sweep's configurations and choosing one, honestly.

A *configuration* is one combination of the ``config.*`` columns (nulls
equal); its trials differ only in ``repeat`` and ``seed``. :func:`choose`
takes each trial's metric at its final (or best) epoch, averages the
repeats of each configuration and picks the best mean. It then compares
every other configuration with the best by Welch's t-test on the
difference of the means, two-sided, at level ``alpha`` (0.05) per
comparison (:func:`lrtune.results.stats.compare_with_best`); the ones not
significantly worse are *within noise* of the best, and when there are any
the output says the sweep has not separated them instead of naming one
winner.

For configuration *c* with values :math:`x_1..x_n` (one per repeat)::

    mean = sum(x) / n
    std  = sqrt(sum((x - mean)^2) / (n - 1))                  # NaN for n = 1
    CI   = mean -/+ t_{0.975, n-1} * std / sqrt(n), clipped   # NaN for n = 1

clipped to the metric's range (:data:`METRIC_RANGE`: accuracies in
[0, 1], losses in [0, inf)). The intervals describe each mean; the
decision is the test, not whether intervals overlap. One run has an
unknown spread: no interval, and it is never called separated.

Only trials that ran every epoch (status ``done``) are compared: a trial
stopped early is not comparable at its last epoch, and diverged or failed
trials are reported, never chosen. A configuration some of whose runs
were left out (stopped early, diverged, failed) is compared on the runs
that survived, which may flatter it; the note says so for every such
configuration, and ``left_out`` counts them. If no trial is done yet, the
stopped (and still running) trials are compared at their last epoch, and
the note says so.

:func:`rank` is the one ranking: ``lrtune best`` (:func:`choose`), the
final table of ``lrtune sweep`` and ``lrtune results`` all order
configurations by it. On a PBT sweep it ranks the final population, each
member alone (members share weights, so they are not repeats).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from lrtune.results import stats
from lrtune.results.lineage import LearnedSchedule, learned_schedule
from lrtune.results.trials import (
    METRIC_RANGE,
    METRICS,
    SweepResults,
    Trial,
    applied_config,
    default_mode,
    read_results,
)

__all__ = [
    "Candidate",
    "Choice",
    "Ranking",
    "choose",
    "choose_from",
    "counted",
    "plural",
    "rank",
]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One configuration: its metric over repeats, and how it compares with the best.

    ``config`` holds the hyperparameters that apply (no nulls), as plain
    Python values. ``std`` is the sample standard deviation (``ddof=1``),
    NaN for one run; ``ci_low``/``ci_high`` bound the 95% confidence
    interval of the mean, Student's t with the seed spread pooled over the
    compared configurations (:func:`lrtune.results.stats.pooled_spread`), clipped to the metric's range (NaN
    for one run: its spread is unknown); ``pi_low``/``pi_high`` the 95%
    prediction interval for the mean of a rerun with as many seeds
    (:func:`lrtune.results.stats.prediction_interval`), where the next
    sweep's mean lands, which the confidence interval is not built to hold. ``comparison`` is its Welch's
    t-test against the best (None for the best itself and under PBT).
    ``left_out`` counts, by status, this configuration's runs that are
    not in its mean (stopped early, diverged, failed, still running).
    """

    config: dict[str, Any]
    family: str
    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float
    values: tuple[float, ...]
    trial_ids: tuple[str, ...]
    comparison: stats.Comparison | None = None
    left_out: Mapping[str, int] = dataclasses.field(default_factory=dict)
    pi_low: float = math.nan
    pi_high: float = math.nan


@dataclasses.dataclass(frozen=True)
class Choice:
    """The best configuration and the ones the sweep cannot tell apart from it.

    ``within_noise`` holds the configurations not significantly worse than
    the best (at most ``top`` of them, best mean first); ``test`` is the
    :class:`~lrtune.results.stats.BestComparison` behind it, with every
    p-value and ``clear_winner``. On a PBT sweep ``best`` is the winning
    member (one run), ``ranked`` the final population, ``within_noise``
    empty, ``test`` None and ``learned`` the winner's
    :class:`LearnedSchedule`.
    """

    metric: str
    mode: str
    at: str
    best: Candidate
    within_noise: tuple[Candidate, ...]
    ranked: tuple[Candidate, ...]
    note: str
    learned: LearnedSchedule | None = None
    test: stats.BestComparison | None = None


@dataclasses.dataclass(frozen=True)
class Ranking:
    """A sweep's comparable configurations, best first, as :func:`rank` orders them.

    ``ranked[0]`` is the best; every other :class:`Candidate` carries its
    Welch's t-test against it (``comparison``), and ``test`` is the
    :class:`~lrtune.results.stats.BestComparison` behind them (None on a
    PBT sweep, where ``population`` is true and each candidate is one
    member of the final population, ranked alone). ``counts`` holds the
    trials considered (of ``family``, when given) by status;
    ``compared`` the trials in the means, in ranking order under PBT;
    ``unscored`` the eligible trials with no finite value of ``metric``.
    ``fallback`` is true when no trial has run every epoch: the stopped
    and running trials were then compared at their last epoch, which is
    not a fair comparison.
    """

    metric: str
    mode: str
    at: str
    ranked: tuple[Candidate, ...]
    counts: Mapping[str, int]
    compared: tuple[Trial, ...]
    unscored: tuple[Trial, ...] = ()
    fallback: bool = False
    family: str | None = None
    population: bool = False
    test: stats.BestComparison | None = None

    @property
    def best(self) -> Candidate:
        """The first configuration (under PBT, member) of the ranking."""
        return self.ranked[0]

    @property
    def compared_statuses(self) -> tuple[str, ...]:
        """The statuses of the trials in the means: ``done``, or in a fallback the unfinished ones."""
        return ("stopped_early", "running") if self.fallback else ("done",)


def _candidate(
    config: Mapping[str, Any],
    family: str,
    values: Sequence[float],
    ids: Sequence[str],
    metric: str,
    left_out: Mapping[str, int] | None = None,
    spread: tuple[float, int] | None = None,
) -> Candidate:
    x = np.asarray(values, dtype=float)
    low, high = stats.mean_confidence_interval(x, bounds=METRIC_RANGE[metric], spread=spread)
    pi_low, pi_high = stats.prediction_interval(x, bounds=METRIC_RANGE[metric], spread=spread)
    return Candidate(
        config=applied_config(config),
        family=family,
        mean=float(x.mean()),
        std=float(x.std(ddof=1)) if len(x) > 1 else math.nan,
        n=len(x),
        ci_low=low,
        ci_high=high,
        pi_low=pi_low,
        pi_high=pi_high,
        values=tuple(float(v) for v in x),
        trial_ids=tuple(ids),
        left_out=dict(left_out or {}),
    )


def plural(n: int, word: str) -> str:
    """``n`` and ``word``, with an ``s`` unless ``n`` is 1 (the notes' and outputs' counts).

    >>> plural(1, "trial"), plural(3, "configuration")
    ('1 trial', '3 configurations')
    """
    return f"{n} {word if n == 1 else word + 's'}"


def counted(counts: Mapping[str, int]) -> str:
    """Trials by status, as the notes and outputs write them; statuses with none are left out.

    >>> counted({"done": 0, "stopped_early": 3, "error": 1})
    '3 stopped early, 1 error'
    """
    return ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items() if n)


def rank(
    sweep: SweepResults,
    *,
    metric: str | None = None,
    family: str | None = None,
    at: Literal["final", "best"] = "final",
    alpha: float = stats.ALPHA,
) -> Ranking:
    """Every comparable configuration of ``sweep``, best first: the ranking ``lrtune best`` picks from.

    Each compared trial gives its ``metric`` at its final epoch
    (``at="final"``) or its best one; the trials of one configuration
    (equal :attr:`Trial.key`) are averaged, and configurations are ordered
    by mean (higher first for ``mode`` max), then by more runs, then by
    their first trial id; each other one is compared with the best by
    :func:`~lrtune.results.stats.compare_with_best` at level ``alpha``.
    Compared are the ``done`` trials; when none is done, the stopped and
    running ones at their last epoch (``fallback``). Diverged and failed
    trials are never compared, nor trials without a finite value.

    On a PBT sweep (``at`` must be ``final``) each member of the final
    population is ranked alone, ties broken by trial id, untested.

    Args:
        sweep: results read by :func:`~lrtune.results.trials.read_results`.
        metric: default the sweep's; its mode is the sweep's ``mode`` for
            the sweep's metric, else max for accuracies, min for losses.
        family: only trials of this family.
        at: ``final`` or ``best`` (optimistic: the epoch is picked on the
            same validation data).
        alpha: the level of each Welch's t-test against the best.

    Raises:
        ValueError: a bad argument, or no trial to rank (none done or
            stopped with a finite ``metric``).
    """
    if at not in ("final", "best"):
        raise ValueError(f"`at` must be 'final' or 'best'. Received: at={at!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be a number in (0, 1). Received: alpha={alpha!r}")
    metric = metric or sweep.metric
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not recorded; choose one of: {', '.join(METRICS)}")
    mode = sweep.mode if metric == sweep.metric else default_mode(metric)
    if sweep.pbt and at != "final":
        raise ValueError(
            f"{sweep.sweep_dir} is a PBT sweep: its members are compared as the final population, "
            f"each at its final epoch (their earlier models were overwritten by exploits); "
            f"use --at final. Received: at={at!r}"
        )

    pool = list(sweep.trials)
    if family is not None:
        pool = [t for t in pool if t.family == family]
        if not pool:
            raise ValueError(
                f"{sweep.sweep_dir}: no trials of family {family!r}; families here: {', '.join(sweep.families())}"
            )
    statuses = ("done", "stopped_early", "running", "pending", "diverged", "error")
    counts = dict.fromkeys(statuses, 0)
    for t in pool:
        counts[t.status] = counts.get(t.status, 0) + 1
    fallback = counts["done"] == 0
    eligible_statuses = ("stopped_early", "running") if fallback else ("done",)
    valued = [(t, t.value(metric, mode, at)) for t in pool if t.status in eligible_statuses]
    unscored = tuple(t for t, v in valued if not math.isfinite(v))
    scored = [(t, v) for t, v in valued if math.isfinite(v)]
    if not scored:
        where = f"{sweep.sweep_dir}" + (f" (family {family})" if family else "")
        raise ValueError(
            f"{where}: no trial to choose from: none has run every epoch or stopped early with a "
            f"finite {metric} ({counted(counts)})"
        )
    sign = -1 if mode == "max" else 1
    common = dict(
        metric=metric, mode=mode, at=at, counts=counts, unscored=unscored, fallback=fallback, family=family
    )

    if sweep.pbt:
        scored.sort(key=lambda tv: (sign * tv[1], tv[0].trial_id))
        ranked = tuple(_candidate(t.config, t.family, [v], [t.trial_id], metric) for t, v in scored)
        return Ranking(ranked=ranked, compared=tuple(t for t, _ in scored), population=True, **common)

    # Each trial's key once: matching every group against the whole pool was quadratic
    # (a 5,000-trial sweep's pick took minutes).
    by_key: dict[tuple, list[Trial]] = {}
    for t in pool:
        by_key.setdefault(t.key, []).append(t)
    groups: dict[tuple, list[tuple[Trial, float]]] = {}
    for t, v in scored:
        groups.setdefault(t.key, []).append((t, v))
    # The intervals use the seed noise pooled over the configurations (stats.pooled_spread): from
    # each one's own 3 seeds, the 95% prediction interval held a rerun's mean 91% of the time
    # (benchmarks/calibration.py, 2026-12-06); pooled, 97%.
    spread = stats.pooled_spread([[v for _, v in members] for members in groups.values()])
    candidates = []
    for key, members in groups.items():
        ids = [t.trial_id for t, _ in members]
        counted_ids = set(ids)
        # Runs of this configuration not in its mean: early stopping, divergence and failures
        # leave the survivors, which may flatter it (pending ones simply have not run).
        missing = [t for t in by_key[key] if t.trial_id not in counted_ids and t.status != "pending"]
        left_out = {s: sum(t.status == s for t in missing) for s in sorted({t.status for t in missing})}
        candidates.append(
            _candidate(
                members[0][0].config,
                members[0][0].family,
                [v for _, v in members],
                ids,
                metric,
                left_out,
                spread,
            )
        )
    ordered = sorted(candidates, key=lambda c: (sign * c.mean, -c.n, c.trial_ids[0]))
    # compare_with_best ranks by mean then n, keeping the order given for the rest: ours.
    test = stats.compare_with_best({i: c.values for i, c in enumerate(ordered)}, mode=mode, alpha=alpha)
    ranked = tuple(
        [ordered[test.best]]
        + [dataclasses.replace(ordered[cmp.key], comparison=cmp) for cmp in test.comparisons]
    )
    return Ranking(ranked=ranked, compared=tuple(t for t, _ in scored), test=test, **common)


def choose(
    sweep_dir: str,
    *,
    metric: str | None = None,
    family: str | None = None,
    at: Literal["final", "best"] = "final",
    top: int = 5,
    alpha: float = stats.ALPHA,
) -> Choice:
    """The best configuration of the sweep at ``sweep_dir``, mean over repeats.

    Args:
        sweep_dir: ``<storage>/<sweep name>``, a path or a URI.
        metric: ``val_accuracy``, ``val_loss``, ``accuracy`` or ``loss``;
            default the sweep's. Its mode is the sweep's ``mode`` for the
            sweep's metric, else max for accuracies and min for losses.
        family: only trials of this family (``step``, ``adam``, ...).
        at: take each trial's metric at its ``final`` epoch or its ``best``
            one (optimistic: the epoch is picked on the same validation
            data).
        top: list at most this many configurations within noise.
        alpha: the level of each Welch's t-test against the best.

    Returns:
        A :class:`Choice`; its ``note`` says what was compared, what was
        left out and why, and whether the winner is clear.

    Raises:
        FileNotFoundError: no ``metrics/`` under ``sweep_dir``.
        ValueError: a bad argument, or no trial to choose from.
    """
    return choose_from(read_results(sweep_dir), metric=metric, family=family, at=at, top=top, alpha=alpha)


def choose_from(
    sweep: SweepResults,
    *,
    metric: str | None = None,
    family: str | None = None,
    at: Literal["final", "best"] = "final",
    top: int = 5,
    alpha: float = stats.ALPHA,
) -> Choice:
    """:func:`choose` on results already read with :func:`read_results`: the first of :func:`rank`."""
    if at not in ("final", "best"):
        raise ValueError(f"`at` must be 'final' or 'best'. Received: at={at!r}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"`top` must be an integer >= 1. Received: top={top!r}")
    ranking = rank(sweep, metric=metric, family=family, at=at, alpha=alpha)
    if ranking.population:
        return _choose_population(ranking)
    metric, mode, ranked, test = ranking.metric, ranking.mode, ranking.ranked, ranking.test
    not_separated = [c for c in ranked[1:] if not c.comparison.significant]
    within = tuple(not_separated[:top])
    # The note, in the order a reader asks: what was compared, what was not, can we tell.
    where_at = "final epoch" if at == "final" else "best epoch (optimistic: picked on the same data)"
    lines = [
        f"Compared {plural(len(ranked), 'configuration')} ({plural(len(ranking.compared), 'trial')}) "
        f"on {metric} ({mode}) at each trial's {where_at}, mean over repeats."
    ]
    if ranking.fallback:
        low = min(t.epochs_run for t in ranking.compared)
        high = max(t.epochs_run for t in ranking.compared)
        ran = f"{low}" if low == high else f"{low} to {high}"
        epochs = f"all {sweep.epochs} epochs" if sweep.epochs else "every epoch"
        lines.append(
            f"No {family + ' ' if family else ''}trial has run {epochs} yet: compared "
            f"{counted({s: ranking.counts[s] for s in ranking.compared_statuses})} trials at their last "
            f"epoch (after {ran} epochs), which is not a fair comparison; choose again when the sweep has finished."
        )
    lines += _excluded(ranking.counts, ranking.compared_statuses, ranking.unscored, metric)
    lines += _survivorship(ranked)
    lines += _separation(ranked, not_separated, top, test)
    return Choice(
        metric=metric,
        mode=mode,
        at=at,
        best=ranked[0],
        within_noise=within,
        ranked=ranked,
        note=" ".join(lines),
        test=test,
    )


def _survivorship(ranked: Sequence[Candidate]) -> list[str]:
    """The note's caveat on every compared configuration that lost runs (early stopping, failures)."""
    thinned = [c for c in ranked if c.left_out]
    if not thinned:
        return []
    total: dict[str, int] = {}
    for c in thinned:
        for status, n in c.left_out.items():
            total[status] = total.get(status, 0) + n
    if ranked[0].left_out:
        which = "the best" if len(thinned) == 1 else "the best included"
    else:
        which = "not the best"
    one = len(thinned) == 1
    who = (
        "the only compared configuration"
        if len(ranked) == 1
        else f"{len(thinned)} of the {len(ranked)} compared configurations ({which})"
    )
    return [
        f"Survivorship: {who} {'has' if one else 'have'} runs not in {'its' if one else 'their'} mean "
        f"({counted(dict(sorted(total.items())))}): the runs that survived may flatter "
        f"{'it' if one else 'them'}, and the test sees only those."
    ]


def _separation(
    ranked: Sequence[Candidate], not_separated: Sequence[Candidate], top: int, test: stats.BestComparison
) -> list[str]:
    """The note's verdict: unknown spreads, the configurations within noise, or a clear winner."""
    lines = []
    if ranked[0].n == 1:
        who = (
            "One run per configuration: the spread is unknown, not zero, so no configuration is "
            "separated from the best"
            if all(c.n == 1 for c in ranked)
            else "The best has one run: its spread is unknown, not zero, so no configuration is separated from it"
        )
        lines.append(f"{who}; set repeats >= 2 (the seed article's own reruns differ by up to 3 points).")
    else:
        if ranked[0].std == 0:
            lines.append(
                f"The best's {ranked[0].n} runs gave identical values: a sample spread of 0 understates "
                "the noise between seeds"
                + (
                    " (its interval has no width)."
                    if ranked[0].ci_low == ranked[0].ci_high
                    else " (its intervals use the spread pooled over the configurations; its test does not)."
                )
            )
        single = sum(c.n == 1 for c in ranked[1:])
        if single:
            lines.append(
                f"{plural(single, 'configuration')} {'has' if single == 1 else 'have'} one run: spread "
                "unknown, never called separated from the best."
            )
    how = f"{stats.TEST} vs the best, alpha {test.alpha:g} each"
    if not_separated:
        shown = "" if len(not_separated) <= top else f"; the {top} best are listed"
        lines.append(
            f"{plural(len(not_separated), 'other configuration')} "
            f"{'is' if len(not_separated) == 1 else 'are'} within noise of the best: not significantly "
            f"worse ({how}{shown}). There is no single winner; rerun these with more repeats to separate them."
        )
    elif test.clear_winner:
        others = (
            "the other configuration"
            if len(ranked) == 2
            else f"each of the other {len(ranked) - 1} configurations"
        )
        lines.append(f"The best is significantly better than {others} ({how}): a clear winner at that level.")
    return lines


def _excluded(
    counts: Mapping[str, int], eligible_statuses: Sequence[str], unscored: Sequence[Trial], metric: str
) -> list[str]:
    """The note's sentences on the trials left out of the comparison, and why."""
    lines = []
    left_out = {s: n for s, n in counts.items() if s not in eligible_statuses and n}
    reasons = {
        "stopped_early": "ran fewer epochs, not comparable at their last epoch",
        "diverged": "never chosen",
        "error": "never chosen",
        "running": "not finished",
        "pending": "not started",
    }
    if left_out:
        parts = [f"{n} {s.replace('_', ' ')} ({reasons.get(s, 'not compared')})" for s, n in left_out.items()]
        lines.append("Excluded: " + "; ".join(parts) + ".")
    if unscored:
        lines.append(f"Excluded: {len(unscored)} trials with no finite {metric}.")
    return lines


def _choose_population(ranking: Ranking) -> Choice:
    """:func:`choose_from` on a PBT sweep: the best member of the final population.

    Members copy each other's weights, so they are not repeats of a
    configuration: each is ranked alone, at its final epoch, and the
    winner's :class:`~lrtune.results.lineage.LearnedSchedule` is the answer.
    """
    metric, mode, ranked = ranking.metric, ranking.mode, ranking.ranked
    learned = learned_schedule(ranking.compared[0])
    members = len(ranking.compared)
    lines = [
        f"PBT: compared the final population, {members} member{'s' if members != 1 else ''} "
        f"on {metric} ({mode}) at each member's final epoch."
    ]
    if ranking.fallback:
        lines.append(
            "No member has run every epoch yet: compared at their last epoch, which is not a fair "
            "comparison; choose again when the sweep has finished."
        )
    lines += _excluded(ranking.counts, ranking.compared_statuses, ranking.unscored, metric)
    tied = [c.trial_ids[0] for c in ranked[1:] if c.mean == ranked[0].mean]
    if tied:
        lines.append(
            f"Tied with {', '.join(tied)} on {metric} (often the same model: members that copied the same "
            f"donor alike); picked the first by trial id."
        )
    lines.append(
        "Members copy each other's weights (exploits), so their values are not independent repeats "
        "and no confidence interval is given; train the fragment again over several seeds "
        "(--set repeats=3) to confirm the learned schedule."
    )
    lines += learned.notes
    return Choice(
        metric=metric,
        mode=mode,
        at="final",
        best=ranked[0],
        within_noise=(),
        ranked=ranked,
        note=" ".join(lines),
        learned=learned,
    )
