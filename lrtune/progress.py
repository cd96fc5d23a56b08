"""The live view of a running sweep, a Ray Tune callback drawn with rich.

One screen instead of Ray's log flood: trials running / done / stopped
early / diverged / errored, the best trial so far, and a progress bar over
the sweep's epoch budget (epochs that early stopping skipped count as
settled, so the bar reaches its end when the sweep does).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from lrtune.sink import ParquetSink
    from lrtune.spec import SweepSpec

__all__ = ["LiveView"]

_ORDER = ("running", "pending", "done", "stopped_early", "diverged", "error")


class LiveView(Callback):
    """Draw the sweep's state at most every ``refresh_seconds``."""

    def __init__(
        self,
        spec: SweepSpec,
        sweep_dir: str,
        *,
        sink: ParquetSink,
        quiet: bool = False,
        console: Console | None = None,
        refresh_seconds: float = 0.5,
    ):
        self.spec = spec
        self.sweep_dir = sweep_dir
        self.sink = sink
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self.refresh_seconds = refresh_seconds
        self.trials: list[Any] = []
        self._live: Live | None = None
        self._last = 0.0
        self._progress = Progress(
            TextColumn("[bold]epochs"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._task = self._progress.add_task("epochs", total=spec.trial_count() * spec.epochs)

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
        if self._live is not None and now - self._last >= self.refresh_seconds:
            self._last = now
            self._live.update(self.render(), refresh=True)

    def on_experiment_end(self, trials, **info):
        self.trials = trials

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(_ORDER, 0)
        for trial in self.trials:
            counts[self.sink.trial_status(trial)] += 1
        return counts

    def render(self):
        counts = self.counts()
        budget = max(len(self.trials), self.spec.trial_count()) * self.spec.epochs
        settled = 0
        for trial in self.trials:
            log = self.sink._logs.get(trial.trial_id)
            ran = max(log.epochs) if log and log.epochs else 0
            finished = self.sink.trial_status(trial) in ("done", "stopped_early", "diverged", "error")
            settled += self.spec.epochs if finished else ran
        self._progress.update(self._task, total=budget, completed=settled)
        line = "  ".join(
            f"{name.replace('_', ' ')} [bold]{n}[/]"
            for name, n in counts.items()
            if n or name in ("running", "done")
        )
        return Group(
            f"[bold]{self.spec.name}[/]  {line}",
            self._progress,
            best_table(
                self.sink, self.trials, self.spec.metric, self.spec.metric_mode, top=3, title="best so far"
            ),
        )


def _unpickled_view():
    return Callback()


def best_table(
    sink: ParquetSink, trials, metric: str, mode: str, *, top: int = 5, title: str = "best trials"
) -> Table:
    """The ``top`` trials by their best ``metric`` so far, as a rich table."""
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in ("trial", "family", f"best {metric}", "epoch", "status", "config"):
        table.add_column(column)
    scored = []
    for trial in trials:
        log = sink._logs.get(trial.trial_id)
        values = {e: m for e, m in (log.epochs.items() if log else []) if not math.isnan(m)}
        if not values:
            continue
        pick = max if mode == "max" else min
        epoch = pick(values, key=values.get)
        scored.append((values[epoch], epoch, trial))
    scored.sort(key=lambda s: s[0], reverse=mode == "max")
    from lrtune.results import config_columns, describe, family
    from lrtune.trial import trial_config

    for value, epoch, trial in scored[:top]:
        hyper = trial_config(trial.config)
        config = describe(config_columns(hyper))
        if "repeat" in hyper:
            config += f", repeat={hyper['repeat']}"
        table.add_row(
            trial.trial_id,
            family(hyper.get("optimizer"), hyper.get("schedule")),
            f"{value:.4f}",
            str(epoch),
            sink.trial_status(trial).replace("_", " "),
            config,
        )
    return table


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
