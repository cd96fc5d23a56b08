"""Reading a learning-rate range test: its table, the suggested rates, the ``space:`` fragment, the figure.

``lrtune find`` writes ``<storage>/<name>/lr_range/``, a Parquet dataset
with one row per (trial, ramp length, step), schema :data:`LR_RANGE_SCHEMA`;
``lrtune results DIR --sql`` reads it as the table ``lr_range``. A trial
whose curve could not be read ran again on a longer ramp
(:func:`lrtune.training.lr_range.run_range_test`); the suggestions and the
figure read each trial's last ramp (:func:`last_ramps`).

Two suggestions per curve (:func:`lrtune.training.lr_range.suggest`, which
lives with the trial that reads its own curve; re-exported here), as fastai's ``lr_find``
defines them (``fastai/callback/schedule.py``, ``steep`` and ``minimum``),
both read off the smoothed loss after dropping its first tenth and last
five steps (fastai's ``lr_find`` slices ``[num_it//10:-5]``; Lightning's
``suggestion`` skips 10 and 1):

- ``steepest``: the rate where the smoothed loss falls fastest against
  ``log(lr)``, ``lr[argmin_i (s[i+1] - s[i]) / (log lr[i+1] - log lr[i])]``
  (fastai's ``steep``; Lightning's default suggestion is the same point
  with the gradient taken against the step, which is proportional to
  ``log(lr)`` on an exponential ramp), with ``i`` before the minimum of
  ``s`` (lrtune's restriction: past the minimum, the fall back from a
  spike can be steeper than any descent);
- ``minimum_tenth``: the rate at the minimum of the smoothed loss divided
  by 10 (fastai's ``minimum``: "one-tenth the minimum before divergence").

A curve whose smoothed loss falls less than :data:`NOISE_SIGMAS` times its
own noise gives no range (:attr:`ArmSuggestions.flat`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from lrtune.results.tables import CONFIG_COLUMNS
from lrtune.training.lr_range import NOISE_SIGMAS, SKIP_END, Suggestion, readable, suggest
from lrtune.training.optimizers import DEFAULTS as OPTIMIZER_DEFAULTS

__all__ = [
    "LR_RANGE_SCHEMA",
    "NOISE_SIGMAS",
    "SKIP_END",
    "Suggestion",
    "ArmSuggestions",
    "load_lr_range",
    "last_ramps",
    "ramp_lengths",
    "readable",
    "suggest",
    "suggest_arms",
    "lr_bounds",
    "space_fragment",
    "figure_lr_range",
    "write_lr_range_report",
]

#: Optimizer settings stored with each row as ``config.<name>``, typed as in a sweep's metrics.
#: Every optimizer's settings but ``lr`` (:data:`lrtune.training.optimizers.DEFAULTS`), in the table's order.
SETTING_COLUMNS: dict[str, pa.DataType] = {
    k: t for k, t in CONFIG_COLUMNS.items() if k != "lr" and any(k in d for d in OPTIMIZER_DEFAULTS.values())
}

#: One row per (trial, ramp length, step). ``length``: the steps of the ramp the row is on
#: (a trial whose curve could not be read ran again on a longer one; null in a test
#: written before ramps were lengthened). ``arm``: the label of the optimizer configuration
#: (``sgd momentum=0.5``); ``lr``: the rate that step applied; ``loss``: that
#: step's batch loss; ``smoothed_loss``: :class:`lrtune.training.lr_range.SmoothedLoss`;
#: ``status``: ``running``, or on a ramp's last row ``done``, ``diverged`` or
#: ``lengthened`` (unreadable: a longer ramp follows).
LR_RANGE_SCHEMA = pa.schema(
    [
        pa.field("sweep", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("length", pa.int32()),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("lr", pa.float64()),
        pa.field("loss", pa.float64()),
        pa.field("smoothed_loss", pa.float64()),
        pa.field("status", pa.string()),
        pa.field("arm", pa.string()),
        pa.field("optimizer", pa.string()),
        pa.field("repeat", pa.int32()),
        pa.field("seed", pa.int64()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("node", pa.string()),
        *[pa.field(f"config.{k}", t) for k, t in SETTING_COLUMNS.items()],
    ]
)


def load_lr_range(sweep_dir: str) -> pa.Table:
    """Every (trial, ramp length, step) row of the range test at ``sweep_dir``, sorted, duplicates dropped.

    Every ramp's rows, the lengthened ones too; :func:`last_ramps` keeps each trial's last.

    Raises:
        FileNotFoundError: no ``lr_range/`` under ``sweep_dir``.
    """
    import pyarrow.dataset as ds

    from lrtune.folder import SweepFolder

    folder = SweepFolder(sweep_dir)
    fs_, path = folder.fs, folder.lr_range_path
    if not folder.exists(path):
        raise FileNotFoundError(
            f"{sweep_dir}: no lr_range/ dataset here; expected the folder of an `lrtune find`"
        )
    table = ds.dataset(path, filesystem=fs_, schema=LR_RANGE_SCHEMA, format="parquet").to_table()
    table = table.sort_by([("trial_id", "ascending"), ("length", "ascending"), ("step", "ascending")])
    # A reader that catches a compaction between its new file and the old ones going sees rows twice.
    keep = np.ones(table.num_rows, dtype=bool)
    ids, steps = table["trial_id"].to_numpy(zero_copy_only=False), table["step"].to_numpy()
    lengths = _lengths(table)
    keep[1:] = (ids[1:] != ids[:-1]) | (lengths[1:] != lengths[:-1]) | (steps[1:] != steps[:-1])
    return table.filter(pa.array(keep)) if not keep.all() else table


def _lengths(table: pa.Table) -> np.ndarray:
    """The ``length`` column as integers, 0 where null (a test written before ramps were lengthened)."""
    import pyarrow.compute as pc

    if "length" not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int64)
    return pc.fill_null(table["length"], 0).to_numpy(zero_copy_only=False)


def ramp_lengths(table: pa.Table) -> dict[str, tuple[int, ...]]:
    """``{trial_id: the lengths of its ramps, in order}``; the last is the one read."""
    out: dict[str, list[int]] = {}
    for trial_id, length in zip(table["trial_id"].to_pylist(), _lengths(table).tolist(), strict=True):
        seen = out.setdefault(trial_id, [])
        if not seen or seen[-1] != length:
            seen.append(length)
    return {k: tuple(v) for k, v in out.items()}


def last_ramps(table: pa.Table) -> pa.Table:
    """The rows of each trial's last (longest) ramp: the curve its suggestions are read from."""
    if table.num_rows == 0:
        return table
    last = {t: lengths[-1] for t, lengths in ramp_lengths(table).items()}
    ids, lengths = table["trial_id"].to_pylist(), _lengths(table).tolist()
    keep = [length == last[t] for t, length in zip(ids, lengths, strict=True)]
    return table if all(keep) else table.filter(pa.array(keep))


