"""Synchronous successive halving over configurations, for Ray Tune.

:class:`SuccessiveHalving` is a Tune ``TrialScheduler`` (Ray's
``FIFOScheduler`` with its hooks filled in) that judges a *configuration*
(the trial config's ``arm`` without ``repeat``) rather than a trial: the
repeats of a configuration are kept or cut together, on their mean. Ray's
``ASHAScheduler`` judges each trial alone, as soon as it reaches a rung, so
the first trials to arrive have nobody to lose to and pass, and one lucky
seed can go on while its siblings stop.

The rule (successive halving, Jamieson & Talwalkar 2016, "Non-stochastic
best arm identification and hyperparameter optimization"; the synchronous
SHA of Li et al. 2018, "A system for massively parallel hyperparameter
tuning", which ASHA relaxes): rungs at ``grace_period * reduction_factor**k``
epochs, below ``max_t``. A trial reaching a rung is paused (Tune's PAUSE:
it resumes later from the checkpoint of that epoch) until no live trial is
still on its way to that rung or a lower one. Then the ``n`` configurations
recorded there are ranked by the mean of the metric over their repeats, and
the best ``max(1, floor(n / reduction_factor))`` go on; every trial of the
others stops. Nine configurations, grace 2, reduction 3, 20 epochs: 9 run
2 epochs, 3 run to 6, 1 runs to 20, ``(9*2 + 3*4 + 1*14) / (9*20) = 0.244``
of the grid's epochs.

A configuration alone among the live trials (the others stopped or ended)
goes on at once: there is nobody to wait for. A configuration reaching a
rung after it was judged (a search that suggests
trials later, a resumed sweep) is ranked against all the means recorded
there, with the same top-``max(1, floor(n / reduction_factor))`` rule.
Results of a (trial, epoch) already seen (a resumed trial replaying its
epochs) do not count twice, and a replayed result never pauses its trial
(it carries no checkpoint to resume from): the next trained epoch does.
Tune keeps no scheduler state across ``--resume``; the sweep's rows and
trial statuses are the record (:meth:`SuccessiveHalving.restore_decisions`):
each restored trial's values go back to the rungs it reached (with the epochs
only its newest saved state holds), a trial with rows more than one epoch past
a rung went on from it (one epoch past is what a restored trial waiting there
trains before it can pause: it waits there again), one recorded as stopped early was cut at
the last rung it reached, and one that had reached a rung and neither went
on nor stopped waits there, PENDING, to be judged with every configuration
recorded there, ended ones included, as in a run never killed.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from lrtune.engine.record import SweepRecord

__all__ = ["SuccessiveHalving", "configuration_key", "rungs"]


def rungs(grace_period: int, reduction_factor: float, max_t: int) -> list[float]:
    """The epochs at which configurations are judged: ``grace_period * reduction_factor**k < max_t``.

    None at ``max_t`` itself: the last epoch ends every trial that reaches it.

    >>> rungs(2, 3, 20)
    [2, 6, 18]
    >>> rungs(1, 3, 4)
    [1, 3]
    >>> rungs(5, 3, 5)
    []

    Raises:
        ValueError: ``grace_period`` or ``max_t`` not positive, ``reduction_factor`` not above 1.
    """
    if grace_period <= 0 or max_t <= 0:
        raise ValueError(f"`grace_period` and `max_t` must be > 0, but got ({grace_period=}, {max_t=}).")
    if reduction_factor <= 1:
        raise ValueError(f"`reduction_factor` must be > 1, but got {reduction_factor=}.")
    out, k = [], 0
    while grace_period * reduction_factor**k < max_t:
        out.append(grace_period * reduction_factor**k)
        k += 1
    return out


def configuration_key(config: dict[str, Any]) -> str:
    """One string per configuration: the trial config without its repeat index.

    lrtune's trial config is ``{"arm": {..., "repeat": i}}``; Tune's
    ``Repeater`` (``search: tpe``) adds ``__trial_index__`` beside it.

    >>> configuration_key({"arm": {"lr": 0.1, "repeat": 1}}) == configuration_key({"arm": {"lr": 0.1, "repeat": 0}})
    True
    """
    arm = config.get("arm", config)
    arm = {k: v for k, v in arm.items() if k != "repeat"} if isinstance(arm, dict) else arm
    rest = {k: v for k, v in config.items() if k not in ("arm", "__trial_index__")}
    return json.dumps([arm, rest], sort_keys=True, default=repr)


class SuccessiveHalving(FIFOScheduler):
    """Synchronous successive halving that keeps or cuts a configuration's repeats together.

    Args:
        time_attr: the result's time counter (lrtune: ``epoch``), rising by trial.
        max_t: the trials' length in ``time_attr`` units; no rung at or past it.
        grace_period: the first rung.
        reduction_factor: ``eta``: the rungs are ``grace_period * eta**k``; 1 of ``eta``
            configurations goes on from each (at least 1).
        metric, mode: what to rank by; Tune's ``TuneConfig(metric, mode)`` sets them when left out.

    Raises:
        ValueError: the settings break :func:`rungs`' rules, or ``mode`` is not min or max.
    """

    # One result at a time: a PAUSE must take effect at the rung, not epochs later.
    _supports_buffered_results = False

    #: The record holds the epochs of each unfinished trial's newest state too
    #: (:func:`lrtune.engine.record.read_record`, ``with_states``): a value at a rung
    #: whose row was lost with the driver still counts when the rung is ranked.
    reads_state_histories = True

    def __init__(
        self,
        *,
        time_attr: str = "epoch",
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 3,
        metric: str | None = None,
        mode: str | None = None,
    ):
        super().__init__()
        if mode not in (None, "min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', but got {mode=}.")
        self._time_attr = time_attr
        self._max_t = max_t
        self._eta = reduction_factor
        self._rungs = rungs(grace_period, reduction_factor, max_t)
        self._metric, self._mode = metric, mode
        self._key: dict[str, str] = {}  # trial id -> configuration
        # Per rung: configuration -> {trial id: metric, signed so that higher is better}.
        self._recorded: list[dict[str, dict[str, float]]] = [{} for _ in self._rungs]
        # Per rung: configuration -> goes on (True) or stops (False).
        self._verdict: list[dict[str, bool]] = [{} for _ in self._rungs]
        self._passed: dict[str, int] = {}  # trial id -> rungs it has reached
        self._waiting: dict[str, int] = {}  # trial id -> the rung it is paused at, undecided
        # Replays (lrtune.training.reporter.Reporter.replay): the epochs up to the run's
        # restored_epoch, and everything a restored trial reports before a run's first row.
        self._replay_until: dict[str, float] = {}
        self._restored: set[str] = set()
        self._record = SweepRecord()

    def restore_decisions(self, record: SweepRecord) -> None:
        """Take up the rungs' records and verdicts from ``record`` as Tune adds each restored trial."""
        self._record = record

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    # --- Tune's hooks -----------------------------------------------------------------

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        if not self._metric or self._mode not in ("min", "max"):
            raise ValueError(
                f"SuccessiveHalving needs a metric and a mode (min or max), but got "
                f"metric={self._metric!r}, mode={self._mode!r}: pass them here or to tune.TuneConfig."
            )
        self._key[trial.trial_id] = configuration_key(trial.config)
        self._passed.setdefault(trial.trial_id, 0)
        last = trial.run_metadata.last_result.get(self._time_attr)
        if isinstance(last, (int, float)):
            # Restored by --resume (Tune keeps no scheduler state): a trial past a rung
            # was promoted there; one paused at a rung is judged there again.
            self._restored.add(trial.trial_id)
            self._passed[trial.trial_id] = sum(1 for m in self._rungs if m < last)
        if trial.trial_id in self._record.history:
            self._take_up(trial)

    def _take_up(self, trial: Trial) -> None:
        """The rungs ``trial`` reached by the record: its values there and what was decided.

        Rows more than one epoch past a rung prove the trial went on from it. Rows
        exactly one epoch past do not: a restored trial waiting at a rung trains one
        epoch on before it can pause (its replayed result carries no checkpoint), so it
        waits there again, to be judged with the values recorded at the rung; a trial
        that had gone on gets the same verdict again (found by the sha kill soak, seed
        267072: a hopeless trial's extra epoch read as a promotion let it run to the
        next rung).
        """
        tid, key = trial.trial_id, self._key[trial.trial_id]
        rows = self._record.history[tid]
        last = max(rows)
        self._restored.add(tid)
        reached = [i for i, m in enumerate(self._rungs) if m <= last]
        status = self._record.status.get(tid)
        # A trial that ran to max_t went on from every rung.
        proven = [i for i in reached if status == "done" or last > self._rungs[i] + 1]
        top = reached[len(proven)] if len(proven) < len(reached) else None  # reached, not proven passed
        counted = proven + ([top] if top is not None else [])
        self._passed[tid] = len(counted)
        for i in counted:
            m = self._rungs[i]
            if m in rows:
                value = float(rows[m]) * (1 if self._mode == "max" else -1)
                self._recorded[i].setdefault(key, {})[tid] = value if math.isfinite(value) else -math.inf
        if status == "stopped_early":
            if counted:
                self._verdict[counted[-1]][key] = False
            for i in counted[:-1]:
                self._verdict[i][key] = True
            return
        for i in proven:
            self._verdict[i][key] = True
        if top is None or self._record.over(tid) or trial.status in (Trial.TERMINATED, Trial.ERROR):
            return  # between rungs; or ended at the rung (diverged there): its value counts, its end decides nothing
        if key not in self._verdict[top]:
            self._waiting[tid] = top  # at the rung (or one epoch past it), undecided when the driver died

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        tid = trial.trial_id
        key = self._key.setdefault(tid, configuration_key(trial.config))
        if self._cut(tid):
            return TrialScheduler.STOP
        now = result[self._time_attr]
        if "restored_epoch" in result:  # a run's first row
            self._replay_until[tid] = result["restored_epoch"]
            self._restored.discard(tid)
        # A replayed row carries no checkpoint: a PAUSE waits for the next trained epoch's.
        hold = (
            TrialScheduler.CONTINUE
            if tid in self._restored or now <= self._replay_until.get(tid, -1)
            else TrialScheduler.PAUSE
        )
        reached = sum(1 for m in self._rungs if now >= m)
        if reached <= self._passed.get(tid, 0) or now >= self._max_t:
            # No new rung (or a result replayed after a resume): carry on.
            return hold if tid in self._waiting else TrialScheduler.CONTINUE
        rung = reached - 1
        self._passed[tid] = reached
        value = float(result[self._metric]) * (1 if self._mode == "max" else -1)
        self._recorded[rung].setdefault(key, {})[tid] = value if math.isfinite(value) else -math.inf
        if key in self._verdict[rung]:
            # Its configuration was judged here already (a repeat that comes late, a resumed trial).
            return TrialScheduler.CONTINUE if self._verdict[rung][key] else TrialScheduler.STOP
        if self._alone(tune_controller, key, current=tid):
            # Every other configuration has stopped or ended: nothing to wait for or lose to.
            self._verdict[rung][key] = True
            return TrialScheduler.CONTINUE
        self._waiting[tid] = rung
        self._judge(tune_controller, current=tid)
        if tid in self._waiting:
            return hold
        if self._verdict[rung].get(key) is False:
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        self._forget(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        self._forget(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._forget(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        """New trials first (they have rungs to reach), then paused trials that were promoted.

        A paused trial this scheduler does not hold at a rung (paused by
        someone else) runs too; one waiting for its rung's verdict does not.
        """
        trials = tune_controller.get_trials()
        if self._waiting:
            self._judge(
                tune_controller, current=None
            )  # restored trials may wait on a rung nobody is on the way to
        for trial in trials:
            if trial.status == Trial.PENDING and trial.trial_id not in self._waiting:
                return trial
        for trial in trials:
            if trial.status == Trial.PAUSED and trial.trial_id not in self._waiting:
                return trial
        return None

    def debug_string(self) -> str:
        parts = [
            f"epoch {m:g}: {len(rec)} configurations, {sum(v for v in self._verdict[i].values())} go on"
            for i, (m, rec) in enumerate(zip(self._rungs, self._recorded, strict=True))
        ]
        return f"Successive halving (eta {self._eta:g}, waiting {len(self._waiting)}): " + "; ".join(parts)

    # --- the rule --------------------------------------------------------------------

    def _forget(self, tune_controller, trial: Trial) -> None:
        self._waiting.pop(trial.trial_id, None)
        self._judge(tune_controller, current=None)

    def _alone(self, tune_controller, key: str, *, current: str) -> bool:
        """Whether every live trial not yet cut is of configuration ``key``."""
        return all(
            self._key.get(t.trial_id) == key or self._cut(t.trial_id)
            for t in tune_controller.get_trials()
            if t.status in (Trial.PENDING, Trial.RUNNING, Trial.PAUSED) or t.trial_id == current
        )

    def _cut(self, trial_id: str) -> bool:
        return any(v.get(self._key.get(trial_id)) is False for v in self._verdict)

    def _judge(self, tune_controller, *, current: str | None) -> None:
        """Judge the lowest rung with waiting trials once no live trial is still on its way to it."""
        while self._waiting:
            rung = min(self._waiting.values())
            live = [
                t
                for t in tune_controller.get_trials()
                if t.status in (Trial.PENDING, Trial.RUNNING, Trial.PAUSED) or t.trial_id == current
            ]
            if any(
                t.trial_id not in self._waiting
                and self._passed.get(t.trial_id, 0) <= rung
                # a stopped trial can stay RUNNING for a moment: it is not on its way
                and not self._cut(t.trial_id)
                for t in live
            ):
                return
            self._rank(rung)
            judged = [tid for tid, at in self._waiting.items() if at == rung]
            cut = []
            for tid in judged:
                del self._waiting[tid]  # a paused one that goes on: choose_trial_to_run resumes it
                if not self._verdict[rung][self._key[tid]] and tid != current:
                    cut.append(tid)
            # After the bookkeeping: stop_trial calls on_trial_complete, which judges again.
            by_id = {t.trial_id: t for t in live}
            for tid in cut:
                if tid in by_id:
                    tune_controller.stop_trial(by_id[tid])

    def _rank(self, rung: int) -> None:
        """Verdicts for the configurations at ``rung`` that have none: top ``max(1, floor(n / eta))`` by mean."""
        means = {key: sum(v.values()) / len(v) for key, v in self._recorded[rung].items()}
        ranked = sorted(means, key=means.get, reverse=True)
        keep = set(ranked[: max(1, math.floor(len(ranked) / self._eta))])
        for key in ranked:
            self._verdict[rung].setdefault(key, key in keep)
