"""Choosing a configuration from a sweep's results, honestly.

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

:func:`read_results` merges ``metrics/``, ``trials.parquet`` and
``sweep.yaml`` into one record per trial; :mod:`lrtune.results.report` draws from
the same records.
"""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import yaml

from lrtune.results import stats, tables
from lrtune.results.tables import CONFIG_COLUMNS

__all__ = [
    "METRICS",
    "METRIC_RANGE",
    "Candidate",
    "Choice",
    "LearnedSchedule",
    "Segment",
    "SweepResults",
    "Trial",
    "choose",
    "choose_from",
    "format_choice",
    "learned_schedule",
    "read_results",
    "segments",
]

#: The per-epoch metrics a choice can be made on.
METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")

#: Per-epoch columns kept for each trial.
CURVES = ("lr", *METRICS)

#: The range of each metric: a confidence interval of its mean is clipped to it.
METRIC_RANGE = {
    "val_accuracy": (0.0, 1.0),
    "accuracy": (0.0, 1.0),
    "val_loss": (0.0, math.inf),  # cross-entropy
    "loss": (0.0, math.inf),
}


# --- one record per trial -----------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Trial:
    """One trial: its status, hyperparameters and per-epoch curves.

    ``config`` has every name of :data:`~lrtune.results.tables.CONFIG_COLUMNS`
    (None where the trial's optimizer and schedule do not use it): the
    values of its last recorded epoch. ``epochs`` holds the epochs recorded
    in ``metrics/`` (1-based) and ``curves[name]`` the value of
    ``lr``/``loss``/... at each (NaN where missing); ``hparams[name]`` the
    hyperparameter in effect at each (PBT changes them), ``trained_by`` the
    trial that trained each (under PBT a member's early epochs are its
    donor's). A trial that failed before its first epoch has none.
    """

    trial_id: str
    status: str
    family: str
    config: Mapping[str, Any]
    repeat: int | None = None
    error: str | None = None
    epochs: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=int))
    curves: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    hparams: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    trained_by: tuple[str, ...] = ()

    @property
    def epochs_run(self) -> int:
        return int(self.epochs.max()) if len(self.epochs) else 0

    @property
    def key(self) -> tuple[Any, ...]:
        """The configuration: trials with equal keys differ only by seed (lists as tuples, hashable)."""
        return tuple(
            tuple(v) if isinstance(v, list) else v for v in (self.config[name] for name in CONFIG_COLUMNS)
        )

    def value(self, metric: str, mode: str, at: str) -> float:
        """``metric`` at the last recorded epoch (``at="final"``) or its best one.

        NaN when the trial has no finite value of ``metric``.
        """
        curve = self.curves.get(metric)
        if curve is None or not len(curve):
            return math.nan
        if at == "final":
            return float(curve[-1])
        finite = curve[np.isfinite(curve)]
        if not len(finite):
            return math.nan
        return float(finite.max() if mode == "max" else finite.min())


@dataclasses.dataclass(frozen=True, eq=False)
class SweepResults:
    """A sweep's results as read now: settings from ``sweep.yaml``, one :class:`Trial` each.

    ``epochs`` is the number each trial is meant to run and ``scheduler``
    the trial scheduler's name (both None without ``sweep.yaml``). ``trials_file`` says whether ``trials.parquet`` was
    there; without it statuses come from the last ``status`` in
    ``metrics/`` (``done``, ``diverged`` or ``running``).
    """

    sweep_dir: str
    name: str
    metric: str
    mode: str
    epochs: int | None
    trials: tuple[Trial, ...]
    trials_file: bool
    scheduler: str | None = None

    @property
    def pbt(self) -> bool:
        """Whether the sweep ran population-based training (``sweep.yaml``'s ``scheduler``)."""
        return self.scheduler == "pbt"

    def families(self) -> list[str]:
        """Families present, in the order the reports show them."""
        return sorted({t.family for t in self.trials}, key=family_order)


#: Families in the order of the seed article, then today's schedules and
#: optimizers (issue 15), then the rest alphabetically.
_FAMILY_ORDER = (
    "constant",
    "time",
    "step",
    "exponential",
    "adagrad",
    "adadelta",
    "rmsprop",
    "adam",
    "piecewise",
    "polynomial",
    "cosine",
    "warmup+cosine",
    "cosine_restarts",
    "one_cycle",
    "cyclic",
    "plateau",
    "adamw",
    "adamw+cosine",
    "adamw+warmup+cosine",
    "nadam",
    "lion",
)


