"""Which hyperparameters matter: each one's share of the metric's variance over a sweep's configurations.

The configurations and their values are :func:`lrtune.results.choice.rank`'s
(each configuration's metric at the final epoch, mean over its seeds, as
``lrtune best`` compares them). They go into an in-memory Optuna study, one
trial per configuration, with distributions taken from the sweep's space
(``sweep.yaml``: a ``loguniform`` hyperparameter is on a log scale), and
Optuna's evaluator says how the variance splits:

- ``fanova`` (default): fANOVA (Hutter et al., 2014) on a random forest
  fitted to the configurations: each hyperparameter's share of the
  variance of the predicted metric (scikit-learn needed).
- ``ped-anova``: PED-ANOVA (Watanabe et al., 2023): how much each
  hyperparameter's distribution in the top configurations differs from
  its distribution in all of them.

A hyperparameter that only some arms use (``drop`` under step decay) is
one category per value plus ``unused``, so the arms are compared through
it. Hyperparameters with one value over the sweep carry no variance and
are listed as fixed. Few configurations cannot say much: below
:data:`ENOUGH_PER_PARAM` per varied hyperparameter (and at least
:data:`ENOUGH_MIN`) the result carries a caveat; below 3 there is none.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from lrtune.results.choice import Candidate, rank
from lrtune.results.trials import read_results

__all__ = ["Importance", "importance", "format_importance", "figure_importance", "EVALUATORS"]

EVALUATORS = ("fanova", "ped-anova")
#: Configurations per varied hyperparameter, and in all, below which the shares get a caveat.
ENOUGH_PER_PARAM = 5
ENOUGH_MIN = 20
UNUSED = "unused"


@dataclasses.dataclass(frozen=True)
class Importance:
    """Shares of the metric's variance (summing to 1), largest first, and what they rest on.

    ``confounded``: hyperparameters that split the configurations exactly
    as the one they are listed under (an optimizer's own settings follow the
    optimizer): their share is that one's. ``caveat`` is None when there are enough configurations to say;
    ``seed_std`` is the mean standard deviation over seeds of a
    configuration (NaN with one seed each), ``config_std`` the spread of
    the configurations' means: when the first is not well below the
    second, the seeds' noise is as large as the differences being split.
    """

    metric: str
    evaluator: str
    shares: Mapping[str, float]
    fixed: tuple[str, ...]
    confounded: Mapping[str, tuple[str, ...]]
    configurations: int
    seed_std: float
    config_std: float
    caveat: str | None


def _space(sweep_dir: str) -> dict[str, list[Any]]:
    """hyperparameter -> its distributions over the arms of ``sweep.yaml``."""
    from lrtune.folder import SweepFolder
    from lrtune.space import parse_dist

    raw = SweepFolder(sweep_dir).read_spec() or {}
    dists: dict[str, list[Any]] = {}
    for arm in raw.get("space", []):
        for key, value in arm.items():
            dists.setdefault(key, []).append(parse_dist(key, value))
    return dists


def _study(candidates: Sequence[Candidate], mode: str, space: Mapping[str, list[Any]]):
    """An Optuna study with one complete trial per configuration; the hyperparameters that vary, and those that do not."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    # The space's own keys first: of hyperparameters that split the configurations alike, the one named there stays.
    keys = sorted(
        {k for c in candidates for k in c.config},
        key=lambda k: (k not in ("optimizer", "schedule"), k not in space, k),
    )
    varied, fixed, distributions = [], [], {}
    confounded: dict[str, list[str]] = {}
    partitions: dict[tuple[int, ...], str] = {}
    for key in keys:
        values = [c.config.get(key, UNUSED) for c in candidates]
        labels = [(type(v).__name__, str(v)) for v in values]
        if len(set(labels)) < 2:
            fixed.append(key)
            continue
        partition = tuple(labels.index(label) for label in labels)
        if partition in partitions:  # the same split as another: fANOVA cannot tell them apart
            confounded[partitions[partition]].append(key)
            continue
        partitions[partition] = key
        confounded[key] = []
        varied.append(key)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            log = any(d.kind in ("loguniform", "qloguniform") for d in space.get(key, []))
            low = min(
                [float(v) for v in values]
                + [float(d.args[0]) for d in space.get(key, []) if not d.is_discrete()]
            )
            high = max(
                [float(v) for v in values]
                + [float(d.args[1]) for d in space.get(key, []) if not d.is_discrete()]
            )
            distributions[key] = FloatDistribution(low, high, log=log and low > 0)
        else:
            distributions[key] = CategoricalDistribution(sorted({str(v) for v in values}))
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for c in candidates:
        params = {
            k: (
                float(c.config[k])
                if isinstance(distributions[k], FloatDistribution)
                else str(c.config.get(k, UNUSED))
            )
            for k in varied
        }
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=c.mean))
    return study, varied, fixed, confounded


