"""A trial's saved states: the format, where they live, which one to resume.

A *state* is a folder of four files, written in this order:

- ``model.weights.h5``: the model's weights;
- ``optimizer.npz``: every optimizer variable, the iteration count first,
  so a resumed time-based or step schedule continues where it stopped;
- ``rng.npz``: the dropout layers' seed-generator states (``save_weights``
  leaves them out), so an epoch re-run from a state repeats exactly;
- ``trial.json``: ``{"epoch": <epochs done>, "history": [<rows>],
  "trial_id", "run", "hparams", "extra_state"}``, written last: a state is
  complete exactly when its ``trial.json`` exists. ``extra_state`` holds
  the state of callbacks that must survive a resume (reduce on plateau's).

During a sweep the states of trial ``T`` live on the sweep's storage under
``<sweep_dir>/T/state/epoch-000005-<run>/``, written there by the trial
itself. What Ray Tune checkpoints is a *pointer* to one of them
(``pointer.json``: trial, state name, epoch), a few bytes, so Tune can keep
every checkpoint it ever named: a snapshot of the experiment that lags
behind the trials can never name a checkpoint that was deleted (Tune's own
retention deletes checkpoints that its latest snapshot still names,
ray-project/ray#27790). lrtune prunes the heavy states itself
(:class:`~lrtune.engine.housekeeping.StateRetention`), and a trial restored from a
pointer whose state is gone resumes from the newest state that exists
(:func:`choose_state`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyarrow import fs

__all__ = [
    "save_state",
    "load_state",
    "load_extra_state",
    "StateStore",
    "StateInfo",
    "choose_state",
    "write_pointer",
    "read_pointer",
]

_FILES = ("model.weights.h5", "optimizer.npz", "rng.npz")
_META = "trial.json"
_POINTER = "pointer.json"
_NAME = re.compile(r"^epoch-(\d{6})-([0-9a-f]+)$")


def save_state(directory: str, model, epoch: int, history: list[dict[str, Any]], **meta: Any) -> None:
    """Write ``model``'s weights, optimizer and RNG state and the history into ``directory``.

    ``meta`` (trial_id, run, hparams, extra_state) goes into ``trial.json`` beside
    ``epoch`` (epochs done, 1-based count) and ``history`` (one row per
    epoch done, oldest first).
    """
    model.save_weights(os.path.join(directory, "model.weights.h5"))
    optimizer = {_slot(v): np.asarray(v.numpy()) for v in model.optimizer.variables}
    np.savez(os.path.join(directory, "optimizer.npz"), **optimizer)
    np.savez(os.path.join(directory, "rng.npz"), *[np.asarray(v.numpy()) for v in _rng_variables(model)])
    with open(os.path.join(directory, _META), "w") as f:
        json.dump({"epoch": epoch, "history": history, "optimizer": _class(model.optimizer), **meta}, f)


def load_state(directory: str, model, rng: bool = True) -> tuple[int, list[dict[str, Any]]]:
    """Restore what :func:`save_state` wrote; returns ``(epoch, history)``.

    ``model`` must be compiled with the optimizer the state was saved with;
    its hyperparameters (lr, momentum) may differ, as after a PBT exploit,
    and the new ones apply from the next step.

    Optimizer variables are matched by name, so a PBT perturbation that
    turns SGD's momentum on or off (which adds or removes its slots)
    restores too. ``rng=False`` leaves the dropout layers' seed generators
    as this model was built (a run with its own seed).

    Raises:
        ValueError: the state was saved with another optimizer class.
    """
    with open(os.path.join(directory, _META)) as f:
        state = json.load(f)
    if state.get("optimizer") != _class(model.optimizer):
        raise ValueError(
            f"State {directory} was saved with the {state.get('optimizer')} optimizer, "
            f"not {_class(model.optimizer)}: it belongs to another configuration."
        )
    model.load_weights(os.path.join(directory, "model.weights.h5"))
    model.optimizer.build(model.trainable_variables)
    with np.load(os.path.join(directory, "optimizer.npz")) as saved:
        values = {name: saved[name] for name in saved.files}
    # By name: a slot the state lacks starts at zero (SGD given momentum by a
    # PBT perturbation), one the optimizer lacks is dropped (momentum now 0).
    for variable in model.optimizer.variables:
        if _slot(variable) in values:
            variable.assign(values[_slot(variable)])
    rng_path = os.path.join(directory, "rng.npz")
    if rng and os.path.exists(rng_path):
        with np.load(rng_path) as saved:
            for i, variable in enumerate(_rng_variables(model)):
                variable.assign(saved[f"arr_{i}"])
    return int(state["epoch"]), list(state["history"])


def load_extra_state(directory: str) -> dict[str, Any]:
    """The ``extra_state`` a state was saved with; ``{}`` if none."""
    with open(os.path.join(directory, _META)) as f:
        return dict(json.load(f).get("extra_state") or {})


def _slot(variable) -> str:
    """An optimizer variable's name without the optimizer's own (``sgd_1/``)."""
    return variable.path.split("/", 1)[-1]


def _class(optimizer) -> str:
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # mixed precision wraps it
    return type(inner).__name__


def _rng_variables(model) -> list:
    """The dropout layers' seed-generator states: not in ``save_weights``."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