@dataclasses.dataclass(frozen=True)
class ArmSuggestions:
    """One optimizer configuration's suggestions over its repeats, and the range derived from them.

    ``ramps``: per repeat, the lengths (steps) of the ramps it ran; the last is the one read.
    """

    arm: str
    trial_ids: tuple[str, ...]
    repeats: tuple[Suggestion, ...]
    low: float
    high: float
    ramps: tuple[tuple[int, ...], ...] = ()

    @property
    def flat(self) -> bool:
        """No repeat's smoothed loss fell :data:`NOISE_SIGMAS` times its noise below its start: no range found."""
        return not any(readable(s) for s in self.repeats)

    def spread(self, name: str) -> tuple[float, float, float]:
        """``(geometric mean, min, max)`` of suggestion ``name`` over the repeats."""
        values = np.array([getattr(s, name) for s in self.repeats])
        return float(np.exp(np.log(values).mean())), float(values.min()), float(values.max())


def lr_bounds(suggestions: Sequence[Suggestion]) -> tuple[float, float]:
    """The ``loguniform`` range for a sweep from one arm's suggestions (all repeats).

    ``[low, high]`` spans every ``steepest`` and ``minimum_tenth``; if that
    is less than a decade it is widened to one decade around its geometric
    middle, so a search has room; ``high`` is then capped at the smallest
    rate of a loss minimum (Smith 2017, 3.3: the upper bound is where the
    loss stops falling), with ``low`` at most a decade below it. Values are
    rounded to 3 significant digits.

    >>> lr_bounds([Suggestion(0.01, 0.05, 0.5, False, 100)])
    (0.00707, 0.0707)
    """
    if not suggestions:
        raise ValueError("lr_bounds needs at least one suggestion")
    points = [v for s in suggestions for v in (s.steepest, s.minimum_tenth)]
    low, high = min(points), max(points)
    if high < 10 * low:
        middle = math.sqrt(low * high)
        low, high = middle / math.sqrt(10), middle * math.sqrt(10)
    ceiling = min(s.lr_at_minimum for s in suggestions)
    if high > ceiling:
        high = ceiling
        low = min(low, high / 10)
    return float(f"{low:.3g}"), float(f"{high:.3g}")


