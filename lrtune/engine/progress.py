"""The live view of a running sweep, a Ray Tune callback drawn with rich.

One screen instead of Ray's log flood: trials running / done / stopped
early / diverged / errored, the leading trials by their best epoch so far
(per trial, not the pick: :func:`trial_progress_table`), and a progress bar over
the sweep's epoch budget (epochs that early stopping skipped count as
settled, so the bar reaches its end when the sweep does). At the end
``lrtune sweep`` prints :func:`ranking_table`: the configurations as
``lrtune best`` ranks them.

A redraw looks at every trial, so with thousands of trials it is kept to
at most ``REDRAW_SHARE`` of the driver's time: a redraw that took 0.1 s
waits 2 s for the next. The trials' rows come from the sink, which builds
a row again only for a trial that changed.
"""

from __future__ import annotations

import heapq
import math
import time
from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from lrtune.engine.sink import ParquetSink
    from lrtune.results.choice import Ranking
    from lrtune.spec import SweepSpec

__all__ = ["LiveView", "ranking_table", "trial_progress_table"]

#: The live view's title: it ranks single trials by their best epoch, which is not how a configuration is picked.
LIVE_TITLE = "best epoch so far, per trial (the pick: `lrtune best`, mean over seeds at the final epoch)"

_ORDER = ("running", "pending", "done", "stopped_early", "diverged", "error")
#: Most of the driver's time that redrawing the view may take.
REDRAW_SHARE = 0.05


class LiveView(Callback):
    """Draw the sweep's state at most every ``refresh_seconds`` (and ``REDRAW_SHARE``)."""

    def __init__(
        self,
        spec: SweepSpec,
        sweep_dir: str,
        *,
        sink: ParquetSink,
        quiet: bool = False,
        console: Console | None = None,
        refresh_seconds: float = 0.5,
        trials: int | None = None,
    ):
        self.spec = spec
        self.sweep_dir = sweep_dir
        self.sink = sink
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self.refresh_seconds = refresh_seconds
        self.total_trials = trials if trials is not None else spec.trial_count()
        self.trials: list[Any] = []
        self._live: Live | None = None
        self._last = 0.0
        self._next = -math.inf  # monotonic time of the next redraw
        self._progress = Progress(
            TextColumn("[bold]epochs"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._task = self._progress.add_task("epochs", total=self.total_trials * spec.epochs)

    def __reduce__(self):
        # Tune pickles its callbacks into tuner.pkl; a view holds a terminal.
        return (_unpickled_view, ())

    def __enter__(self) -> LiveView:
        if not self.quiet:
            self._live = Live(self.render(), console=self.console, auto_refresh=False, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.stop()
            self._live = None

    def on_step_end(self, iteration, trials, **info):
        self.trials = trials
        now = time.monotonic()
        if self._live is not None and now >= self._next:
            self._last = now
            self._live.update(self.render(), refresh=True)
            cost = time.monotonic() - now
            self._next = now + max(self.refresh_seconds, cost / REDRAW_SHARE)

    def on_experiment_end(self, trials, **info):
        self.trials = trials

    def render(self):
        rows = self.sink.trial_rows(self.trials)
        counts = dict.fromkeys(_ORDER, 0)
        for row in rows:
            counts[row["status"]] += 1
        budget = max(len(rows), self.total_trials) * self.spec.epochs
        # Epochs that early stopping, divergence or an error skipped count as settled.
        settled = sum(
            r["epochs_run"] if r["status"] in ("running", "pending") else self.spec.epochs for r in rows
        )
        self._progress.update(self._task, total=budget, completed=settled)
        line = "  ".join(
            f"{name.replace('_', ' ')} [bold]{n}[/]"
            for name, n in counts.items()
            if n or name in ("running", "done")
        )
        return Group(
            f"[bold]{self.spec.name}[/]  {line}",
            self._progress,
            trial_progress_table(
                rows, self.spec.metric, self.spec.metric_mode, top=3, title=LIVE_TITLE, repeats=True
            ),
        )


def _unpickled_view():
    return Callback()


def trial_progress_table(
    rows: list[dict[str, Any]],
    metric: str,
    mode: str,
    *,
    top: int = 5,
    title: str = LIVE_TITLE,
    repeats: bool = False,
) -> Table:
    """The ``top`` single trials by their best ``metric`` so far, from ``trials.parquet``-shaped rows.

    Progress, not the pick: a trial's best epoch flatters it, and one seed
    is not its configuration (:func:`ranking_table` is the pick).
    """
    from lrtune.results.tables import describe

    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in ("trial", "family", f"best {metric}", "epoch", "status", "config"):
        table.add_column(column)
    # The same order as sorted(...)[:top] (ties keep the rows' order), in O(rows).
    pick = heapq.nlargest if mode == "max" else heapq.nsmallest
    scored = pick(top, (r for r in rows if r["best_metric"] is not None), key=lambda r: r["best_metric"])
    for r in scored:
        config = describe(r) + (f", repeat={r['repeat']}" if repeats and r["repeat"] is not None else "")
        table.add_row(
            r["trial_id"],
            r["family"],
            f"{r['best_metric']:.4f}",
            str(r["best_epoch"]),
            r["status"].replace("_", " "),
            config,
        )
    return table


def ranking_table(ranking: Ranking, *, top: int = 5) -> Table:
    """The ``top`` configurations of ``ranking`` (:func:`lrtune.results.choice.rank`), best first.

    Mean over seeds, runs in the mean, the verdict of Welch's t-test against
    the best and the settings: ``lrtune best``'s ranking, so the first row
    is its pick. Under PBT the final population's members.
    """
    from lrtune.results.choice_text import ranking_heading, short_config, vs_best

    table = Table(title=ranking_heading(ranking), title_justify="left", show_edge=False, pad_edge=False)
    first = "member" if ranking.population else "#"
    value = ranking.metric if ranking.population else f"mean {ranking.metric}"
    for column in (first, "family", value, "n", "vs best", "config"):
        table.add_column(column)
    for i, c in enumerate(ranking.ranked[:top]):
        table.add_row(
            c.trial_ids[0] if ranking.population else str(i + 1),
            c.family,
            f"{c.mean:.4f}" if c.n == 1 else f"{c.mean:.4f} ± {c.std:.4f}",
            str(c.n),
            "best" if i == 0 else vs_best(c),
            short_config(c),
        )
    return table
