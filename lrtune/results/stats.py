"""Statistics over seeds: is a configuration's mean distinguishable from the best's?

A *sample* here is one configuration's metric (e.g. final ``val_accuracy``)
over its independent repeats (seeds), ``n`` values. Two questions:

* How precise is a mean? :func:`mean_confidence_interval`, the Student's t
  interval of the mean, clipped to the metric's range.
* Is the best configuration separated from another, or within noise of it?
  :func:`compare_with_best`, Welch's t-test on the difference of the two
  means, each other configuration against the best, two-sided, at level
  ``alpha`` per comparison.

Why a test on the difference, not "do the 95% confidence intervals
overlap": for two equal spreads, intervals that just fail to overlap mean
a difference of ``2 * 1.96 * se`` against a test's ``1.96 * sqrt(2) * se``,
so non-overlap is a test at p of about 0.006, far stricter than it reads
(Schenker & Gentleman 2001, *The American Statistician* 55(3)). Why Welch,
not Student's pooled test: seeds of different schedules need not spread
alike (Welch 1947, *Biometrika* 34). Why not a bootstrap: with the 2 to 5
seeds a sweep affords, a percentile bootstrap's coverage is far below its
nominal level, while the t-test is exact for normal noise.

Multiple comparisons: with ``k`` configurations the best is compared with
each of the other ``k - 1`` at level ``alpha``, with no adjustment. The
claim the output makes, "a clear winner", needs *every* comparison to reject
(an intersection-union test, Berger 1982, *Technometrics* 24(4)), so its
level is ``alpha``, not ``k * alpha``; picking the best from the same data
is what the two-sided test pays for (for ``k = 2``, the chance of naming a
clear winner between two equal configurations is the test's size, at most
``alpha``). ``tests/test_best.py`` checks that rate by simulation for
``k = 2`` and ``5``; a one-off run of 1,000 draws per case, normal noise,
``k`` from 2 to 10 and 2 to 5 seeds, gave at most 0.042 at ``alpha = 0.05``
(Welch's test is conservative with few seeds).
The per-configuration "significant" flags are per-comparison statements,
not a family-wise one.

One run (``n = 1``) has an unknown spread, not a zero one: it has no
interval, and a comparison it takes part in is never significant. Two
samples with no spread at all (identical values in each) are not tested
either: Welch's statistic is infinite there, yet two equal seeds do not
show that the runs cannot vary.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal

import numpy as np
from scipy import stats as scipy_stats

__all__ = [
    "ALPHA",
    "TEST",
    "BestComparison",
    "Comparison",
    "compare_with_best",
    "mean_confidence_interval",
    "prediction_interval",
]

#: The default significance level of each comparison with the best.
ALPHA = 0.05

#: The test :func:`compare_with_best` runs, as the output names it.
TEST = "Welch's two-sided t-test"


def _sample(values: Sequence[float], name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"`{name}` must be a non-empty sequence of numbers. Received: {values!r}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{name}` must hold finite numbers only. Received: {x.tolist()}")
    return x


def mean_confidence_interval(
    values: Sequence[float],
    *,
    confidence: float = 0.95,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    spread: tuple[float, int] | None = None,
) -> tuple[float, float]:
    """The Student's t confidence interval of the mean of ``values``, clipped to ``bounds``.

    For ``n`` values with mean ``m`` and sample standard deviation ``s``
    (``ddof=1``)::

        m -/+ t_{(1 + confidence) / 2, n - 1} * s / sqrt(n),   then intersected with bounds

    (any statistics text, e.g. NIST/SEMATECH e-Handbook 7.2.2.1; the t
    quantile is ``scipy.stats.t.ppf``). The true mean of a metric lies in
    its range (accuracy in [0, 1], loss in [0, inf)), so cutting the
    interval there removes only impossible values and keeps its coverage.

    Args:
        values: the metric over ``n`` repeats, finite, inside ``bounds``.
        confidence: the interval's level, in (0, 1).
        bounds: ``(low, high)``, the metric's range.
        spread: ``(s, df)``, a standard deviation and its degrees of freedom
            to use instead of the sample's own ``s`` and ``n - 1`` (the
            pooled spread of :func:`pooled_spread`).

    Returns:
        ``(low, high)``; ``(nan, nan)`` for one value (its spread is unknown).

    Raises:
        ValueError: empty or non-finite ``values``, a value outside
            ``bounds``, ``confidence`` outside (0, 1), ``low > high``.

    >>> low, high = mean_confidence_interval([0.80, 0.81, 0.79])  # 0.80 -/+ 4.303 * 0.01 / sqrt(3)
    >>> round(low, 4), round(high, 4)
    (0.7752, 0.8248)
    >>> low, high = mean_confidence_interval([0.8, 0.72], bounds=(0.0, 1.0))  # unclipped: [0.2518, 1.2682]
    >>> round(low, 4), high
    (0.2518, 1.0)
    >>> mean_confidence_interval([0.8])
    (nan, nan)
    """
    x = _sample(values, "values")
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1). Received: confidence={confidence!r}")
    low, high = bounds
    if not low <= high:
        raise ValueError(f"`bounds` must be (low, high) with low <= high. Received: bounds={bounds!r}")
    if np.any((x < low) | (x > high)):
        raise ValueError(
            f"`values` must lie in bounds [{low}, {high}] (the metric's range). Received: {x.tolist()}"
        )
    n = len(x)
    if n == 1:
        return math.nan, math.nan
    mean = float(x.mean())
    sd, df = spread if spread is not None else (float(x.std(ddof=1)), n - 1)
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df)) * sd / math.sqrt(n)
    return max(low, mean - half), min(high, mean + half)


def pooled_spread(samples: Sequence[Sequence[float]]) -> tuple[float, int] | None:
    """The pooled standard deviation of several samples and its degrees of freedom: ``(s_p, df)``.

    ``s_p^2 = sum_i (n_i - 1) s_i^2 / df`` with ``df = sum_i (n_i - 1)``, over
    the samples of 2 or more values (the one-way ANOVA's mean square error;
    Montgomery, *Design and Analysis of Experiments*, ch. 3). lrtune's
    configurations differ in their mean, and their seed noise is one noise
    (same data, model, epochs): pooled, a spread estimated from 3 seeds
    no longer comes out at 0.002 by chance. ``None`` when no sample has 2
    values.

    >>> s, df = pooled_spread([[0.80, 0.81, 0.79], [0.70, 0.73], [0.5]])  # (2*0.0001 + 1*0.00045) / 3
    >>> round(s, 5), df
    (0.01472, 3)
    """
    parts = [np.asarray(x, dtype=float) for x in samples if len(x) >= 2]
    df = sum(len(x) - 1 for x in parts)
    if not df:
        return None
    return math.sqrt(sum((len(x) - 1) * float(x.var(ddof=1)) for x in parts) / df), df


def prediction_interval(
    values: Sequence[float],
    *,
    future: int | None = None,
    confidence: float = 0.95,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    spread: tuple[float, int] | None = None,
) -> tuple[float, float]:
    """Where the mean of a rerun with ``future`` seeds lands, from ``values``: a prediction interval.

    The confidence interval of :func:`mean_confidence_interval` bounds the
    true mean; a rerun's mean scatters around it as well, so an interval
    meant to hold it is wider. For ``n`` values with mean ``m`` and sample
    standard deviation ``s`` (``ddof=1``), and a rerun of ``k = future``
    seeds (default ``n``)::

        m -/+ t_{(1 + confidence) / 2, n - 1} * s * sqrt(1 / n + 1 / k),   intersected with bounds

    (the normal-theory prediction interval for the mean of ``k`` future
    observations: Hahn & Meeker 1991, *Statistical Intervals*, ch. 4). For
    ``k = n`` it is ``sqrt(2)`` times the confidence interval's width.
    ``spread``: ``(s, df)`` instead of ``s`` and ``n - 1``, as in
    :func:`mean_confidence_interval`.

    Returns:
        ``(low, high)``; ``(nan, nan)`` for one value.

    Raises:
        ValueError: as :func:`mean_confidence_interval`, or ``future`` below 1.

    >>> low, high = prediction_interval([0.80, 0.81, 0.79])  # 0.80 -/+ 4.303 * 0.01 * sqrt(2 / 3)
    >>> round(low, 4), round(high, 4)
    (0.7649, 0.8351)
    """
    x = _sample(values, "values")
    n = len(x)
    k = n if future is None else future
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"`future` must be an integer >= 1. Received: future={future!r}")
    low, high = mean_confidence_interval(x, confidence=confidence, bounds=bounds)  # checks the rest
    if n == 1:
        return low, high
    mean = float(x.mean())
    sd, df = spread if spread is not None else (float(x.std(ddof=1)), n - 1)
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df)) * sd * math.sqrt(1 / n + 1 / k)
    return max(bounds[0], mean - half), min(bounds[1], mean + half)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One configuration against the best: Welch's t-test on the difference of means.

    ``statistic`` is Welch's ``t = (mean_best - mean) / sqrt(s_best^2 / n_best
    + s^2 / n)`` with the sign turned so that positive means the best is
    better (for ``mode="min"``, lower), ``df`` its Welch-Satterthwaite
    degrees of freedom, ``p_value`` the two-sided p-value; all three None
    when the test cannot run (``reason`` says why). ``significant`` is
    ``p_value < alpha``: this configuration is separated from the best;
    otherwise it is within noise of it.
    """

    key: Hashable
    n: int
    mean: float
    statistic: float | None
    df: float | None
    p_value: float | None
    significant: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class BestComparison:
    """The best configuration and its comparison with each other one.

    ``best`` is the key of the best sample (highest mean for ``mode="max"``,
    lowest for ``"min"``); ``comparisons`` holds every other key, best mean
    first, each a :class:`Comparison` run with :data:`TEST` at ``alpha``.
    """

    best: Hashable
    n_best: int
    mode: str
    alpha: float
    comparisons: tuple[Comparison, ...]
    test: str = TEST

    @property
    def within_noise(self) -> tuple[Comparison, ...]:
        """The configurations not separated from the best (not significant, or untestable)."""
        return tuple(c for c in self.comparisons if not c.significant)

    @property
    def clear_winner(self) -> bool:
        """Whether the best is separated from every other configuration (False when it is alone)."""
        return bool(self.comparisons) and all(c.significant for c in self.comparisons)


