"""TensorBoard from the kept rows: scalars per trial, the HParams tab, PBT lineage.

Laid out for ``tensorboard --logdir <sweep folder>``::

    <sweep>/events.out.tfevents.*.lrtune-hparams   the HParams experiment: every
                                                   hyperparameter of the space (those
                                                   that vary first), the metrics
    <sweep>/tensorboard/<trial_id>/events.*        one run per trial: its session start
                                                   (hyperparameters) as it starts, a scalar per
                                                   metric and ``lr`` per epoch (step = epoch),
                                                   ``trained_by`` (text) and
                                                   ``lineage/inherited`` (1: another member
                                                   trained the epoch), its session end

A withdrawn epoch (a restore, a PBT exploit) is shadowed the way
TensorFlow marks a restart: a ``SessionLog.START`` event at the first
withdrawn epoch, on which TensorBoard's reader discards every value it
holds at that step and later, then the kept rows of those steps again. A
reader that ignores ``START`` still finds the kept value last at each step.

Everything is written with TensorBoard's own protos and event-file writer
(no TensorFlow op), through TensorBoard's TensorFlow stub when this
process has not imported TensorFlow (:func:`event_file_writer`). Ray Tune's raw per-trial logs are off unless the
sweep file keeps them (``tensorboard: {ray_logs: true}``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from lrtune.engine.views import VIEW_METRICS, RowView

__all__ = ["TensorBoardView", "event_file_writer", "trial_hparams", "STATUS", "TRIALS_DIR"]

#: lrtune status -> the HParams plugin's session status.
STATUS = {
    "done": "STATUS_SUCCESS",
    "stopped_early": "STATUS_SUCCESS",  # the scheduler ended it: no failure (this plugin has no ABORTED)
    "diverged": "STATUS_FAILURE",
    "error": "STATUS_FAILURE",
}
#: The folder, in the sweep folder, of the trials' runs.
TRIALS_DIR = "tensorboard"


def event_file_writer():
    """TensorBoard's ``EventFileWriter`` class, kept from importing TensorFlow into the driver.

    The writer opens files through ``tensorboard.compat.tf``, which imports
    TensorFlow where it is installed: 6.8 s of the driver's CPU in a one-trial
    sweep on 2 cores, and TensorFlow's memory, for writing files. Where this
    process has not imported TensorFlow, TensorBoard's own switch to its stub
    (the module ``tensorboard.compat.notf``, which TensorBoard's build provides
    as ``//tensorboard/compat:no_tensorflow``) is set first; the stub's
    ``gfile`` writes local paths, S3 and fsspec URLs.
    """
    import sys
    import types

    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    return EventFileWriter


def trial_hparams(config: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """The hyperparameters a trial trains with, as the ``config.*`` columns hold them (unused ones left out).

    Lists become JSON text (the HParams plugin takes numbers, strings and booleans).
    """
    from lrtune.results.tables import config_columns
    from lrtune.training.trial import trial_config

    try:
        columns = config_columns(trial_config(config), epochs)
    except ValueError:  # settings the trial refuses too: shown as given
        columns = {f"config.{k}": v for k, v in trial_config(config).items()}
    return {
        k.removeprefix("config."): (json.dumps(v) if isinstance(v, (list, tuple)) else v)
        for k, v in columns.items()
        if v is not None and k.startswith("config.")
    }


def _domain(values: Sequence[Any], bounds: Sequence[tuple[float, float]]):
    from tensorboard.plugins.hparams import summary_v2 as hp

    if bounds and not values:
        return hp.RealInterval(float(min(b[0] for b in bounds)), float(max(b[1] for b in bounds)))
    if bounds or not values:
        return None
    if all(isinstance(v, bool) for v in values):
        return hp.Discrete(sorted(set(values)))
    if all(isinstance(v, str) for v in values):
        return hp.Discrete(sorted(set(values)))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return hp.Discrete(sorted({float(v) for v in values}))
    return None


def experiment_hparams(spec) -> list:
    """The space's hyperparameters (and the optimizer and schedule), each with the domain the space gives it.

    Those that vary where they apply come first in the HParams tab, which shows
    the first few: their ``differs`` is set.
    """
    from tensorboard.plugins.hparams import summary_v2 as hp

    names: dict[str, None] = {"optimizer": None, "schedule": None}
    values: dict[str, list[Any]] = {}
    bounds: dict[str, list[tuple[float, float]]] = {}
    for arm in spec.space:
        corner = {k: d.values()[0] for k, d in arm.params.items()}
        resolved = trial_hparams(corner, spec.epochs)
        values.setdefault("optimizer", []).append(resolved.get("optimizer"))
        values.setdefault("schedule", []).append(resolved.get("schedule"))
        for key, dist in arm.params.items():
            names[key] = None
            if dist.is_discrete():
                values.setdefault(key, []).extend(dist.values())
            else:
                low, high = dist.values()[:2]
                bounds.setdefault(key, []).append((low, high))
    varying = {k for k in names if bounds.get(k) or len({repr(v) for v in values.get(k, [])}) > 1}
    return [
        (hp.HParam(name, _domain(values.get(name, []), bounds.get(name, []))), name in varying)
        for name in names
    ]


def _experiment_summary(spec):
    """The HParams experiment summary; ``differs`` set on the hyperparameters that vary."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp

    hparams = experiment_hparams(spec)
    # "lr" is also a hyperparameter (the initial rate): the metric says it is the rate in effect.
    metrics = [hp.Metric(tag, display_name="lr in effect" if tag == "lr" else tag) for tag in VIEW_METRICS]
    built = hp.hparams_config_pb([h for h, _ in hparams], metrics, time_created_secs=time.time())
    experiment = metadata.parse_experiment_plugin_data(built.value[0].metadata.plugin_data.content)
    for info, (_, differs) in zip(experiment.hparam_infos, hparams, strict=True):
        info.differs = differs
    content = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(experiment=experiment))
    summary = Summary()
    summary.value.add(tag=metadata.EXPERIMENT_TAG, metadata=content, tensor=metadata.NULL_TENSOR)
    return summary


