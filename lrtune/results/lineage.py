"""PBT lineage: the schedule a population member's model was trained with, and who trained it.

Under population-based training a member's rows in ``metrics/`` are those
of its final model: epochs its donors trained (``trained_by``) and the
hyperparameters in effect each epoch (PBT perturbs them). :func:`segments`
cuts such a per-epoch column into runs of equal values;
:func:`learned_schedule` turns a member's runs into a
:class:`LearnedSchedule`, with the ``space:`` fragment that trains it
again from scratch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from lrtune.results.trials import Trial, applied_config

__all__ = ["LearnedSchedule", "Segment", "learned_schedule", "segments"]


@dataclasses.dataclass(frozen=True)
class Segment:
    """Epochs ``first`` to ``last`` (1-based, both included) sharing one ``value``."""

    first: int
    last: int
    value: Any


def segments(epochs: Sequence[int], values: Sequence[Any]) -> tuple[Segment, ...]:
    """Runs of equal consecutive ``values``, one :class:`Segment` per run.

    >>> segments([1, 2, 3, 4, 5], [0.1, 0.1, 0.05, 0.05, 0.1])
    (Segment(first=1, last=2, value=0.1), Segment(first=3, last=4, value=0.05), Segment(first=5, last=5, value=0.1))
    >>> segments([], [])
    ()
    """
    if len(epochs) != len(values):
        raise ValueError(
            f"`epochs` and `values` must have the same length. Received: {len(epochs)} and {len(values)}"
        )
    out: list[Segment] = []
    for epoch, value in zip(epochs, values, strict=True):
        if out and out[-1].value == value:
            out[-1] = Segment(out[-1].first, int(epoch), value)
        else:
            out.append(Segment(int(epoch), int(epoch), value))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class LearnedSchedule:
    """What a PBT member's model was trained with, epoch by epoch.

    ``lr`` and ``momentum`` are the values in effect (``config.lr``,
    ``config.momentum`` of its rows, inherited epochs included) as
    :class:`Segment` runs; ``momentum`` is empty for an optimizer without
    one. ``changed`` holds every other hyperparameter whose value changed.
    ``lineage`` says which trial trained which epochs (``trained_by``).
    ``space`` is the fragment that trains it again from scratch: for a
    constant schedule the ``lr`` runs become ``schedule: piecewise``
    (``boundaries`` = the last epoch of each run but the last, ``values``
    = each run's rate), every other setting takes its final value.
    ``replayable`` is false when the base schedule is not constant (no
    single schedule replays a change of its parameters mid-run); ``notes``
    say what the fragment does not reproduce.
    """

    trial_id: str
    lr: tuple[Segment, ...]
    momentum: tuple[Segment, ...]
    changed: Mapping[str, tuple[Segment, ...]]
    lineage: tuple[Segment, ...]
    space: Mapping[str, Any]
    replayable: bool
    notes: tuple[str, ...]


def learned_schedule(trial: Trial) -> LearnedSchedule:
    """The schedule ``trial``'s model learned under PBT, as a fragment to replay.

    Reads ``trial.hparams`` (the values in effect each epoch) and
    ``trial.trained_by``. A momentum (or any setting but ``lr``) that
    changed is replayed at its final value: there is no momentum schedule,
    and the final value is the one the finished model was last tuned with;
    the notes say so.

    Raises:
        ValueError: the trial has no recorded epoch.
    """
    if not len(trial.epochs):
        raise ValueError(f"trial {trial.trial_id} has no recorded epoch: no schedule to read")
    epochs = [int(e) for e in trial.epochs]
    runs = {
        k: segments(epochs, values)
        for k, values in trial.hparams.items()
        if any(v is not None for v in values)
    }
    lr, momentum = runs.get("lr", ()), runs.get("momentum", ())
    changed = {k: r for k, r in runs.items() if len(r) > 1 and k not in ("lr", "momentum")}
    final = applied_config(trial.config)
    notes = []
    replayable = True
    space = dict(final)
    if len(lr) > 1:
        if final.get("schedule") == "constant" and not final.get("warmup_epochs"):
            space = {"optimizer": final["optimizer"], "schedule": "piecewise"}
            space["boundaries"] = [s.last for s in lr[:-1]]
            space["values"] = [s.value for s in lr]
            space.update({k: v for k, v in final.items() if k not in ("optimizer", "schedule", "lr")})
        else:
            replayable = False
            notes.append(
                f"lr (the {final.get('schedule')} schedule's initial rate) changed mid-run and no single "
                "schedule replays that: the fragment is the final configuration, not a replay."
            )
    if len(momentum) > 1:
        notes.append(
            "momentum changed across epochs and there is no momentum schedule: the replay uses the "
            f"final momentum, {momentum[-1].value:.4g}, for every epoch."
        )
    for key in changed:
        notes.append(f"{key} changed across epochs: the replay uses its final value, {final.get(key)!r}.")
    return LearnedSchedule(
        trial_id=trial.trial_id,
        lr=lr,
        momentum=momentum,
        changed=changed,
        lineage=segments(epochs, list(trial.trained_by)),
        space=space,
        replayable=replayable,
        notes=tuple(notes),
    )