def importance(
    sweep_dir: str, *, metric: str | None = None, evaluator: str = "fanova", seed: int = 0
) -> Importance:
    """Each varied hyperparameter's share of ``metric``'s variance over the sweep's configurations.

    Raises:
        FileNotFoundError: no results under ``sweep_dir``.
        ValueError: an unknown evaluator, a PBT sweep, fewer than 3
            configurations, or scikit-learn missing for ``fanova``.
    """
    import optuna

    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {', '.join(EVALUATORS)}, got {evaluator!r}")
    ranking = rank(read_results(sweep_dir), metric=metric)
    if ranking.population:
        raise ValueError(
            "a PBT sweep changes each member's hyperparameters as it trains: its starting configurations "
            "do not explain its results; `lrtune best` shows the schedule the best member learned"
        )
    candidates = [c for c in ranking.ranked if math.isfinite(c.mean)]
    if len(candidates) < 3:
        raise ValueError(
            f"{len(candidates)} configurations with a {ranking.metric} to compare: too few to say which "
            "hyperparameters matter (at least 3, and 5 per hyperparameter varied to say it with any confidence)"
        )
    means = [c.mean for c in candidates]
    mean_of = sum(means) / len(means)
    config_std = math.sqrt(sum((m - mean_of) ** 2 for m in means) / (len(means) - 1))
    if config_std == 0:
        raise ValueError(
            f"every one of the {len(candidates)} configurations has {ranking.metric} {mean_of:.4g}: "
            "no variance for the hyperparameters to explain"
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = _space(sweep_dir)
    study, varied, fixed, confounded = _study(candidates, ranking.mode, space)
    if not varied:
        raise ValueError(
            "every configuration has the same hyperparameters: nothing varies to explain the metric"
        )
    if evaluator == "fanova":
        try:
            import sklearn  # noqa: F401 - fANOVA's random forest
        except ImportError:
            raise ValueError(
                "--evaluator fanova needs scikit-learn: pip install 'lrtune[importance]', "
                "or use --evaluator ped-anova"
            ) from None
        judge = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    else:
        judge = optuna.importance.PedAnovaImportanceEvaluator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        shares = optuna.importance.get_param_importances(
            study, evaluator=judge, params=varied, normalize=True
        )
    stds = [c.std for c in candidates if math.isfinite(c.std)]
    n, needed = len(candidates), max(ENOUGH_MIN, ENOUGH_PER_PARAM * len(varied))
    caveat = (
        None
        if n >= needed
        else f"only {n} configurations for {len(varied)} varied hyperparameters (about {needed} needed): "
        "too few to say which matters; read these shares as a guess"
    )
    seed_std = sum(stds) / len(stds) if stds else math.nan
    if math.isfinite(seed_std) and seed_std >= config_std / 2:
        noise = (
            f"the seeds' noise (std {seed_std:.3g} within a configuration) is not well below the spread "
            f"of the configurations' means ({config_std:.3g}): the shares may be splitting noise"
        )
        caveat = noise if caveat is None else f"{caveat}; {noise}"
    return Importance(
        metric=ranking.metric,
        evaluator=evaluator,
        shares=dict(shares),
        fixed=tuple(fixed),
        confounded={k: tuple(v) for k, v in confounded.items() if v},
        configurations=n,
        seed_std=seed_std,
        config_std=config_std,
        caveat=caveat,
    )


def format_importance(result: Importance) -> str:
    """The shares as text, largest first, with the caveat and the seeds' noise."""
    evaluator = {"fanova": "fANOVA", "ped-anova": "PED-ANOVA"}[result.evaluator]
    lines = [
        f"share of {result.metric}'s variance over {result.configurations} configurations "
        f"(final epoch, mean over seeds; {evaluator}, Optuna)"
    ]
    width = max(len(k) for k in result.shares)
    for key, share in result.shares.items():
        also = result.confounded.get(key, ())
        also_text = f"  (with {', '.join(also)}: they vary together)" if also else ""
        lines.append(f"  {key:<{width}}  {share:6.1%}  {'#' * round(share * 40)}{also_text}")
    if result.fixed:
        lines.append(f"fixed over the sweep (no variance to explain): {', '.join(result.fixed)}")
    noise = (
        f"seed noise: std {result.seed_std:.4g} within a configuration, "
        if math.isfinite(result.seed_std)
        else "seed noise: unknown (one seed per configuration), "
    )
    lines.append(noise + f"std {result.config_std:.4g} between configurations' means")
    if result.caveat:
        lines.append(f"caveat: {result.caveat}")
    return "\n".join(lines) + "\n"


def figure_importance(result: Importance):
    """A horizontal bar per hyperparameter, its share of the variance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.shares)[::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.4), layout="constrained")
    ax.barh(names, [result.shares[n] for n in names], color="#2563eb")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of {result.metric}'s variance ({result.evaluator})")
    title = f"{result.configurations} configurations"
    if result.caveat:
        title += " (too few to say; a guess)"
    ax.set_title(title, fontsize=10)
    return fig