def compare_with_best(
    samples: Mapping[Hashable, Sequence[float]],
    *,
    mode: Literal["max", "min"],
    alpha: float = ALPHA,
) -> BestComparison:
    """Which configurations are within noise of the best, by Welch's t-test.

    The best is the sample with the highest mean (``mode="max"``) or the
    lowest (``"min"``); ties go to the one with more values, then to the
    one first in ``samples``. Each other sample is compared with it by
    Welch's unequal-variances t-test on the difference of the means
    (``scipy.stats.ttest_ind(equal_var=False)``), two-sided, at level
    ``alpha``, with no multiplicity adjustment (see the module docstring:
    "a clear winner" needs every comparison to reject, so its level stays
    ``alpha``). Not tested, so never significant: a comparison where either
    sample has one value (spread unknown), or where both have no spread.

    Args:
        samples: configuration key -> its metric over repeats (seeds),
            finite values, ``n >= 1`` each.
        mode: ``"max"`` (accuracies) or ``"min"`` (losses).
        alpha: the level of each comparison, in (0, 1).

    Returns:
        A :class:`BestComparison`: ``within_noise`` lists the keys not
        separated from the best, with their p-values; ``clear_winner`` says
        whether every other one is.

    Raises:
        ValueError: no samples, an empty or non-finite sample, a bad
            ``mode`` or ``alpha``.

    >>> result = compare_with_best(
    ...     {"a": [0.80, 0.81, 0.79], "b": [0.60, 0.61, 0.59], "c": [0.80, 0.70]}, mode="max"
    ... )
    >>> result.best, [(c.key, round(c.p_value, 4), c.significant) for c in result.comparisons]
    ('a', [('c', 0.4987, False), ('b', 0.0, True)])
    >>> [c.key for c in result.within_noise], result.clear_winner
    (['c'], False)
    """
    if mode not in ("max", "min"):
        raise ValueError(f"`mode` must be 'max' or 'min'. Received: mode={mode!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be a number in (0, 1). Received: alpha={alpha!r}")
    if not samples:
        raise ValueError("`samples` must hold at least one configuration. Received: {}")
    arrays = {key: _sample(values, f"samples[{key!r}]") for key, values in samples.items()}
    sign = -1.0 if mode == "max" else 1.0
    ranked = sorted(arrays, key=lambda k: (sign * float(arrays[k].mean()), -len(arrays[k])))
    best_key = ranked[0]
    best = arrays[best_key]
    comparisons = tuple(_compare(best, key, arrays[key], -sign, alpha) for key in ranked[1:])
    return BestComparison(
        best=best_key, n_best=len(best), mode=mode, alpha=float(alpha), comparisons=comparisons
    )


def _compare(
    best: np.ndarray, key: Hashable, other: np.ndarray, direction: float, alpha: float
) -> Comparison:
    """Welch's t-test of ``best`` against ``other``; ``direction`` +1 when higher is better."""
    mean = float(other.mean())

    def untested(reason: str) -> Comparison:
        return Comparison(key, len(other), mean, None, None, None, False, reason)

    if len(best) == 1 and len(other) == 1:
        return untested("one run each: spread unknown")
    if len(best) == 1:
        return untested("the best has one run: spread unknown")
    if len(other) == 1:
        return untested("one run: spread unknown")
    if np.ptp(best) == 0 and np.ptp(other) == 0:
        return untested("no spread in either (identical runs)")
    with warnings.catch_warnings():
        # Near-identical values make SciPy warn of precision loss in the variance; the
        # statistic is still right to the precision a metric is recorded with.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.ttest_ind(best, other, equal_var=False)
    p = float(result.pvalue)
    significant = p < alpha
    return Comparison(
        key=key,
        n=len(other),
        mean=mean,
        statistic=direction * float(result.statistic),
        df=float(result.df),
        p_value=p,
        significant=significant,
        reason=f"p {'<' if significant else '>='} {alpha:g}",
    )
