"""What else shows a sweep's rows: TensorBoard, MLflow, W&B, fed by the Parquet sink.

The sink (:class:`lrtune.engine.sink.ParquetSink`) is the only component
that knows which rows are kept, so it is the one that tells the views: a
row once it is in Parquet, a withdrawal once the files no longer hold the
withdrawn rows, a trial's start and its end. No view guesses from Tune's
raw results, so no view can disagree with the rows. :class:`RowView` is the
interface; :func:`views_for` builds those a sweep asks for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["RowView", "views_for", "VIEW_METRICS"]

#: The per-epoch numbers every view shows, as the Parquet rows name them.
VIEW_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss", "lr", "epoch_seconds", "images_per_second")


class RowView:
    """A view of the kept rows. Every method may be called from the driver's Tune loop: none may block long.

    The order of calls is the order of what happened to the rows: after
    ``rows_withdrawn(trial, epochs)`` the same epochs may come again in
    ``rows_kept``, and the later row is the kept one.
    """

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        """Tune started (or restarted) the trial with ``config`` (its Tune config)."""

    def rows_kept(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """These rows are in Parquet now (``METRICS_SCHEMA`` rows, several trials mixed)."""

    def rows_withdrawn(self, trial_id: str, epochs: Sequence[int]) -> None:
        """These epochs of the trial are no longer in Parquet (a restore or PBT rewrote them)."""

    def trial_ended(self, trial_id: str, status: str) -> None:
        """The trial is over: ``done``, ``stopped_early``, ``diverged`` or ``error``."""

    def resync(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """A resumed sweep: ``rows`` are every row Parquet holds; show exactly these."""

    def sweep_ended(self, pick: Mapping[str, Any] | None) -> None:
        """The sweep is over; ``pick`` is what ``lrtune best`` chooses (None: nothing to choose)."""

    def close(self, timeout_s: float = 30.0) -> list[str]:
        """Finish writing (waiting at most ``timeout_s``); return what could not be shown, one line each."""
        return []


def views_for(spec, sweep_dir: str, epochs: int) -> list[RowView]:
    """TensorBoard always (local sweep folders), and the trackers ``spec.trackers`` names."""
    from lrtune.engine.views.tensorboard import TensorBoardView
    from lrtune.engine.views.trackers import MlflowRuns, WandbRuns

    views: list[RowView] = []
    if "://" not in sweep_dir or sweep_dir.startswith("file://"):
        views.append(TensorBoardView(sweep_dir.removeprefix("file://"), spec))
    trackers = spec.trackers
    if trackers is not None and trackers.mlflow is not None:
        views.append(MlflowRuns(spec, trackers.mlflow))
    if trackers is not None and trackers.wandb is not None:
        views.append(WandbRuns(spec, trackers.wandb, sweep_dir))
    return views
