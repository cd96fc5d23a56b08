"""How often ``lrtune best``'s statistical claims hold, measured on real training.

``lrtune best`` states, per configuration, a 95% confidence interval of the
mean and a 95% prediction interval for a rerun's mean, and says "clear
winner" only when every other configuration is significantly worse
(:mod:`lrtune.results.stats`). Nobody had measured how often these hold on
real runs, whose noise need not be normal. This benchmark does, on two
sweeps, each run once with ``R * n`` repeats and cut into ``R`` disjoint
groups of ``n`` seeds (group ``g`` holds repeats ``g*n .. g*n + n - 1``;
repeat ``r`` of a configuration trains with its own seed): each group is
the sweep a user with ``n`` seeds would have run, and the groups are
independent reruns of it.

- **distinct**: configurations that differ (the seed article's optimizers at
  their article rates). Per group ``g`` and configuration ``c``:
  (a) whether ``c``'s 95% CI from ``g`` holds ``c``'s mean pooled over the
  other groups (a stand-in for the true mean: it has its own noise, of
  ``(R - 1) * n`` seeds); (b) for every other group ``h``, whether ``c``'s
  95% prediction interval from ``g`` holds ``c``'s mean in ``h`` (what a
  user reads an interval as: "if I run this again, where will it land?"),
  and, for comparison, whether the CI does; (c) when ``g`` names a clear
  winner, whether it has the best mean in each other group, on the whole
  sweep and on every sweep of 2 or more of its configurations (the same
  trials: :func:`subset_winners`).
- **identical**: ``k`` configurations that differ only by ``1e-9`` in ``lr``
  (identical training, up to seeds): (d) how often a group names a clear
  winner, on the whole sweep and on every sweep of 2 or more of them;
  nominal at most ``alpha`` (0.05).

Each figure comes with its count, and a 95% Wilson interval for the rate
(``scipy.stats.binomtest(...).proportion_ci(method="wilson")``), so a shortfall
can be told from the noise of a few dozen checks.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import common

#: The seed article's optimizers at its rates (sweeps/seed-article.yaml), constant schedules.
DISTINCT = [
    {"optimizer": "sgd", "schedule": "constant", "lr": 0.1, "momentum": 0.0},
    {"optimizer": "adagrad", "lr": 0.01},
    {"optimizer": "adadelta", "lr": 1.0},
    {"optimizer": "rmsprop", "lr": 0.001},
    {"optimizer": "adam", "lr": 0.001},
]


def identical(k: int) -> list[dict]:
    """``k`` configurations whose ``lr`` differs by 1e-9 (Adam at 0.001): the same training, k names."""
    return [{"optimizer": "adam", "lr": {"grid": [round(0.001 + i * 1e-9, 12) for i in range(k)]}}]


def groups_of(sweep, n: int) -> dict[int, list]:
    """The sweep's trials by group: repeat ``r`` is in group ``r // n``."""
    out: dict[int, list] = {}
    for trial in sweep.trials:
        out.setdefault(trial.repeat // n, []).append(trial)
    return dict(sorted(out.items()))


def group_choices(sweep, n: int) -> dict[int, object]:
    """``lrtune best``'s choice on each group alone: {group: Choice}."""
    from lrtune.results.choice import choose_from

    return {
        g: choose_from(dataclasses.replace(sweep, trials=tuple(trials)), top=100)
        for g, trials in groups_of(sweep, n).items()
    }


def subsweeps(sweep):
    """Every sweep of 2 or more of ``sweep``'s configurations, with their trials.

    A user's sweep of some of the configurations is the same trials (each
    repeat's seed depends on the repeat, not on the other arms), so every
    subset is a sweep that was run. Checks over them share trials across
    subsets and groups: they are not independent, and their Wilson interval
    overstates the precision.
    """
    import itertools

    keys = sorted({_key(t.config) for t in sweep.trials})
    for size in range(2, len(keys) + 1):
        for subset in itertools.combinations(keys, size):
            yield dataclasses.replace(
                sweep, trials=tuple(t for t in sweep.trials if _key(t.config) in subset)
            )


def subset_winners(sweep, n: int) -> list[bool]:
    """(c) over :func:`subsweeps`: for each subset and group naming a clear winner, is it the best in each other group?"""
    return [
        hit
        for part in subsweeps(sweep)
        for hit in coverage(group_choices(part, n))["clear_winner_stays_best"]
    ]


def false_winners(sweep, n: int) -> list[bool]:
    """(d): per group of ``sweep``, whether its choice names a clear winner."""
    return [c.test is not None and c.test.clear_winner for c in group_choices(sweep, n).values()]


def false_winners_unshared(sweep, n: int) -> list[bool]:
    """(d) with no seed shared between configurations: sweep ``g`` takes configuration ``i``'s trials of group ``g + i``.

    Within a sweep every arm runs on the same seeds (lrtune.training.trial.trial_seed),
    so identical configurations differ less from each other than from a rerun: this
    variant shows the rate where they share none (different ``num_samples``, or runs apart).
    """
    from lrtune.results.choice import choose_from

    keys = sorted({_key(t.config) for t in sweep.trials})
    groups = groups_of(sweep, n)
    out = []
    for g in groups:
        trials = [
            t for i, key in enumerate(keys) for t in groups[(g + i) % len(groups)] if _key(t.config) == key
        ]
        choice = choose_from(dataclasses.replace(sweep, trials=tuple(trials)), top=100)
        out.append(choice.test is not None and choice.test.clear_winner)
    return out


def candidates(choice) -> dict[tuple, object]:
    """{configuration key: Candidate} of one group's choice."""
    return {_key(c.config): c for c in choice.ranked}


def _key(config) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in config.items()))