def suggest_arms(table: pa.Table) -> list[ArmSuggestions]:
    """Per arm (in the order the table first names them), every trial's :func:`suggest` and :func:`lr_bounds`.

    Each trial's curve is its last ramp (:func:`last_ramps`). Trials whose
    curve has fewer than 2 usable steps are left out.
    """
    ramps = ramp_lengths(table)
    table = last_ramps(table)
    rows: dict[str, dict[str, list]] = {}
    arm_of: dict[str, str] = {}
    for r in table.select(["trial_id", "arm", "lr", "loss", "smoothed_loss"]).to_pylist():
        curve = rows.setdefault(r["trial_id"], {"lr": [], "s": [], "raw": []})
        curve["lr"].append(r["lr"])
        curve["s"].append(r["smoothed_loss"])
        curve["raw"].append(r["loss"])
        arm_of[r["trial_id"]] = r["arm"]
    last_status = {}
    for r in table.select(["trial_id", "status"]).to_pylist():
        last_status[r["trial_id"]] = r["status"]
    arms: dict[str, list[tuple[str, Suggestion]]] = {}
    for trial_id, curve in rows.items():
        try:
            s = suggest(curve["lr"], curve["s"], curve["raw"])
        except ValueError:
            continue
        s = dataclasses.replace(s, diverged=last_status[trial_id] == "diverged")
        arms.setdefault(arm_of[trial_id], []).append((trial_id, s))
    out = []
    for arm, found in arms.items():
        found.sort()
        low, high = lr_bounds([s for _, s in found])
        out.append(
            ArmSuggestions(
                arm=arm,
                trial_ids=tuple(t for t, _ in found),
                repeats=tuple(s for _, s in found),
                low=low,
                high=high,
                ramps=tuple(ramps[t] for t, _ in found),
            )
        )
    return out


class _FlowLists(yaml.SafeDumper):
    """Safe YAML, every mapping on one line: ``{optimizer: sgd, lr: {loguniform: [0.001, 0.1]}}``."""


def space_fragment(space: Sequence[Mapping[str, Any]], ranges: Mapping[int, tuple[float, float]]) -> str:
    """The sweep file's ``space:`` with each tested arm's ``lr`` as ``{loguniform: [low, high]}``.

    ``space``: the arms as a sweep file writes them (``SweepSpec.to_yaml_dict()["space"]``);
    ``ranges``: arm index -> ``(low, high)``. Arms without a range stay as they were,
    with a comment saying why: their schedule takes no ``lr`` (``one_cycle``,
    ``piecewise``), their optimizer is left out of the test
    (``schedule_free_adamw``), or their test failed or its loss did not fall. The result passes ``lrtune validate``.

    >>> print(space_fragment([{"optimizer": "adam", "lr": 0.001}], {0: (1e-4, 0.01)}), end="")
    space:
      - {optimizer: adam, lr: {loguniform: [0.0001, 0.01]}}
    """
    lines = ["space:"]
    for index, arm in enumerate(space):
        arm = dict(arm)
        note = ""
        if index in ranges:
            low, high = ranges[index]
            arm["lr"] = {"loguniform": [low, high]}
            arm = {k: arm[k] for k in ("optimizer", "schedule", "lr") if k in arm} | arm
        elif arm.get("optimizer") == "schedule_free_adamw":
            note = "  # unchanged: schedule_free_adamw is left out of the range test (docs/find.md)"
        elif "lr" not in arm:
            note = "  # unchanged: its schedule sets its own rates (no lr); left out of the range test"
        else:
            note = "  # unchanged: the range test found no range for this arm"
        text = yaml.dump(
            arm, Dumper=_FlowLists, default_flow_style=True, sort_keys=False, width=10_000
        ).strip()
        lines.append(f"  - {text}{note}")
    return "\n".join(lines) + "\n"


