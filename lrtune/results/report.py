"""A sweep's report: figures (PNG) and one self-contained HTML page.

:func:`write_report` reads what has landed so far (a running sweep is
fine) and draws, each only where it applies (otherwise the page says why):

1. the learning rate applied at each epoch, per schedule family (log y);
2. training and validation loss and accuracy per epoch of each family's
   best configuration, mean over repeats with the min-max range shaded;
3. the sweep metric of each family's best configuration side by side,
   mean ± std over repeats with each repeat as a dot (the seed article's
   comparison figure);
4. for the step family, the metric over initial ``lr`` x ``drop`` (one
   panel per ``epochs_drop``; continuous values binned);
5. early stopping: epochs run against a full run of every trial;
6. a table of every trial, errors included.

A PBT sweep gets first the rate (and momentum) each member trained with,
epoch by epoch, with its exploits marked and the winner in bold
(:func:`figure_population`); its pick is the winner's learned schedule.

The page starts with :func:`lrtune.results.best.choose`'s pick. Figures are drawn
with Matplotlib's object API (no pyplot, no display, no global state) and
embedded in the HTML as base64 PNG; the PNG files are written beside it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lrtune.results.choice import Candidate, Choice, choose_from
from lrtune.results.choice_text import format_choice
from lrtune.results.tables import describe
from lrtune.results.trials import SweepResults, Trial, family_order, read_results

__all__ = ["ReportFiles", "write_report"]

#: Axis labels, with units.
LABELS = {
    "val_accuracy": "validation accuracy (fraction correct)",
    "accuracy": "training accuracy (fraction correct)",
    "val_loss": "validation loss (cross-entropy)",
    "loss": "training loss (cross-entropy)",
    "lr": "learning rate applied",
}

STATUS_COLORS = {
    "done": "#4c9a2a",
    "stopped_early": "#3b75af",
    "running": "#e69f00",
    "pending": "#b0b0b0",
    "diverged": "#d62728",
    "error": "#7f1d1d",
}


@dataclasses.dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote: the HTML page and the PNG figures."""

    html: str
    pngs: list[str]


def write_report(sweep_dir: str, output: str | None = None, *, figures_dir: str | None = None) -> ReportFiles:
    """Write the report of the sweep at ``sweep_dir`` (path or URI).

    Args:
        sweep_dir: ``<storage>/<sweep name>``.
        output: the HTML file; default ``<sweep_dir>/report/report.html``.
            Required (a local path) when ``sweep_dir`` is a URI.
        figures_dir: where the PNG files go; default beside ``output``.

    Returns:
        :class:`ReportFiles` with the HTML path and the PNGs written.

    Raises:
        FileNotFoundError: no ``metrics/`` under ``sweep_dir``.
        ValueError: no epoch recorded yet, or a URI without ``output``.
    """
    if output is None:
        if "://" in sweep_dir:
            raise ValueError(
                f"{sweep_dir} is a URI: give a local file for the report, e.g. --output report.html"
            )
        output = str(Path(sweep_dir) / "report" / "report.html")
    sweep = read_results(sweep_dir)
    out = Path(output)
    figures = Path(figures_dir) if figures_dir is not None else out.parent
    out.parent.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)

    picks, unpicked = _family_picks(sweep)
    colors = _colors(sweep.families())
    sections: list[tuple[str, str, Callable[[], object]]] = []
    exploits = _recorded_exploits(sweep_dir) if sweep.pbt else None
    if sweep.pbt:
        sections.append(
            ("pbt", "PBT: the rate each member trained with", lambda: figure_population(sweep, exploits))
        )
    sections += [
        ("lr", "Learning rate by epoch", lambda: figure_lr(sweep, colors)),
        ("curves", "Loss and accuracy by epoch", lambda: figure_curves(sweep, picks, colors)),
        ("families", f"{sweep.metric} by family", lambda: figure_families(sweep, picks, colors)),
        ("step_heatmap", "Step decay: lr x drop", lambda: figure_step_heatmap(sweep)),
        ("early_stopping", "Early stopping", lambda: figure_early_stopping(sweep)),
        ("importance", "Which hyperparameters matter", lambda: _importance_figure(sweep_dir)),
    ]
    pngs, blocks = [], []
    for slug, title, draw in sections:
        drawn = draw()
        if isinstance(drawn, str):
            blocks.append(
                f"<h2>{html.escape(title)}</h2>\n<p class='skipped'>Skipped: {html.escape(drawn)}</p>"
            )
            continue
        path = figures / f"{slug}.png"
        drawn.savefig(path, dpi=100)
        pngs.append(str(path))
        data = base64.b64encode(path.read_bytes()).decode()
        blocks.append(
            f"<h2>{html.escape(title)}</h2>\n<img src='data:image/png;base64,{data}' "
            f"alt='{html.escape(title)}'>"
            + (
                _population_caption(sweep, exploits)
                if slug == "pbt"
                else _importance_caption(drawn)
                if slug == "importance"
                else _caption(slug, picks, unpicked)
            )
        )
    out.write_text(_page(sweep, blocks), encoding="utf-8")
    return ReportFiles(html=str(out), pngs=pngs)


