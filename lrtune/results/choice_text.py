"""A :class:`~lrtune.results.choice.Choice` and a :class:`~lrtune.results.choice.Ranking` as text.

:func:`format_choice` writes ``lrtune best``'s output: a YAML fragment to
paste into a sweep file (the numbers, the test and the note as comments),
or JSON. :func:`ranking_lines` writes the ranking that ``lrtune results``
prints, :func:`vs_best` the verdict column of the final table of
``lrtune sweep``, and :func:`unranked` what both say instead of ranking
when no trial has run every epoch.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml

from lrtune.results import stats
from lrtune.results.choice import Candidate, Choice, Ranking, counted, plural
from lrtune.results.lineage import LearnedSchedule, Segment
from lrtune.results.tables import describe
from lrtune.results.trials import METRIC_RANGE

__all__ = ["format_choice", "ranking_heading", "ranking_lines", "short_config", "unranked", "vs_best"]


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
    return f"95% CI of the mean [{c.ci_low:.4f}, {c.ci_high:.4f}] (Student's t, seed spread pooled over the configurations, within {_range(metric)})"


def _prediction(c: Candidate) -> str:
    """The prediction interval's comment line: where a rerun's mean lands."""
    if math.isnan(c.pi_low):
        return "95% prediction interval for a rerun's mean: none (one run: spread unknown)"
    return (
        f"95% prediction interval for a rerun's mean over {c.n} new seeds [{c.pi_low:.4f}, {c.pi_high:.4f}] "
        "(where the next sweep's mean lands; the CI bounds the true mean)"
    )


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _verdict(c: Candidate) -> str:
    """``p=0.241`` or why there is no p-value; runs left out of the mean after it."""
    cmp = c.comparison
    text = _p(cmp.p_value) if cmp is not None and cmp.p_value is not None else (cmp.reason if cmp else "")
    if c.left_out:
        runs = sum(c.left_out.values())
        text += f"; +{runs} run{'s' if runs != 1 else ''} not in mean ({counted(c.left_out)})"
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
        "prediction_interval": None if math.isnan(c.pi_low) else [c.pi_low, c.pi_high],
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
    ``prediction_interval`` (for a rerun's mean over ``n`` seeds; null for one run),
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
        f"# {_prediction(best)}",
        f"# trials: {', '.join(best.trial_ids)}"
        + (f" (+ not in mean: {counted(best.left_out)})" if best.left_out else ""),
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
            f"# significantly worse than the best: {plural(len(worse), 'configuration')} "
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


# --- a ranking ------------------------------------------------------------------


def short_config(c: Candidate) -> str:
    """``lr=0.05, momentum=0.9, drop=0.5``: a candidate's settings worth showing, as :func:`describe` writes them."""
    return describe({f"config.{k}": v for k, v in c.config.items()})


def vs_best(c: Candidate) -> str:
    """A configuration against the best, in a few words; empty for the best and for PBT members.

    ``worse, p=0.003`` (significantly worse by the Welch's t-test),
    ``within noise, p=0.241``, or ``within noise (one run: spread
    unknown)`` when the test cannot run: the words of ``lrtune best``.
    """
    cmp = c.comparison
    if cmp is None:
        return ""
    if cmp.p_value is None:
        return f"within noise ({cmp.reason})"
    return f"{'worse' if cmp.significant else 'within noise'}, {_p(cmp.p_value)}"


def unranked(ranking: Ranking) -> str | None:
    """What to print instead of the ranking when no trial has run every epoch; None otherwise.

    ``lrtune best`` then compares the unfinished trials at their last
    epoch and says that is unfair; a summary says plainly that there is
    nothing comparable to rank.
    """
    if not ranking.fallback:
        return None
    who = "member" if ranking.population else "trial"
    return (
        f"no ranking: no {who} has run every epoch ({counted(ranking.counts)}), so none is comparable at its "
        f"final epoch; `lrtune best` compares them at their last epoch, which is not a fair comparison"
    )


def ranking_heading(ranking: Ranking) -> str:
    """One line saying what the ranking compares, as ``lrtune best`` does."""
    if ranking.population:
        return (
            f"final population ranked as `lrtune best` ranks it: {ranking.metric} ({ranking.mode}) at each "
            f"member's final epoch, {plural(len(ranking.compared), 'member')}"
        )
    test = f"; {stats.TEST} vs the best, alpha {ranking.test.alpha:g} each" if ranking.test else ""
    return (
        f"configurations ranked as `lrtune best` ranks them: mean {ranking.metric} ({ranking.mode}) over "
        f"seeds at each trial's {ranking.at} epoch, {plural(len(ranking.ranked), 'configuration')} from "
        f"{plural(len(ranking.compared), 'trial')}{test}"
    )


def ranking_lines(ranking: Ranking, *, per_family: bool = True, top: int = 5) -> list[str]:
    """The ranking as text lines, best first: the heading, then one line per configuration.

    With ``per_family`` the best configuration of each family, families in
    the order of their best; else the ``top`` configurations. The first
    line after the heading is the configuration ``lrtune best`` picks.
    PBT: the ``top`` members of the final population. When no trial has run
    every epoch, the one line of :func:`unranked` instead.
    """
    reason = unranked(ranking)
    if reason is not None:
        return [reason]
    if ranking.population:
        shown = ranking.ranked[:top]
        return [ranking_heading(ranking)] + [
            f"  {c.trial_ids[0]}  {c.family}  {c.mean:.4f}  {short_config(c)}" for c in shown
        ]
    if per_family:
        firsts: dict[str, Candidate] = {}
        for c in ranking.ranked:
            firsts.setdefault(c.family, c)
        shown = list(firsts.values())
        heading = ranking_heading(ranking) + "; the best of each family:"
    else:
        shown = list(ranking.ranked[:top])
        heading = ranking_heading(ranking) + ":"
    family_width = max(len(c.family) for c in shown)
    spread_width = max(len(_spread(c)) for c in shown)
    verdicts = ["best", *(vs_best(c) for c in shown[1:])]
    verdict_width = max(len(v) for v in verdicts)
    return [heading] + [
        f"  {c.family:<{family_width}}  {_spread(c):<{spread_width}}  {v:<{verdict_width}}  {short_config(c)}"
        for c, v in zip(shown, verdicts, strict=True)
    ]