# --- the figure and the page ----------------------------------------------------


def figure_lr_range(table: pa.Table, arms: Sequence[ArmSuggestions]):
    """Smoothed loss against lr (log axis), one panel per arm, one curve per repeat, suggestions marked.

    The raw batch losses are drawn faintly behind; the y axis stops at 1.5x
    the highest smoothed loss of the first tenth of the steps, so a
    diverging tail does not flatten the rest.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    columns = min(3, max(1, len(arms)))
    rows_ = math.ceil(len(arms) / columns)
    fig = Figure(figsize=(4.2 * columns, 3.2 * rows_), layout="constrained")
    axes = fig.subplots(rows_, columns, squeeze=False).ravel()
    palette = colormaps["tab10"].colors
    data = table.select(["trial_id", "lr", "loss", "smoothed_loss"]).to_pydict()
    by_trial: dict[str, list[int]] = {}
    for i, t in enumerate(data["trial_id"]):
        by_trial.setdefault(t, []).append(i)
    for ax, arm in zip(axes, arms, strict=False):
        top = []
        for r, (trial_id, s) in enumerate(zip(arm.trial_ids, arm.repeats, strict=True)):
            idx = by_trial[trial_id]
            lr = np.array([data["lr"][i] for i in idx])
            raw = np.array([data["loss"][i] for i in idx], dtype=float)
            smooth = np.array([data["smoothed_loss"][i] for i in idx], dtype=float)
            color = palette[r % len(palette)]
            ax.plot(lr, raw, color=color, alpha=0.2, linewidth=0.8)
            ax.plot(
                lr,
                smooth,
                color=color,
                linewidth=1.5,
                label=f"repeat {r}" + (" (diverged)" if s.diverged else ""),
            )
            for value, marker in ((s.steepest, "v"), (s.minimum_tenth, "o")):
                ax.plot(value, np.interp(np.log(value), np.log(lr), smooth), marker, color=color, markersize=7,
                        markeredgecolor="black")  # fmt: skip
            head = smooth[: max(1, len(smooth) // 10)]
            top.append(np.nanmax(head[np.isfinite(head)]) if np.isfinite(head).any() else np.nan)
        finite = [t for t in top if np.isfinite(t)]
        lows = [min(s.smoothed_minimum for s in arm.repeats)]
        if finite:
            high, low = 1.5 * max(finite), min(lows)
            ax.set_ylim(max(0.0, low - 0.1 * (high - low)), high)
        ax.axvspan(arm.low, arm.high, color="0.85", zorder=0, label=f"range [{arm.low:g}, {arm.high:g}]")
        ax.set_xscale("log")
        ax.set_title(arm.arm + (" (no descent: no range)" if arm.flat else ""), fontsize=10)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (smoothed)")
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes[len(arms) :]:
        ax.set_visible(False)
    fig.suptitle("LR range test: ▼ steepest descent, ● minimum / 10", fontsize=11)
    return fig


@dataclasses.dataclass(frozen=True)
class RangeReportFiles:
    html: str
    png: str


def write_lr_range_report(
    sweep_dir: str, arms: Sequence[ArmSuggestions], fragment: str, table: pa.Table, *, title: str
) -> RangeReportFiles:
    """Write ``<sweep_dir>/lr_range.png`` and a self-contained ``lr_range.html`` (the PNG embedded).

    ``sweep_dir`` must be a local folder (on a URI the figure is skipped by the caller).
    """
    folder = Path(sweep_dir)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / "lr_range.png"
    figure_lr_range(table, arms).savefig(png, dpi=100)
    data = base64.b64encode(png.read_bytes()).decode()
    rows = "\n".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            html.escape(a.arm),
            len(a.repeats),
            _spread_text(a, "steepest"),
            _spread_text(a, "minimum_tenth"),
            "none (the loss did not fall)" if a.flat else f"[{a.low:g}, {a.high:g}]",
        )
        for a in arms
    )
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>lrtune find: {html.escape(title)}</title>
<style>body {{ font-family: sans-serif; max-width: 1300px; margin: 1em auto; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
img {{ max-width: 100%; }} pre {{ background: #f4f4f4; padding: 0.5em; }}</style></head>
<body>
<h1>LR range test {html.escape(title)}</h1>
<p>{html.escape(sweep_dir)}. Written {now}. Suggestions as fastai's <code>lr_find</code> defines them:
the rate of steepest descent of the smoothed loss, and the rate of its minimum divided by 10;
with repeats, their geometric mean [min, max].</p>
<table><tr><th>arm</th><th>repeats</th><th>steepest</th><th>minimum / 10</th><th>range</th></tr>
{rows}
</table>
<h2>Loss against learning rate</h2>
<img src='data:image/png;base64,{data}' alt='loss against learning rate'>
<h2>For the sweep file</h2>
<pre>{html.escape(fragment)}</pre>
</body></html>
"""
    out = folder / "lr_range.html"
    out.write_text(page, encoding="utf-8")
    return RangeReportFiles(html=str(out), png=str(png))