def _importance_figure(sweep_dir: str):
    """The shares of :func:`lrtune.results.importance.importance` as a figure, or why there are none."""
    from lrtune.results.importance import figure_importance, format_importance, importance

    try:
        result = importance(sweep_dir)
    except ValueError as e:
        return str(e)
    fig = figure_importance(result)
    fig.lrtune_text = format_importance(result)  # the caption: the shares, the noise, the caveat
    return fig


def _importance_caption(fig) -> str:
    return f"<pre>{html.escape(getattr(fig, 'lrtune_text', ''))}</pre>"


# --- shared pieces ------------------------------------------------------------


def _family_picks(sweep: SweepResults) -> tuple[dict[str, Candidate], dict[str, str]]:
    """Each family's best configuration, and why a family has none."""
    picks, unpicked = {}, {}
    for fam in sweep.families():
        try:
            picks[fam] = choose_from(sweep, family=fam).best
        except ValueError as e:
            unpicked[fam] = str(e).split(": ", 1)[-1]
    return picks, unpicked


def _colors(families: Sequence[str]) -> dict[str, str]:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return {fam: palette[i % len(palette)] for i, fam in enumerate(families)}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _short(config: dict) -> str:
    return describe({f"config.{k}": v for k, v in config.items()})


def _by_id(sweep: SweepResults) -> dict[str, Trial]:
    return {t.trial_id: t for t in sweep.trials}


def _eligible(sweep: SweepResults) -> list[Trial]:
    """The trials :func:`~lrtune.results.best.choose` compares: done, else the unfinished."""
    done = [t for t in sweep.trials if t.status == "done"]
    return done or [t for t in sweep.trials if t.status in ("stopped_early", "running")]


def _longest(sweep: SweepResults) -> int:
    return max((t.epochs_run for t in sweep.trials), default=0)


# --- 1. learning rate -----------------------------------------------------------