@dataclass(frozen=True)
class StateInfo:
    """One complete state of a trial on storage."""

    trial_id: str
    name: str  # epoch-000005-<run>
    epoch: int
    run: str


class StateStore:
    """The states of one trial, under ``<sweep_dir>/<trial_id>/state/``.

    ``sweep_dir`` is a local path or a URI (``s3://``, ``gs://``); every
    operation goes through ``pyarrow.fs``.
    """

    def __init__(self, sweep_dir: str, trial_id: str):
        from lrtune.folder import SweepFolder

        folder = SweepFolder(sweep_dir)
        self.trial_id = trial_id
        self.fs, self.root = folder.fs, folder.states_path(trial_id)

    def save(
        self,
        model,
        epoch: int,
        history: list[dict[str, Any]],
        *,
        run: str,
        hparams: Mapping,
        extra_state: Mapping[str, Any] | None = None,
    ) -> str:
        """Write a new complete state for ``epoch``; returns its name."""
        name = f"epoch-{epoch:06d}-{run}"
        target = f"{self.root}/{name}"
        with tempfile.TemporaryDirectory(prefix="lrtune-state-") as local:
            meta = {"trial_id": self.trial_id, "run": run, "hparams": dict(hparams)}
            save_state(local, model, epoch, history, **meta, extra_state=dict(extra_state or {}))
            self.fs.create_dir(target, recursive=True)
            for file in (*_FILES, _META):  # trial.json last: it marks the state complete
                fs.copy_files(
                    os.path.join(local, file),
                    f"{target}/{file}",
                    source_filesystem=fs.LocalFileSystem(),
                    destination_filesystem=self.fs,
                )
        return name

    def states(self) -> list[StateInfo]:
        """Every complete state, oldest epoch first (ties: name order)."""
        selector = fs.FileSelector(self.root, allow_not_found=True, recursive=True)
        complete = set()
        names = []
        for info in self.fs.get_file_info(selector):
            parts = info.path[len(self.root) + 1 :].split("/")
            if len(parts) == 1 and info.type == fs.FileType.Directory and _NAME.match(parts[0]):
                names.append(parts[0])
            elif len(parts) == 2 and parts[1] == _META:
                complete.add(parts[0])
        found = []
        for name in names:
            if name in complete:
                epoch, run = _NAME.match(name).groups()
                found.append(StateInfo(self.trial_id, name, int(epoch), run))
        return sorted(found, key=lambda s: (s.epoch, s.name))

    def meta(self, name: str) -> dict[str, Any]:
        """The ``trial.json`` of state ``name``."""
        with self.fs.open_input_stream(f"{self.root}/{name}/{_META}") as f:
            return json.loads(f.read().decode())

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[str]:
        """A local folder holding state ``name`` (a copy unless the storage is local)."""
        path = f"{self.root}/{name}"
        if isinstance(self.fs, fs.LocalFileSystem):
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="lrtune-state-") as local:
            fs.copy_files(path, local, source_filesystem=self.fs, destination_filesystem=fs.LocalFileSystem())
            yield local

    def delete(self, name: str) -> None:
        """Remove state ``name``: its ``trial.json`` first, so a half-deleted state is incomplete."""
        path = f"{self.root}/{name}"
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(f"{path}/{_META}")
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(path)


def write_pointer(directory: str, trial_id: str, state: str, epoch: int) -> None:
    """Write the pointer Tune checkpoints: which trial's state, and its epoch."""
    with open(os.path.join(directory, _POINTER), "w") as f:
        json.dump({"trial_id": trial_id, "state": state, "epoch": epoch}, f)


def read_pointer(directory: str) -> dict[str, Any] | None:
    """The pointer in a Tune checkpoint folder, or None if it holds none."""
    path = os.path.join(directory, _POINTER)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def choose_state(
    own: StateStore, pointer: Mapping[str, Any] | None, hparams: Mapping[str, Any], donor: StateStore | None
) -> tuple[StateStore, StateInfo] | None:
    """The state a starting trial resumes from, or None to start from scratch.

    - ``pointer`` names another trial's state (a PBT exploit): that state
      if it still exists, else the donor's newest (the pointer's may have
      been pruned while the exploit waited).
    - Otherwise (Tune restores the trial's own pointer, or none: a trial
      the last experiment snapshot saw pending): the trial's newest
      complete state trained with the same ``hparams`` (the seed aside). The snapshot Tune
      resumes from lags behind the trials; the newest state that exists
      loses the fewest epochs, and its history brings every row back.
    """
    if pointer is not None and pointer["trial_id"] != own.trial_id and donor is not None:
        states = donor.states()
        exact = [s for s in states if s.name == pointer["state"]]
        chosen = exact or states[-1:]
        return (donor, chosen[0]) if chosen else None
    wanted = _plain(hparams)
    for state in reversed(own.states()):
        if _plain(own.meta(state.name).get("hparams", {})) == wanted:
            return own, state
    return None


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters compared as JSON sees them (tuples and lists alike), without the seed.

    The seed is the run's, not the configuration's: a PBT member draws a
    new one when it clones a donor, and keeps it in its states.
    """
    plain = json.loads(json.dumps(dict(values), sort_keys=True, default=str))
    plain.pop("seed", None)
    return plain