def family_order(name: str) -> tuple[int, str]:
    """Sort key: the article's order, then today's families, unknown ones after."""
    return (_FAMILY_ORDER.index(name) if name in _FAMILY_ORDER else len(_FAMILY_ORDER), name)


def default_mode(metric: str) -> str:
    """``min`` for losses, ``max`` for accuracies."""
    return "min" if metric.endswith("loss") else "max"


def _plain(value: Any) -> Any:
    """A Python scalar for a Parquet/NumPy one; NaN becomes None."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _read_sweep_file(sweep_dir: str) -> dict[str, Any] | None:
    from lrtune.folder import SweepFolder

    raw = SweepFolder(sweep_dir).read_spec()
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{sweep_dir}/sweep.yaml: expected a mapping (name, metric, epochs, space, ...)")
    return dict(raw)


def read_results(sweep_dir: str) -> SweepResults:
    """Every trial of the sweep at ``sweep_dir`` (path or URI), as recorded now.

    ``metrics/`` is required; ``trials.parquet`` (statuses, errors) and
    ``sweep.yaml`` (metric, mode, epochs) are used when present. While a
    sweep runs ``trials.parquet`` lags the metrics: a trial it still calls
    ``pending``/``running`` whose last epoch row says ``done`` or
    ``diverged`` takes that status.
    """
    metrics = tables.load(sweep_dir)
    try:
        trials_table = tables.load_trials(sweep_dir)
    except FileNotFoundError:
        trials_table = None
    if metrics.num_rows == 0:
        raise ValueError(
            f"{sweep_dir}: metrics/ holds no epochs yet; run this again once a trial has finished an epoch"
        )
    spec = _read_sweep_file(sweep_dir) or {}

    metric = spec.get("metric")
    if metric is None and trials_table is not None and trials_table.num_rows:
        metric = next((m for m in trials_table["metric"].to_pylist() if m), None)
    metric = metric or "val_accuracy"
    if metric not in METRICS:
        raise ValueError(f"{sweep_dir}/sweep.yaml: metric {metric!r} is not one of {', '.join(METRICS)}")
    mode = spec.get("mode") or default_mode(metric)
    epochs = spec.get("epochs")
    name = spec.get("name") or metrics["sweep"][0].as_py()

    config_names = [f"config.{k}" for k in CONFIG_COLUMNS]
    columns = metrics.select(
        ["trial_id", "epoch", "status", "family", "repeat", "trained_by", *CURVES, *config_names]
    ).to_pydict()
    rows_by_trial: dict[str, list[int]] = {}
    for i, trial_id in enumerate(columns["trial_id"]):
        rows_by_trial.setdefault(trial_id, []).append(i)

    listed = {r["trial_id"]: r for r in trials_table.to_pylist()} if trials_table is not None else {}
    trials = []
    for trial_id in sorted(set(rows_by_trial) | set(listed)):
        rows = rows_by_trial.get(trial_id, [])
        entry = listed.get(trial_id)
        if rows:
            first, last = rows[0], rows[-1]
            config = {k: _plain(columns[f"config.{k}"][last]) for k in CONFIG_COLUMNS}
            status_now = columns["status"][last] or "running"
            fam = columns["family"][last]
            repeat = columns["repeat"][first]
        else:
            config = {k: _plain(entry[f"config.{k}"]) for k in CONFIG_COLUMNS}
            status_now, fam, repeat = None, entry["family"], entry["repeat"]
        if entry is None:
            status = status_now
        elif entry["status"] in ("pending", "running") and status_now in ("done", "diverged"):
            status = status_now
        else:
            status = entry["status"]
        trials.append(
            Trial(
                trial_id=trial_id,
                status=status,
                family=fam
                or (entry or {}).get("family")
                or tables.family(config["optimizer"], config["schedule"], config.get("warmup_epochs")),
                config=config,
                repeat=repeat,
                error=entry["error"] if entry is not None else None,
                epochs=np.array([columns["epoch"][i] for i in rows], dtype=int),
                curves={
                    c: np.array(
                        [np.nan if columns[c][i] is None else columns[c][i] for i in rows], dtype=float
                    )
                    for c in CURVES
                },
                hparams={k: tuple(_plain(columns[f"config.{k}"][i]) for i in rows) for k in CONFIG_COLUMNS},
                trained_by=tuple(columns["trained_by"][i] or trial_id for i in rows),
            )
        )
    return SweepResults(
        sweep_dir=sweep_dir,
        name=str(name),
        metric=metric,
        mode=mode,
        epochs=int(epochs) if epochs is not None else None,
        trials=tuple(trials),
        trials_file=trials_table is not None,
        scheduler=_scheduler_name(spec.get("scheduler")),
    )


def _scheduler_name(value: Any) -> str | None:
    """``pbt`` from ``scheduler: pbt`` or ``scheduler: {pbt: {...}}`` (as ``sweep.yaml`` saves it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        return str(next(iter(value)))
    return None


# --- the choice ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One configuration: its metric over repeats, and how it compares with the best.

    ``config`` holds the hyperparameters that apply (no nulls), as plain
    Python values. ``std`` is the sample standard deviation (``ddof=1``),
    NaN for one run; ``ci_low``/``ci_high`` bound the 95% confidence
    interval of the mean, Student's t clipped to the metric's range (NaN
    for one run: its spread is unknown). ``comparison`` is its Welch's
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


def _applied(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that apply (no nulls), as they read in a sweep file."""
    plain = {}
    for k, v in config.items():
        if v is None:
            continue
        if k == "epochs_drop" and float(v).is_integer():
            v = int(v)  # a period of 10 epochs reads better than 10.0
        if k == "boundaries":
            v = [int(b) if float(b).is_integer() else b for b in v]
        plain[k] = v
    return plain


def _candidate(
    config: Mapping[str, Any],
    family: str,
    values: Sequence[float],
    ids: Sequence[str],
    metric: str,
    left_out: Mapping[str, int] | None = None,
) -> Candidate:
    x = np.asarray(values, dtype=float)
    low, high = stats.mean_confidence_interval(x, bounds=METRIC_RANGE[metric])
    return Candidate(
        config=_applied(config),
        family=family,
        mean=float(x.mean()),
        std=float(x.std(ddof=1)) if len(x) > 1 else math.nan,
        n=len(x),
        ci_low=low,
        ci_high=high,
        values=tuple(float(v) for v in x),
        trial_ids=tuple(ids),
        left_out=dict(left_out or {}),
    )


def _counted(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items() if n)


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
    """:func:`choose` on results already read with :func:`read_results`."""
    if at not in ("final", "best"):
        raise ValueError(f"`at` must be 'final' or 'best'. Received: at={at!r}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"`top` must be an integer >= 1. Received: top={top!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be a number in (0, 1). Received: alpha={alpha!r}")
    metric = metric or sweep.metric
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not recorded; choose one of: {', '.join(METRICS)}")
    mode = sweep.mode if metric == sweep.metric else default_mode(metric)
    if sweep.pbt:
        if at != "final":
            raise ValueError(
                f"{sweep.sweep_dir} is a PBT sweep: its members are compared as the final population, "
                f"each at its final epoch (their earlier models were overwritten by exploits); "
                f"use --at final. Received: at={at!r}"
            )
        return _choose_population(sweep, metric, mode, family)
    pool, counts, fallback, scored, unscored = _scored(sweep, metric, mode, family, at)
    eligible_statuses = ("stopped_early", "running") if fallback else ("done",)

    groups: dict[tuple, list[tuple[Trial, float]]] = {}
    for t, v in scored:
        groups.setdefault(t.key, []).append((t, v))
    candidates = []
    for key, members in groups.items():
        ids = [t.trial_id for t, _ in members]
        # Runs of this configuration not in its mean: early stopping, divergence and failures
        # leave the survivors, which may flatter it (pending ones simply have not run).
        missing = [t for t in pool if t.key == key and t.trial_id not in ids and t.status != "pending"]
        left_out = {s: sum(t.status == s for t in missing) for s in sorted({t.status for t in missing})}
        candidates.append(
            _candidate(
                members[0][0].config, members[0][0].family, [v for _, v in members], ids, metric, left_out
            )
        )
    sign = -1 if mode == "max" else 1
    ordered = sorted(candidates, key=lambda c: (sign * c.mean, -c.n, c.trial_ids[0]))
    # compare_with_best ranks by mean then n, keeping the order given for the rest: ours.
    test = stats.compare_with_best({i: c.values for i, c in enumerate(ordered)}, mode=mode, alpha=alpha)
    ranked = tuple(
        [ordered[test.best]]
        + [dataclasses.replace(ordered[cmp.key], comparison=cmp) for cmp in test.comparisons]
    )
    best = ranked[0]
    not_separated = [c for c in ranked[1:] if not c.comparison.significant]
    within = tuple(not_separated[:top])
    # The note, in the order a reader asks: what was compared, what was not, can we tell.
    where_at = "final epoch" if at == "final" else "best epoch (optimistic: picked on the same data)"
    lines = [
        f"Compared {_plural(len(ranked), 'configuration')} ({_plural(len(scored), 'trial')}) on {metric} ({mode}) "
        f"at each trial's {where_at}, mean over repeats."
    ]
    if fallback:
        low, high = min(t.epochs_run for t, _ in scored), max(t.epochs_run for t, _ in scored)
        ran = f"{low}" if low == high else f"{low} to {high}"
        epochs = f"all {sweep.epochs} epochs" if sweep.epochs else "every epoch"
        lines.append(
            f"No {family + ' ' if family else ''}trial has run {epochs} yet: compared "
            f"{_counted({s: counts[s] for s in eligible_statuses})} trials at their last epoch (after {ran} "
            "epochs), which is not a fair comparison; choose again when the sweep has finished."
        )
    lines += _excluded(counts, eligible_statuses, unscored, metric)
    lines += _survivorship(ranked)
    lines += _separation(ranked, not_separated, top, test)
    return Choice(
        metric=metric,
        mode=mode,
        at=at,
        best=best,
        within_noise=within,
        ranked=ranked,
        note=" ".join(lines),
        test=test,
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word if n == 1 else word + 's'}"


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
        f"({_counted(dict(sorted(total.items())))}): the runs that survived may flatter "
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
                "the noise between seeds (its interval has no width)."
            )
        single = sum(c.n == 1 for c in ranked[1:])
        if single:
            lines.append(
                f"{_plural(single, 'configuration')} {'has' if single == 1 else 'have'} one run: spread "
                "unknown, never called separated from the best."
            )
    how = f"{stats.TEST} vs the best, alpha {test.alpha:g} each"
    if not_separated:
        shown = "" if len(not_separated) <= top else f"; the {top} best are listed"
        lines.append(
            f"{_plural(len(not_separated), 'other configuration')} "
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


def _scored(
    sweep: SweepResults, metric: str, mode: str, family: str | None, at: str
) -> tuple[list[Trial], dict[str, int], bool, list[tuple[Trial, float]], list[Trial]]:
    """(pool, status counts, fallback, (trial, value) compared, trials without a value).

    The pool is every trial (of ``family``); the compared ones are the
    done ones, or, when none is done (``fallback``), the stopped and
    running ones at their last epoch.
    """
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
    where = f"{sweep.sweep_dir}" + (f" (family {family})" if family else "")

    fallback = counts["done"] == 0
    eligible_statuses = ("stopped_early", "running") if fallback else ("done",)
    eligible = [t for t in pool if t.status in eligible_statuses]
    scored = [(t, t.value(metric, mode, at)) for t in eligible]
    unscored = [t for t, v in scored if not math.isfinite(v)]
    scored = [(t, v) for t, v in scored if math.isfinite(v)]
    if not scored:
        raise ValueError(
            f"{where}: no trial to choose from: none has run every epoch or stopped early with a "
            f"finite {metric} ({_counted(counts)})"
        )
    return pool, counts, fallback, scored, unscored


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


# --- PBT: the final population and the schedule it learned ----------------------


@dataclasses.dataclass(frozen=True)
class Segment:
    """Epochs ``first`` to ``last`` (1-based, both included) sharing one ``value``."""

    first: int
    last: int
    value: Any


def segments(epochs: Sequence[int], values: Sequence[Any]) -> tuple[Segment, ...]:
    """Runs of equal consecutive ``values``, one :class:`Segment` per run.

    >>> segments([1, 2, 3, 4, 5], [0.1, 0.1, 0.05, 0.05, 0.1])
    (Segment(first=1, last=2, value=0.1), Segment(first=3, last=4, value=0.05), Segment(first=5, last=5, value=0.1))
    >>> segments([], [])
    ()
    """
    if len(epochs) != len(values):
        raise ValueError(
            f"`epochs` and `values` must have the same length. Received: {len(epochs)} and {len(values)}"
        )
    out: list[Segment] = []
    for epoch, value in zip(epochs, values, strict=True):
        if out and out[-1].value == value:
            out[-1] = Segment(out[-1].first, int(epoch), value)
        else:
            out.append(Segment(int(epoch), int(epoch), value))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class LearnedSchedule:
    """What a PBT member's model was trained with, epoch by epoch.

    ``lr`` and ``momentum`` are the values in effect (``config.lr``,
    ``config.momentum`` of its rows, inherited epochs included) as
    :class:`Segment` runs; ``momentum`` is empty for an optimizer without
    one. ``changed`` holds every other hyperparameter whose value changed.
    ``lineage`` says which trial trained which epochs (``trained_by``).
    ``space`` is the fragment that trains it again from scratch: for a
    constant schedule the ``lr`` runs become ``schedule: piecewise``
    (``boundaries`` = the last epoch of each run but the last, ``values``
    = each run's rate), every other setting takes its final value.
    ``replayable`` is false when the base schedule is not constant (no
    single schedule replays a change of its parameters mid-run); ``notes``
    say what the fragment does not reproduce.
    """

    trial_id: str
    lr: tuple[Segment, ...]
    momentum: tuple[Segment, ...]
    changed: Mapping[str, tuple[Segment, ...]]
    lineage: tuple[Segment, ...]
    space: Mapping[str, Any]
    replayable: bool
    notes: tuple[str, ...]


def learned_schedule(trial: Trial) -> LearnedSchedule:
    """The schedule ``trial``'s model learned under PBT, as a fragment to replay.

    Reads ``trial.hparams`` (the values in effect each epoch) and
    ``trial.trained_by``. A momentum (or any setting but ``lr``) that
    changed is replayed at its final value: there is no momentum schedule,
    and the final value is the one the finished model was last tuned with;
    the notes say so.

    Raises:
        ValueError: the trial has no recorded epoch.
    """
    if not len(trial.epochs):
        raise ValueError(f"trial {trial.trial_id} has no recorded epoch: no schedule to read")
    epochs = [int(e) for e in trial.epochs]
    runs = {
        k: segments(epochs, values)
        for k, values in trial.hparams.items()
        if any(v is not None for v in values)
    }
    lr, momentum = runs.get("lr", ()), runs.get("momentum", ())
    changed = {k: r for k, r in runs.items() if len(r) > 1 and k not in ("lr", "momentum")}
    final = _applied(trial.config)
    notes = []
    replayable = True
    space = dict(final)
    if len(lr) > 1:
        if final.get("schedule") == "constant" and not final.get("warmup_epochs"):
            space = {"optimizer": final["optimizer"], "schedule": "piecewise"}
            space["boundaries"] = [s.last for s in lr[:-1]]
            space["values"] = [s.value for s in lr]
            space.update({k: v for k, v in final.items() if k not in ("optimizer", "schedule", "lr")})
        else:
            replayable = False
            notes.append(
                f"lr (the {final.get('schedule')} schedule's initial rate) changed mid-run and no single "
                "schedule replays that: the fragment is the final configuration, not a replay."
            )
    if len(momentum) > 1:
        notes.append(
            "momentum changed across epochs and there is no momentum schedule: the replay uses the "
            f"final momentum, {momentum[-1].value:.4g}, for every epoch."
        )
    for key in changed:
        notes.append(f"{key} changed across epochs: the replay uses its final value, {final.get(key)!r}.")
    return LearnedSchedule(
        trial_id=trial.trial_id,
        lr=lr,
        momentum=momentum,
        changed=changed,
        lineage=segments(epochs, list(trial.trained_by)),
        space=space,
        replayable=replayable,
        notes=tuple(notes),
    )


def _choose_population(sweep: SweepResults, metric: str, mode: str, family: str | None) -> Choice:
    """:func:`choose_from` on a PBT sweep: the best member of the final population.

    Members copy each other's weights, so they are not repeats of a
    configuration: each is ranked alone, at its final epoch, and the
    winner's :class:`LearnedSchedule` is the answer.
    """
    pool, counts, fallback, scored, unscored = _scored(sweep, metric, mode, family, "final")
    eligible_statuses = ("stopped_early", "running") if fallback else ("done",)
    sign = -1 if mode == "max" else 1
    scored.sort(key=lambda tv: (sign * tv[1], tv[0].trial_id))
    ranked = tuple(_candidate(t.config, t.family, [v], [t.trial_id], metric) for t, v in scored)
    winner = scored[0][0]
    learned = learned_schedule(winner)
    lines = [
        f"PBT: compared the final population, {len(scored)} member{'s' if len(scored) != 1 else ''} "
        f"on {metric} ({mode}) at each member's final epoch."
    ]
    if fallback:
        lines.append(
            "No member has run every epoch yet: compared at their last epoch, which is not a fair "
            "comparison; choose again when the sweep has finished."
        )
    lines += _excluded(counts, eligible_statuses, unscored, metric)
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


# --- output -------------------------------------------------------------------


def _flow(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), default_flow_style=True, sort_keys=False, width=10_000).strip()


def _spread(c: Candidate) -> str:
    std = "n/a" if math.isnan(c.std) else f"{c.std:.4f}"
    return f"{c.mean:.4f} ± {std} (n={c.n})"


def _range(metric: str) -> str:
    """``[0, 1]`` or ``[0, inf)``: the metric's range as an interval."""
    low, high = METRIC_RANGE[metric]
    return f"[{low:g}, {high:g}]" if math.isfinite(high) else f"[{low:g}, inf)"


def _interval(c: Candidate, metric: str) -> str:
    if math.isnan(c.ci_low):
        return "95% CI of the mean: none (one run: spread unknown)"
    return f"95% CI of the mean [{c.ci_low:.4f}, {c.ci_high:.4f}] (Student's t, within {_range(metric)})"


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _verdict(c: Candidate) -> str:
    """``p=0.241`` or why there is no p-value; runs left out of the mean after it."""
    cmp = c.comparison
    text = _p(cmp.p_value) if cmp is not None and cmp.p_value is not None else (cmp.reason if cmp else "")
    if c.left_out:
        runs = sum(c.left_out.values())
        text += f"; +{runs} run{'s' if runs != 1 else ''} not in mean ({_counted(c.left_out)})"
    return text


def _test_json(choice: Choice) -> dict[str, Any] | None:
    if choice.test is None:
        return None
    return {
        "name": stats.TEST,
        "compares": "each configuration vs the best: difference of means",
        "alpha": choice.test.alpha,
        "adjustment": "none: alpha per comparison (a clear winner must pass every one)",
        "clear_winner": choice.test.clear_winner,
    }


def _as_json(c: Candidate) -> dict[str, Any]:
    cmp = c.comparison
    return {
        "config": dict(c.config),
        "family": c.family,
        "mean": c.mean,
        "std": None if math.isnan(c.std) else c.std,
        "n": c.n,
        "ci": None if math.isnan(c.ci_low) else [c.ci_low, c.ci_high],
        "values": list(c.values),
        "trial_ids": list(c.trial_ids),
        "left_out": dict(c.left_out),
        "vs_best": None
        if cmp is None
        else {
            "statistic": cmp.statistic,
            "df": cmp.df,
            "p_value": cmp.p_value,
            "significant": cmp.significant,
            "reason": cmp.reason,
        },
    }


def format_choice(choice: Choice, fmt: Literal["yaml", "json"] = "yaml") -> str:
    """``choice`` as a YAML fragment to paste into a sweep file, or as JSON.

    YAML: comment lines with the numbers, the test and its level, the
    configurations within noise of the best with their p-values, and the
    note, then ``space:`` mapping each hyperparameter of the best
    configuration to its value.
    JSON: ``metric``, ``mode``, ``at``, ``test`` (``name``, ``compares``,
    ``alpha``, ``adjustment``, ``clear_winner``; null under PBT), ``best``,
    ``within_noise`` and ``ranked`` (every configuration, best first; under
    PBT ``population`` instead), each with ``config``, ``family``, ``mean``,
    ``std`` (null for one run), ``n``, ``ci`` (null for one run),
    ``values``, ``trial_ids``, ``left_out`` (runs not in the mean, by
    status) and ``vs_best`` (``statistic``, ``df``, ``p_value`` (null when
    untested), ``significant``, ``reason``; null for the best), and ``note``.
    """
    if fmt == "json":
        data = {
            "metric": choice.metric,
            "mode": choice.mode,
            "at": choice.at,
            "test": _test_json(choice),
            "best": _as_json(choice.best),
            "within_noise": [_as_json(c) for c in choice.within_noise],
            "note": choice.note,
        }
        if choice.learned is not None:
            data["population"] = [_as_json(c) for c in choice.ranked]
            data["learned_schedule"] = _learned_json(choice.learned)
        else:
            data["ranked"] = [_as_json(c) for c in choice.ranked]
        return json.dumps(data, indent=2, allow_nan=False) + "\n"
    if fmt != "yaml":
        raise ValueError(f"`fmt` must be 'yaml' or 'json'. Received: fmt={fmt!r}")
    if choice.learned is not None:
        return _format_population(choice, choice.learned)
    best = choice.best
    lines = [
        f"# best {choice.metric} ({choice.mode}) at each trial's {choice.at} epoch: {best.family}",
        f"# {choice.metric} {_spread(best)}: mean ± sample std over repeats, {_interval(best, choice.metric)}",
        f"# trials: {', '.join(best.trial_ids)}"
        + (f" (+ not in mean: {_counted(best.left_out)})" if best.left_out else ""),
    ]
    if choice.test is not None and choice.test.comparisons:
        lines.append(
            f"# test: {stats.TEST} on the difference of means, each configuration vs the best, "
            f"alpha {choice.test.alpha:g} each"
        )
    if choice.within_noise:
        lines.append("# within noise of the best (not significantly worse, or untested):")
        lines += [
            f"#   {c.family}: {_flow(c.config)}  {_spread(c)}  {_verdict(c)}" for c in choice.within_noise
        ]
    worse = [c.comparison.p_value for c in choice.ranked[1:] if c.comparison and c.comparison.significant]
    if worse:
        lines.append(
            f"# significantly worse than the best: {_plural(len(worse), 'configuration')} "
            f"(each p < {choice.test.alpha:g}; the largest {_p(max(worse))})"
        )
    lines += ["# " + line for line in textwrap.wrap(choice.note, 100)]
    lines.append(yaml.dump({"space": dict(best.config)}, Dumper=_FlowLists, sort_keys=False).rstrip())
    return "\n".join(lines) + "\n"


def _runs(runs: Sequence[Segment], fmt: str = "{:.4g}") -> str:
    """``epochs 1-3: 0.01, 4-6: 0.012`` for comment lines."""
    parts = [
        f"{s.first}-{s.last}: {fmt.format(s.value)}"
        if s.last > s.first
        else f"{s.first}: {fmt.format(s.value)}"
        for s in runs
    ]
    return "epochs " + ", ".join(parts)


def _runs_json(runs: Sequence[Segment], name: str = "value") -> list[dict[str, Any]]:
    return [{"epochs": [s.first, s.last], name: s.value} for s in runs]


def _learned_json(learned: LearnedSchedule) -> dict[str, Any]:
    return {
        "trial_id": learned.trial_id,
        "lr": _runs_json(learned.lr),
        "momentum": _runs_json(learned.momentum),
        "changed": {k: _runs_json(r) for k, r in learned.changed.items()},
        "lineage": _runs_json(learned.lineage, "trained_by"),
        "space": dict(learned.space),
        "replayable": learned.replayable,
        "notes": list(learned.notes),
    }


class _FlowLists(yaml.SafeDumper):
    """Safe YAML with block mappings and inline lists: ``boundaries: [3, 5]``."""


_FlowLists.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def _format_population(choice: Choice, learned: LearnedSchedule) -> str:
    """The YAML output of a PBT choice: the winner, its schedule and lineage, the fragment."""
    best = choice.best
    lines = [
        f"# PBT: best {choice.metric} ({choice.mode}) of the final population at its final epoch: "
        f"{best.trial_ids[0]} ({best.family})",
        f"# {choice.metric} {best.mean:.4f} (one member: members share weights, so no spread over repeats)",
        "# final population: " + ", ".join(f"{c.trial_ids[0]} {c.mean:.4f}" for c in choice.ranked),
        f"# learned lr (config.lr, in effect each epoch): {_runs(learned.lr)}",
    ]
    if len(learned.momentum) > 1:
        lines.append(f"# learned momentum: {_runs(learned.momentum)}")
    for key, runs in learned.changed.items():
        lines.append(f"# learned {key}: {_runs(runs, '{}')}")
    lineage = ", ".join(
        f"{s.first}-{s.last} by {s.value}" if s.last > s.first else f"{s.first} by {s.value}"
        for s in learned.lineage
    )
    lines.append(f"# lineage (trained_by): epochs {lineage}")
    lines += ["# " + line for line in textwrap.wrap(choice.note, 100)]
    lines.append(yaml.dump({"space": dict(learned.space)}, Dumper=_FlowLists, sort_keys=False).rstrip())
    return "\n".join(lines) + "\n"