def _log_axis(ax, low: float, high: float) -> None:
    """A log y axis for rates from ``low`` to ``high``, labelled in plain numbers within a decade."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

    ax.set_yscale("log")
    if high < 10 * low:
        # Within a decade a log axis has no major tick, and Matplotlib labels the minor ones
        # 4.95x10^-2 (or, for a flat line, crowds them): a few plain numbers read better.
        ax.set_ylim(low / 1.25, high * 1.25)
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.yaxis.set_minor_locator(NullLocator())


def figure_lr(sweep: SweepResults, colors: dict[str, str]):
    """LR applied at each epoch, one panel per family, one line per trial."""
    from matplotlib.ticker import MaxNLocator

    trials = [
        t for t in sweep.trials if np.any(np.isfinite(t.curves.get("lr", [])) & (t.curves.get("lr", 0) > 0))
    ]
    if not trials:
        return "no trial has recorded a positive learning rate"
    if _longest(sweep) < 2:
        return "only one epoch recorded so far: no curve to draw"
    families = [f for f in sweep.families() if any(t.family == f for t in trials)]
    ncols = min(4, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig = _figure(3.3 * ncols + 0.4, 2.6 * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    last = _longest(sweep)
    for ax, fam in zip(axes.flat, families, strict=False):
        members = [t for t in trials if t.family == fam]
        low, high = math.inf, 0.0
        for t in members:
            lr = t.curves["lr"]
            ok = np.isfinite(lr) & (lr > 0)
            diverged = t.status == "diverged"
            ax.plot(
                t.epochs[ok],
                lr[ok],
                color=colors[fam],
                alpha=0.7,
                lw=1.3,
                ls="--" if diverged else "-",
                marker="x" if diverged else None,
                markevery=[-1] if diverged else None,
            )
            low, high = min(low, lr[ok].min()), max(high, lr[ok].max())
        _log_axis(ax, low, high)
        ax.set_xlim(1, last)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{fam} ({len(members)} trial{'s' if len(members) != 1 else ''})", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(LABELS["lr"])
        ax.grid(alpha=0.3, which="both")
    for ax in axes.flat[len(families) :]:
        ax.set_visible(False)
    dashed = "; dashed, ending in x: diverged" if any(t.status == "diverged" for t in trials) else ""
    fig.suptitle(f"Learning rate applied at the end of each epoch, per family (log scale{dashed})")
    return fig


# --- PBT: the population -----------------------------------------------------------


def exploit_epochs(trial: Trial) -> list[int]:
    """Epochs whose ``trained_by`` differs from the epoch before: a trial took over a copy there.

    The epoch returned is the first one trained after the copy, so its
    ``config.*`` values are the perturbed ones. The rows hold the history
    of the model the trial ended with, so these are the exploits on its
    lineage: its own last one (``trained_by`` turns to the trial itself)
    and its donors' before it.

    >>> t = Trial("b", "done", "constant", {}, epochs=np.arange(1, 6), trained_by=("a", "a", "b", "b", "b"))
    >>> exploit_epochs(t)
    [3]
    """
    return [
        int(trial.epochs[i])
        for i in range(1, len(trial.trained_by))
        if trial.trained_by[i] != trial.trained_by[i - 1]
    ]


def _recorded_exploits(sweep_dir: str) -> int | None:
    """How many exploits ``exploits.parquet`` records; None where the sweep has none."""
    import pyarrow.parquet as pq

    from lrtune.folder import SweepFolder

    folder = SweepFolder(sweep_dir)
    try:
        return pq.read_metadata(folder.exploits_path, filesystem=folder.fs).num_rows
    except FileNotFoundError:
        return None


def _status(t: Trial) -> str:
    return t.status.replace("_", " ")


def _winner(sweep: SweepResults) -> str | None:
    try:
        learned = choose_from(sweep).learned
    except ValueError:
        return None
    return learned.trial_id if learned is not None else None


def _exploits_drawn(trials: Sequence[Trial]) -> set[tuple[str, int]]:
    """(trial that copied, first epoch after) of each exploit on the members' rows, each once.

    A donor's exploit shows in every member descended from it: counted once.
    """
    return {
        (t.trained_by[int(np.flatnonzero(t.epochs == e)[0])], e) for t in trials for e in exploit_epochs(t)
    }


def _population_caption(sweep: SweepResults, recorded: int | None) -> str:
    """Under the PBT figure: the winner, and the exploits drawn and recorded."""
    drawn = _exploits_drawn(sweep.trials)
    winner = _winner(sweep)
    parts = [f"Winner (bold): {winner}." if winner else "No winner yet."]
    parts.append(
        f"{len(drawn)} exploit{'s' if len(drawn) != 1 else ''} drawn: epochs where trained_by changes "
        "along a member's rows (its own last copy and its donors' before it)."
    )
    if recorded is not None:
        parts.append(
            f"exploits.parquet records {recorded}; those not drawn were on models later replaced by another copy."
        )
    return f"<p class='caption'>{html.escape(' '.join(parts))}</p>"


def figure_population(sweep: SweepResults, recorded: int | None = None):
    """Each member's ``config.lr`` (and momentum) per epoch, exploits marked, the winner bold.

    The values are those in effect in each epoch of the model the member
    ended with, its donors' epochs included; an exploit marker sits on the
    first epoch trained after a copy. ``recorded``: the exploits
    ``exploits.parquet`` counts, said in the title beside those drawn.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    members = [
        t for t in sweep.trials if len(t.epochs) and any(v is not None for v in t.hparams.get("lr", ()))
    ]
    if not members:
        return "no member has recorded an epoch with a learning rate yet"
    winner = _winner(sweep)
    keys = ["lr"] + [
        k
        for k in ("momentum",)
        if len({v for t in members for v in t.hparams.get(k, ()) if v is not None}) > 1
    ]
    fig = _figure(10, 3.6 * len(keys) + 1.2)
    axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    for i, t in enumerate(sorted(members, key=lambda t: t.trial_id == winner)):
        best = t.trial_id == winner
        color = "black" if best else palette[i % len(palette)]
        marks = exploit_epochs(t)
        for ax, key in zip(axes, keys, strict=True):
            values = np.array([np.nan if v is None else v for v in t.hparams[key]], dtype=float)
            ax.plot(
                t.epochs,
                values,
                drawstyle="steps-mid",
                color=color,
                lw=2.6 if best else 1.2,
                alpha=1.0 if best else 0.75,
                zorder=3 if best else 2,
                label=t.trial_id
                + (" (winner)" if best else "")
                + (f" ({_status(t)})" if t.status != "done" else ""),
            )
            at = np.isin(t.epochs, marks)
            ax.scatter(t.epochs[at], values[at], marker="v", s=70, color=color, edgecolor="black", zorder=4)
    for ax, key in zip(axes, keys, strict=True):
        if key == "lr":
            rates = [v for t in members for v in t.hparams["lr"] if v is not None and v > 0]
            _log_axis(ax, min(rates), max(rates))
        ax.set_ylabel("learning rate in effect (config.lr)" if key == "lr" else "momentum in effect")
        ax.grid(alpha=0.3, which="both")
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], marker="v", ls="", color="grey", markersize=8))
    labels.append("exploit: first epoch after a copy (trained_by changes)")
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=8)
    drawn = len(_exploits_drawn(members))
    counted = "" if recorded is None else f"; exploits.parquet records {recorded}"
    fig.suptitle(
        f"PBT: each member's model epoch by epoch, the value in effect (its donors' epochs included)\n"
        f"{drawn} exploit{'s' if drawn != 1 else ''} on the surviving lineages{counted}",
        fontsize=11,
    )
    return fig