class TensorBoardView(RowView):
    """Writes the sweep's TensorBoard logs from the rows the sink keeps (see the module's docstring)."""

    def __init__(self, sweep_dir: str, spec):
        self.sweep_dir = os.path.abspath(sweep_dir)
        self.epochs = spec.epochs
        self._writers: dict[str, Any] = {}
        # trial -> epoch -> the row's step values, to write again what a START discards
        self._shown: dict[str, dict[int, tuple[float, dict[str, float], str]]] = {}
        self._failures: list[str] = []
        self._write_experiment(spec)

    def _write_experiment(self, spec) -> None:
        EventFileWriter = event_file_writer()  # noqa: N806 (a class)

        os.makedirs(self.sweep_dir, exist_ok=True)
        suffix = ".lrtune-hparams"
        # One experiment summary: TensorBoard keeps the first it reads in a run.
        for name in os.listdir(self.sweep_dir):
            if name.startswith("events.out.tfevents.") and name.endswith(suffix):
                os.remove(os.path.join(self.sweep_dir, name))
        summary = _experiment_summary(spec)
        writer = EventFileWriter(self.sweep_dir, filename_suffix=suffix)
        writer.add_event(_event(0, time.time(), summary=summary))
        writer.close()

    def _writer(self, trial_id: str):
        from tensorboard.compat.proto.event_pb2 import SessionLog

        EventFileWriter = event_file_writer()  # noqa: N806 (a class)
        writer = self._writers.get(trial_id)
        if writer is None:
            logdir = os.path.join(self.sweep_dir, TRIALS_DIR, trial_id)
            first = not os.path.isdir(logdir)
            writer = self._writers[trial_id] = EventFileWriter(logdir, filename_suffix=".lrtune")
            if first:
                # The server's reader takes a run's first START as its beginning and each later one as
                # a restart; this one opens the run, so that the first withdrawal counts.
                writer.add_event(_event(0, time.time(), session_log=SessionLog(status=SessionLog.START)))
        return writer

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        from tensorboard.plugins.hparams import summary_v2 as hp

        summary = hp.hparams_pb(
            trial_hparams(config, self.epochs), trial_id=trial_id, start_time_secs=time.time()
        )
        self._writer(trial_id).add_event(_event(0, time.time(), summary=summary))
        self._writer(trial_id).flush()

    def rows_kept(self, rows: Sequence[Mapping[str, Any]]) -> None:
        touched = set()
        for row in sorted(rows, key=lambda r: (r["trial_id"], r["epoch"])):
            trial_id, epoch = row["trial_id"], int(row["epoch"])
            values = {k: float(row[k]) for k in VIEW_METRICS if row.get(k) is not None}
            wall = row["timestamp"].timestamp() if row.get("timestamp") is not None else time.time()
            shown = (wall, values, row.get("trained_by") or trial_id)
            self._shown.setdefault(trial_id, {})[epoch] = shown
            self._write_step(trial_id, epoch, shown)
            touched.add(trial_id)
        for trial_id in touched:
            self._writers[trial_id].flush()

    def _write_step(self, trial_id: str, epoch: int, shown: tuple[float, dict[str, float], str]) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.text.summary_v2 import text_pb

        wall, values, trained_by = shown
        summary = Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
        summary.value.add(tag="lineage/inherited", simple_value=float(trained_by != trial_id))
        summary.value.extend(text_pb("trained_by", trained_by).value)
        self._writer(trial_id).add_event(_event(epoch, wall, summary=summary))

    def rows_withdrawn(self, trial_id: str, epochs: Sequence[int]) -> None:
        from tensorboard.compat.proto.event_pb2 import SessionLog

        shown = self._shown.setdefault(trial_id, {})
        for epoch in epochs:
            shown.pop(epoch, None)
        first = min(epochs)
        writer = self._writer(trial_id)
        writer.add_event(_event(first, time.time(), session_log=SessionLog(status=SessionLog.START)))
        for epoch in sorted(e for e in shown if e >= first):
            self._write_step(trial_id, epoch, shown[epoch])
        writer.flush()

    def resync(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write every kept row again after a ``START`` at step 1: a killed driver may have died between the two writes."""
        from tensorboard.compat.proto.event_pb2 import SessionLog

        by_trial: dict[str, list[Mapping[str, Any]]] = {}
        for row in rows:
            by_trial.setdefault(row["trial_id"], []).append(row)
        for trial_id in by_trial:
            self._shown[trial_id] = {}
            self._writer(trial_id).add_event(
                _event(1, time.time(), session_log=SessionLog(status=SessionLog.START))
            )
        self.rows_kept(rows)

    def trial_ended(self, trial_id: str, status: str) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
        from tensorboard.plugins.text.summary_v2 import text_pb

        info = plugin_data_pb2.SessionEndInfo(
            status=api_pb2.Status.Value(STATUS.get(status, "STATUS_UNKNOWN")), end_time_secs=time.time()
        )
        content = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(session_end_info=info))
        summary = Summary()
        summary.value.add(tag=metadata.SESSION_END_INFO_TAG, metadata=content, tensor=metadata.NULL_TENSOR)
        summary.value.extend(text_pb("status", status).value)
        writer = self._writer(trial_id)
        writer.add_event(_event(0, time.time(), summary=summary))
        writer.close()
        del self._writers[trial_id]

    def close(self, timeout_s: float = 30.0) -> list[str]:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        return list(self._failures)


def _event(step: int, wall_time: float, **fields):
    from tensorboard.compat.proto.event_pb2 import Event

    return Event(step=step, wall_time=wall_time, **fields)
