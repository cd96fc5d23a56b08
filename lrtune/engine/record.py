"""What a sweep's Parquet files record, as a resumed scheduler needs it.

Tune restores a trial scheduler on ``lrtune sweep --resume`` as it was
built, empty: the rungs, the medians, the brackets and the exploits it had
decided on are gone. The record of those decisions is the sweep's own:
every (trial, epoch) row in ``metrics/``, each trial's status in
``trials.parquet`` and every PBT exploit in ``exploits.parquet``. Each of
lrtune's schedulers takes a :class:`SweepRecord` in
``restore_decisions(record)`` and rebuilds its state from it as Tune adds
the restored trials.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["SweepRecord", "read_record"]


@dataclasses.dataclass(frozen=True)
class SweepRecord:
    """A sweep's rows, trial statuses and exploits.

    ``history``: ``{trial_id: {epoch: metric}}``, the metric as reported
    (not signed for ``mode``). ``status``: ``{trial_id: status}`` from
    ``trials.parquet`` (``done``, ``stopped_early``, ``diverged``,
    ``error``, ``running``, ``pending``). ``exploits``: the rows of
    ``exploits.parquet`` (``trial_id``, ``epoch``, ``donor_trial_id``,
    ``donor_epoch``). ``times``: ``{trial_id: {epoch: t}}``, when each
    row's epoch ended (POSIX seconds, the row's ``timestamp``): the order in
    which the driver got them.
    """

    history: Mapping[str, Mapping[int, float]] = dataclasses.field(default_factory=dict)
    status: Mapping[str, str] = dataclasses.field(default_factory=dict)
    exploits: tuple[Mapping[str, Any], ...] = ()
    times: Mapping[str, Mapping[int, float]] = dataclasses.field(default_factory=dict)

    def over(self, trial_id: str) -> bool:
        """Whether ``trials.parquet`` records the trial as ended (any way but an error)."""
        return self.status.get(trial_id) in ("done", "stopped_early", "diverged")


def read_record(sweep_dir: str, metric: str, *, with_states: bool = False) -> SweepRecord:
    """The :class:`SweepRecord` of the sweep at ``sweep_dir`` (every round's rows and trials).

    ``with_states``: also the epochs that only the newest saved state of an
    unfinished trial holds (rows a killed driver had not written yet; the
    trial replays them when it resumes, and the sink keeps them), with the
    time its epoch ended. A scheduler that compares trials as they arrive
    (``median``) needs them before the trials replay them.
    """
    import pyarrow.parquet as pq

    from lrtune.folder import SweepFolder
    from lrtune.results.tables import load, load_trials

    try:
        rows = load(sweep_dir).select(["trial_id", "epoch", metric, "timestamp"]).to_pylist()
    except FileNotFoundError:
        rows = []
    history: dict[str, dict[int, float]] = {}
    times: dict[str, dict[int, float]] = {}
    for row in rows:
        if row[metric] is not None:
            history.setdefault(row["trial_id"], {})[row["epoch"]] = row[metric]
            if row["timestamp"] is not None:
                times.setdefault(row["trial_id"], {})[row["epoch"]] = row["timestamp"].timestamp()
    try:
        trials = load_trials(sweep_dir).select(["trial_id", "status"]).to_pylist()
    except FileNotFoundError:
        trials = []
    folder = SweepFolder(sweep_dir)
    exploits: tuple[Mapping[str, Any], ...] = ()
    if folder.exists(folder.exploits_path):
        exploits = tuple(pq.read_table(folder.exploits_path, filesystem=folder.fs).to_pylist())
    status = {t["trial_id"]: t["status"] for t in trials}
    if with_states:
        statuses = SweepRecord(status=status)
        for trial_id in status:
            if not statuses.over(trial_id):
                _add_state_history(sweep_dir, trial_id, metric, history, times)
    return SweepRecord(history, status, exploits, times)


def _add_state_history(sweep_dir: str, trial_id: str, metric: str, history: dict, times: dict) -> None:
    """The epochs of ``trial_id``'s newest saved state that ``history`` lacks, into ``history`` and ``times``."""
    from lrtune.training.checkpoints import StateStore

    store = StateStore(sweep_dir, trial_id)
    states = store.states()
    if not states:
        return
    for row in store.meta(states[-1].name).get("history", []):
        epoch, value = row.get("epoch"), row.get(metric)
        if epoch is None or value is None or epoch in history.get(trial_id, {}):
            continue
        history.setdefault(trial_id, {})[epoch] = value
        if row.get("epoch_end") is not None:
            times.setdefault(trial_id, {})[epoch] = float(row["epoch_end"])