# --- 2. curves ------------------------------------------------------------------


def _stack(trials: Sequence[Trial], name: str, epochs: int) -> np.ndarray:
    """(trials, epochs) of ``name``, NaN where a trial has no value."""
    out = np.full((len(trials), epochs), np.nan)
    for i, t in enumerate(trials):
        out[i, t.epochs - 1] = t.curves[name]
    return out


def figure_curves(sweep: SweepResults, picks: dict[str, Candidate], colors: dict[str, str]):
    """Loss and accuracy (training, validation) of each family's best configuration."""
    from matplotlib.ticker import MaxNLocator

    if not picks:
        return "no family has a trial to show yet"
    if _longest(sweep) < 2:
        return "only one epoch recorded so far: no curve to draw"
    by_id = _by_id(sweep)
    fig = _figure(11, 7.6)
    axes = fig.subplots(2, 2)
    panels = [
        ("loss", "training loss"),
        ("val_loss", "validation loss"),
        ("accuracy", "training accuracy"),
        ("val_accuracy", "validation accuracy"),
    ]
    for ax, (name, title) in zip(axes.flat, panels, strict=True):
        for fam, pick in picks.items():
            members = [by_id[i] for i in pick.trial_ids]
            epochs = max(t.epochs_run for t in members)
            values = _stack(members, name, epochs)
            seen = np.isfinite(values).any(axis=0)
            x = np.arange(1, epochs + 1)[seen]
            values = values[:, seen]
            label = f"{fam}: {_short(pick.config)} (n={pick.n})"
            ax.plot(x, np.nanmean(values, axis=0), color=colors[fam], lw=1.6, label=label)
            if pick.n > 1:
                ax.fill_between(
                    x,
                    np.nanmin(values, axis=0),
                    np.nanmax(values, axis=0),
                    color=colors[fam],
                    alpha=0.18,
                    lw=0,
                )
        ax.set_title(title, fontsize=11)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(LABELS[name])
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2 if len(labels) > 3 else 1, fontsize=8.5)
    fig.suptitle("Each family's best configuration: mean over repeats, min-max over repeats shaded")
    return fig


# --- 3. families side by side ---------------------------------------------------