def rate(hits: list[bool]) -> dict:
    """``{"rate", "count", "of", "wilson_95"}`` of a list of checks."""
    from scipy.stats import binomtest

    count, total = sum(hits), len(hits)
    if not total:
        return {"rate": math.nan, "count": 0, "of": 0, "wilson_95": [math.nan, math.nan]}
    interval = binomtest(count, total).proportion_ci(confidence_level=0.95, method="wilson")
    return {"rate": count / total, "count": count, "of": total, "wilson_95": [interval.low, interval.high]}


def coverage(choices: dict[int, object]) -> dict[str, list[bool]]:
    """Checks (a), (b) and (c) over every group of the distinct sweep."""
    per = {g: candidates(c) for g, c in choices.items()}
    ci_pooled, pi_next, ci_next, winner_stays = [], [], [], []
    for g, mine in per.items():
        others = [h for h in per if h != g]
        for key, c in mine.items():
            if math.isnan(c.ci_low):
                continue
            pooled = [v for h in others if key in per[h] for v in per[h][key].values]
            if pooled:
                mean = sum(pooled) / len(pooled)
                ci_pooled.append(c.ci_low <= mean <= c.ci_high)
            for h in others:
                if key in per[h]:
                    rerun = per[h][key].mean
                    pi_next.append(c.pi_low <= rerun <= c.pi_high)
                    ci_next.append(c.ci_low <= rerun <= c.ci_high)
        choice = choices[g]
        if choice.test is not None and choice.test.clear_winner:
            winner = _key(choice.best.config)
            for h in others:
                winner_stays.append(_key(choices[h].best.config) == winner)
    return {"ci_holds_pooled_mean": ci_pooled, "pi_holds_rerun_mean": pi_next, "ci_holds_rerun_mean": ci_next,
            "clear_winner_stays_best": winner_stays}  # fmt: skip


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument(
        "--groups", type=int, default=None, help="R: disjoint groups (reruns) of the distinct sweep"
    )
    p.add_argument("--identical-groups", type=int, default=None, help="groups of the identical sweep")
    p.add_argument("--seeds", type=int, default=None, help="n: seeds per group, as a user's repeats")
    p.add_argument("--identical", type=int, default=None, help="k: configurations in the identical sweep")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument(
        "--reuse",
        action="store_true",
        help="read the two sweeps already under --storage (a finished run) instead of running them",
    )
    p.add_argument(
        "--classes", default="cat,dog", help="CIFAR-10 classes (default: the article's cats and dogs)"
    )
    args = common.parse(
        p,
        full={"groups": 8, "identical_groups": 16, "seeds": 3, "identical": 4, "epochs": 6},
        quick={"groups": 2, "identical_groups": 2, "seeds": 2, "identical": 2, "epochs": 1},
    )
    from lrtune.engine.sweep import run_sweep
    from lrtune.results.trials import read_results

    classes = args.classes.split(",")
    sweeps = {
        "distinct": (DISTINCT, args.groups),
        "identical": (identical(args.identical), args.identical_groups),
    }
    results, seconds = {}, {}
    for name, (space, groups) in sweeps.items():
        spec = common.make_spec(
            f"calibration-{name}", space, epochs=args.epochs, repeats=groups * args.seeds, classes=classes
        )
        start = time.time()
        if args.reuse:
            if not args.storage:
                raise SystemExit("--reuse reads the sweeps of an earlier run: give its --storage")
            sweep_dir = str(Path(args.storage) / spec.name)
        else:
            outcome = run_sweep(
                spec, storage=args.storage, data=args.data, max_concurrent=args.cores, quiet=True
            )
            sweep_dir = outcome.sweep_dir
        seconds[name] = time.time() - start
        results[name] = read_results(sweep_dir)
        done = sum(t.status == "done" for t in results[name].trials)
        print(
            f"{name}: {len(results[name].trials)} trials ({done} done) in {seconds[name]:.0f} s", flush=True
        )

    distinct = group_choices(results["distinct"], args.seeds)
    checks = coverage(distinct)
    false_winner = false_winners(results["identical"], args.seeds)
    false_subsets = [w for part in subsweeps(results["identical"]) for w in false_winners(part, args.seeds)]
    checks["clear_winner_stays_best_subsets"] = subset_winners(results["distinct"], args.seeds)
    figures = {name: rate(hits) for name, hits in checks.items()}
    figures["false_clear_winner"] = rate(false_winner)
    figures["false_clear_winner_subsets"] = rate(false_subsets)
    figures["false_clear_winner_unshared"] = rate(false_winners_unshared(results["identical"], args.seeds))
    figures["false_clear_winner_unshared_subsets"] = rate(
        [w for part in subsweeps(results["identical"]) for w in false_winners_unshared(part, args.seeds)]
    )
    winners = [bool(c.test and c.test.clear_winner) for c in distinct.values()]

    print()
    print(
        f"{args.groups} + {args.identical_groups} disjoint groups of {args.seeds} seeds, {args.epochs} epochs, "
        f"classes {args.classes}; nominal: intervals 95%, false clear winner <= 5%"
    )
    labels = {
        "ci_holds_pooled_mean": "(a) 95% CI holds the mean pooled over the other groups",
        "pi_holds_rerun_mean": "(b) 95% prediction interval holds a rerun's mean",
        "ci_holds_rerun_mean": "    95% CI holds a rerun's mean (what it is not built for)",
        "clear_winner_stays_best": "(c) a clear winner is still the best in another group",
        "clear_winner_stays_best_subsets": "    (c) over every sweep of 2+ of the configurations",
        "false_clear_winner": "(d) a clear winner among identical configurations",
        "false_clear_winner_subsets": "    (d) over every sweep of 2+ of them",
        "false_clear_winner_unshared": "    (d) with no seed shared between the configurations",
        "false_clear_winner_unshared_subsets": "    (d) no seed shared, over every sweep of 2+",
    }
    common.table(
        ["check", "rate", "count", "Wilson 95%"],
        [
            [
                labels[k],
                f"{f['rate']:.3f}",
                f"{f['count']}/{f['of']}",
                "[{:.3f}, {:.3f}]".format(*f["wilson_95"]),
            ]
            for k, f in figures.items()
        ],
    )
    print(f"groups of the distinct sweep naming a clear winner: {sum(winners)}/{len(winners)}")
    spreads = {
        c.family: round(c.std, 4) for c in next(iter(distinct.values())).ranked if not math.isnan(c.std)
    }
    print(f"seed spread (sample std, group 0): {spreads}")
    common.emit(
        "calibration",
        args,
        groups=args.groups,
        identical_groups=args.identical_groups,
        seeds=args.seeds,
        identical=args.identical,
        epochs=args.epochs,
        classes=classes,
        seconds=seconds,
        distinct_clear_winners=sum(winners),
        **figures,
    )


if __name__ == "__main__":
    main()