def _steps_text(arm: ArmSuggestions) -> str:
    """The length of the ramps read, ``800`` or ``400-1600`` when repeats differ."""
    last = sorted({r[-1] for r in arm.ramps if r})
    if not last:
        return "?"
    return f"{last[0]}" if len(last) == 1 else f"{last[0]}-{last[-1]}"


def _spread_text(arm: ArmSuggestions, name: str) -> str:
    mean, low, high = arm.spread(name)
    return f"{mean:.3g}" if len(arm.repeats) == 1 else f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def format_suggestions(outcome) -> str:
    """``lrtune find``'s output: the suggestions as comment lines, then the ``space:`` fragment.

    ``outcome``: a :class:`lrtune.engine.find.FindOutcome`. Every line but
    the fragment starts with ``#``, so the whole output pastes into a sweep file.
    """
    width = max([len(a.arm) for a in outcome.arms] + [3])
    ramps = list(outcome.ramps) or [0]
    lines = [
        f"# lr range test: {len(outcome.arms)} optimizer configurations in {outcome.seconds:.0f} s; "
        "steepest descent of the smoothed loss and its minimum / 10 (fastai's lr_find), "
        + (
            "geometric mean [min, max] over repeats"
            if any(len(a.repeats) > 1 for a in outcome.arms)
            else "one run each"
        ),
        (
            f"# ramps: {ramps[0]} steps first; a curve that cannot be read (its smoothed loss fell less than "
            f"{NOISE_SIGMAS:g} times its noise) runs again twice as long, up to {ramps[-1]} steps "
            f"({outcome.max_steps_why})"
            if len(ramps) > 1
            else f"# ramps: {ramps[0]} steps, not lengthened (--max-steps {ramps[0]})"
        ),
        f"# {'arm':<{width}}  {'steps':<11}  {'steepest':<26}  {'minimum / 10':<26}  range for the sweep",
    ]
    for a in outcome.arms:
        diverged = sum(s.diverged for s in a.repeats)
        found = "none" if a.flat else f"[{a.low:g}, {a.high:g}]"
        lines.append(
            f"# {a.arm:<{width}}  {_steps_text(a):<11}  {_spread_text(a, 'steepest'):<26}  "
            f"{_spread_text(a, 'minimum_tenth'):<26}  {found}  "
            f"({diverged}/{len(a.repeats)} diverged before the last step)"
        )
    for a in outcome.arms:
        if a.flat:
            most = max(a.repeats, key=lambda s: s.fall / s.noise if s.noise > 0 else 0.0)
            lines.append(
                f"# no range for {a.arm}: its smoothed loss fell {most.fall:.3g} below its start, "
                f"{most.fall / most.noise:.1f} times its noise ({most.noise:.2g}; a range needs "
                f"{NOISE_SIGMAS:g}) on the longest ramp, {ramps[-1]} steps; the test learned too little "
                "to read one: give a longer --max-steps, or check the arm trains at all"
            )
    for trial_id, error in list(outcome.errors.items())[:5]:
        lines.append(f"# error {trial_id}: {error}")
    where = (
        f"{outcome.sweep_dir}/lr_range (Parquet, `lrtune results {outcome.sweep_dir} --sql` table lr_range)"
    )
    lines.append(f"# rows: {where}")
    if outcome.html:
        lines.append(f"# figure: {outcome.png}, {outcome.html}")
    return "\n".join(lines) + "\n" + outcome.fragment