def figure_families(sweep: SweepResults, picks: dict[str, Candidate], colors: dict[str, str]):
    """The sweep metric of each family's best configuration: mean ± std, each repeat a dot."""
    if not picks:
        return "no family has a trial to compare yet"
    sign = -1 if sweep.mode == "max" else 1
    order = sorted(picks, key=lambda f: sign * picks[f].mean)
    fig = _figure(max(7.5, 1.1 * len(order) + 2.5), 4.8)
    ax = fig.subplots()
    x = np.arange(len(order))
    means = [picks[f].mean for f in order]
    stds = [0.0 if math.isnan(picks[f].std) else picks[f].std for f in order]
    by_id = _by_id(sweep)
    # A family none of whose trials finished is compared at its last epoch: hatch it, say so.
    unfinished = {
        f: max(by_id[i].epochs_run for i in picks[f].trial_ids)
        for f in order
        if any(by_id[i].status != "done" for i in picks[f].trial_ids)
    }
    bars = ax.bar(
        x,
        means,
        yerr=stds,
        capsize=5,
        color=[colors[f] for f in order],
        alpha=0.8,
        width=0.65,
        error_kw={"elinewidth": 1.2},
    )
    top = 0.0
    for i, f in enumerate(order):
        values = np.array(picks[f].values)
        offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(i + offsets, values, s=16, color="black", zorder=3)
        high = max(values.max(), means[i] + stds[i])
        label = f"n={picks[f].n}"
        if f in unfinished:
            bars[i].set_hatch("//")
            label += f"\nnot finished:\n≤ {unfinished[f]} epochs"
        ax.annotate(
            label,
            (i, high),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
        )
        top = max(top, high)
    ax.set_xticks(x, order, rotation=30 if len(order) > 6 else 0, ha="right" if len(order) > 6 else "center")
    ax.set_ylim(0, top * (1.3 if unfinished else 1.12) if top > 0 else 1)
    ax.set_xlabel("schedule family (SGD) or adaptive optimizer")
    ax.set_ylabel(f"final {LABELS[sweep.metric]}")
    ax.grid(axis="y", alpha=0.3)
    better = "higher" if sweep.mode == "max" else "lower"
    ax.set_title(
        f"Final {sweep.metric} of each family's best configuration ({better} is better)\n"
        "bar: mean over repeats; error bar: ± sample std; dots: one repeat each",
        fontsize=11,
    )
    return fig


# --- 4. step decay heat map --------------------------------------------------------


def _categories(
    values: Sequence[float], *, log: bool, max_distinct: int, bins: int
) -> tuple[list[str], np.ndarray]:
    """Labels and the index of each value: its own row when few, else a bin.

    >>> _categories([0.1, 0.01, 0.1], log=True, max_distinct=4, bins=3)
    (['0.01', '0.1'], array([1, 0, 1]))
    >>> _categories([1, 2, 3, 4, 5], log=False, max_distinct=4, bins=2)[0]
    ['1-3', '3-5']
    """
    values = np.asarray(values, dtype=float)
    distinct = np.unique(values)
    if len(distinct) <= max_distinct:
        return [f"{v:g}" for v in distinct], np.searchsorted(distinct, values)
    edges = (np.geomspace if log else np.linspace)(distinct[0], distinct[-1], bins + 1)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    return [f"{lo:.3g}-{hi:.3g}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)], index


def figure_step_heatmap(sweep: SweepResults):
    """Mean final metric over initial lr x drop, one panel per epochs_drop."""
    if not any(t.family == "step" for t in sweep.trials):
        return "this sweep has no step-decay family (SGD with schedule: step)"
    scored = [(t, t.value(sweep.metric, sweep.mode, "final")) for t in _eligible(sweep) if t.family == "step"]
    scored = [(t, v) for t, v in scored if math.isfinite(v)]
    if not scored:
        return f"no step-decay trial has a final {sweep.metric} to compare yet"
    lr_labels, lr_index = _categories([t.config["lr"] for t, _ in scored], log=True, max_distinct=8, bins=6)
    drop_labels, drop_index = _categories(
        [t.config["drop"] for t, _ in scored], log=False, max_distinct=8, bins=5
    )
    period_labels, period_index = _categories(
        [t.config["epochs_drop"] for t, _ in scored], log=False, max_distinct=4, bins=3
    )
    values = np.array([v for _, v in scored])
    grids = []
    for p in range(len(period_labels)):
        total = np.zeros((len(lr_labels), len(drop_labels)))
        count = np.zeros_like(total)
        for v, i, j, k in zip(values, lr_index, drop_index, period_index, strict=True):
            if k == p:
                total[i, j] += v
                count[i, j] += 1
        with np.errstate(invalid="ignore"):
            grids.append((np.where(count > 0, total / np.maximum(count, 1), np.nan), count))
    if all(not (c > 0).any() for _, c in grids):
        return "no step-decay trial to place on the grid"
    from matplotlib import colormaps

    cmap = colormaps["viridis" if sweep.mode == "max" else "viridis_r"].with_extremes(bad="#eeeeee")
    panel = min(max(3.2, 1.05 * len(drop_labels) + 1.4), 14 / len(period_labels))
    fig = _figure(panel * len(period_labels) + 2.2, max(3.6, 0.55 * len(lr_labels) + 2.2))
    axes = fig.subplots(1, len(period_labels), squeeze=False)[0]
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    for ax, label, (grid, count) in zip(axes, period_labels, grids, strict=True):
        image = ax.imshow(
            np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap=cmap, vmin=low, vmax=high
        )
        for (i, j), v in np.ndenumerate(grid):
            if count[i, j]:
                shade = (v - low) / (high - low) if high > low else 0.5
                dark = shade < 0.5 if sweep.mode == "max" else shade > 0.5
                ax.text(
                    j,
                    i,
                    f"{v:.3f}\nn={int(count[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
        long = max(len(label) for label in drop_labels) > 6
        ax.set_xticks(
            range(len(drop_labels)), drop_labels, rotation=30 if long else 0, ha="right" if long else "center"
        )
        ax.set_yticks(range(len(lr_labels)), lr_labels)
        ax.set_xlabel("drop (lr multiplier per period)")
        ax.set_ylabel("initial learning rate")
        ax.set_title(f"epochs_drop = {label} epochs", fontsize=10)
    better = "higher" if sweep.mode == "max" else "lower"
    fig.colorbar(image, ax=list(axes), label=f"final {sweep.metric} ({better} is better)", shrink=0.9)
    fig.suptitle(
        f"Step decay: final {sweep.metric}\nmean over the trials in each cell (grey: none finished)",
        fontsize=11,
    )
    return fig


# --- 5. early stopping -----------------------------------------------------------


def figure_early_stopping(sweep: SweepResults):
    """Epochs run, by status, against every trial running all its epochs."""
    if sweep.epochs is None:
        return "no sweep.yaml: the epochs each trial was meant to run are unknown"
    if sweep.epochs < 2:
        return "each trial runs one epoch: there is nothing to stop early"
    trials = sweep.trials
    budget = len(trials) * sweep.epochs
    run_by_status: dict[str, int] = {}
    for t in trials:
        run_by_status[t.status] = run_by_status.get(t.status, 0) + min(t.epochs_run, sweep.epochs)
    ran = sum(run_by_status.values())

    def unrun(*statuses: str) -> int:
        return sum(sweep.epochs - min(t.epochs_run, sweep.epochs) for t in trials if t.status in statuses)

    stopped, cut, to_go = unrun("stopped_early"), unrun("diverged", "error"), unrun("running", "pending")
    fig = _figure(10, 4.2)
    ax = fig.subplots()
    ax.barh(1, budget, color="#9e9e9e", height=0.55)
    ax.annotate(
        f"{budget} = {len(trials)} trials x {sweep.epochs} epochs",
        (budget, 1),
        xytext=(6, 0),
        textcoords="offset points",
        va="center",
        fontsize=9,
    )
    left = 0
    for status, color in STATUS_COLORS.items():
        n = run_by_status.get(status, 0)
        if not n:
            continue
        count = sum(t.status == status for t in trials)
        ax.barh(
            0,
            n,
            left=left,
            color=color,
            height=0.55,
            label=f"{status.replace('_', ' ')}: {count} trial{'s' if count != 1 else ''}, {n} epochs",
        )
        left += n
    ax.annotate(
        f"{ran} run: {100 * (budget - ran) / budget:.0f}% fewer",
        (ran, 0),
        xytext=(6, 0),
        textcoords="offset points",
        va="center",
        fontsize=9,
        fontweight="bold",
    )
    ax.set_yticks([0, 1], ["epochs run", "every trial\nto the end"])
    ax.set_xlim(0, budget * 1.4)
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlabel("trial-epochs (epochs summed over trials)")
    fig.legend(
        loc="outside lower center", ncols=3, fontsize=8, title="epochs run, by trial status", title_fontsize=8
    )
    ax.grid(axis="x", alpha=0.3)
    title = f"Early stopping saved {stopped} epochs ({100 * stopped / budget:.0f}% of the budget)"
    if cut:
        title += f"; diverged or failed trials ended {cut} epochs early"
    if to_go:
        title += f"\nsweep still running: {to_go} epochs of running or pending trials not run yet"
    ax.set_title(title, fontsize=11)
    return fig


# --- the page ------------------------------------------------------------------------


def _caption(slug: str, picks: dict[str, Candidate], unpicked: dict[str, str]) -> str:
    """Under the curves and families figures: each family's pick, and the families left out."""
    if slug in ("curves", "families"):
        shown = picks if slug == "families" else {}
        items = "".join(
            f"<li><b>{html.escape(f)}</b>: {html.escape(_short(c.config))}, "
            f"{c.mean:.4f} ± {'n/a' if math.isnan(c.std) else f'{c.std:.4f}'} (n={c.n})</li>"
            for f, c in shown.items()
        )
        missing = "".join(
            f"<li><b>{html.escape(f)}</b>: not shown ({html.escape(why)})</li>" for f, why in unpicked.items()
        )
        return f"<ul class='caption'>{items}{missing}</ul>" if items or missing else ""
    return ""


def _fmt(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _trial_table(sweep: SweepResults) -> str:
    metric, mode = sweep.metric, sweep.mode
    head = (
        "<tr><th>trial</th><th>family</th><th>status</th><th>repeat</th><th>epochs run</th>"
        f"<th>best {metric} (epoch)</th><th>final {metric}</th><th>configuration</th><th>error</th></tr>"
    )
    rows = []
    statuses = list(STATUS_COLORS)

    def order(t: Trial) -> tuple:
        rank = statuses.index(t.status) if t.status in statuses else len(statuses)
        return family_order(t.family), rank, str(t.key), t.repeat or 0, t.trial_id

    for t in sorted(sweep.trials, key=order):
        best = t.value(metric, mode, "best")
        best_epoch = ""
        if math.isfinite(best):
            curve = t.curves[metric]
            best_epoch = f" ({int(t.epochs[np.flatnonzero(curve == best)[0]])})"
        rows.append(
            f"<tr class='{t.status}'><td>{html.escape(t.trial_id)}</td><td>{html.escape(t.family)}</td>"
            f"<td>{html.escape(t.status.replace('_', ' '))}</td><td>{'' if t.repeat is None else t.repeat}</td>"
            f"<td>{t.epochs_run}</td><td>{_fmt(best)}{best_epoch}</td>"
            f"<td>{_fmt(t.value(metric, mode, 'final'))}</td><td>{html.escape(_short(dict(t.config)))}</td>"
            f"<td>{html.escape(t.error or '')}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _best_block(sweep: SweepResults) -> str:
    try:
        choice: Choice = choose_from(sweep)
    except ValueError as e:
        return f"<p class='skipped'>No pick: {html.escape(str(e))}</p>"
    return f"<pre>{html.escape(format_choice(choice))}</pre>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
img { max-width: 100%; border: 1px solid #ddd; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
table { border-collapse: collapse; font-size: 0.8em; width: 100%; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.diverged td, tr.error td { background: #fde8e8; }
tr.stopped_early td { color: #555; }
.skipped { color: #8a5a00; font-style: italic; }
.caption { font-size: 0.85em; }
"""


def _page(sweep: SweepResults, blocks: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for t in sweep.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    status = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(counts.items()))
    epochs = (
        f"{sweep.epochs} epochs per trial" if sweep.epochs else "epochs per trial unknown (no sweep.yaml)"
    )
    lag = (
        ""
        if sweep.trials_file
        else "<p class='skipped'>No trials.parquet yet: statuses come from the last epoch recorded in metrics/.</p>"
    )
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>lrtune report: {html.escape(sweep.name)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>Sweep {html.escape(sweep.name)}</h1>
<p>{html.escape(sweep.sweep_dir)}; metric {html.escape(sweep.metric)} ({sweep.mode}); {epochs};
{len(sweep.trials)} trials: {html.escape(status)}. Written {now}.</p>
{lag}
<h2>Best configuration</h2>
{_best_block(sweep)}
{chr(10).join(blocks)}
<h2>All trials</h2>
{_trial_table(sweep)}
</body></html>
"""
