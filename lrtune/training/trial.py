"""One trial: train a model with one schedule and report every epoch.

:func:`run_trial` is the whole training loop: it builds the model and the
optimizer from a trial config, resumes from a checkpoint when given one,
and calls ``report(row, checkpoint_dir)`` after every epoch through the
:class:`Reporter` Keras callback. :func:`tune_trainable` is the same
function with ``ray.tune.report`` plugged in; it is what the sweep runs.

A trial config is a flat dict of hyperparameters, as a sweep samples them::

    {"optimizer": "sgd", "schedule": "step", "lr": 0.1, "drop": 0.5,
     "epochs_drop": 10, "momentum": 0.5, "seed": 1}

Fixed settings (model, epochs, batch size) are a :class:`TrainSettings`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import socket
import tempfile
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lrtune.training.checkpoints import write_pointer
from lrtune.training.hparams import resolve

if TYPE_CHECKING:
    from lrtune.data import Dataset
    from lrtune.training.models import ModelSource
    from lrtune.training.reporter import Checkpointer, Reporter

__all__ = [
    "TrainSettings",
    "run_trial",
    "tune_trainable",
    "TrialStorage",
    "configure_tensorflow",
    "trial_config",
    "trial_seed",
    "config_seed",
]

ReportFn = Callable[[dict[str, Any], str | None], None]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """What stays fixed across the trials of a sweep.

    ``threads``: TensorFlow's intra-op threads (the trial's CPUs), so
    concurrent trials on one machine do not oversubscribe its cores.
    ``xla`` and ``mixed_precision`` only pay off on a GPU (XLA measured
    3-4x slower on this project's CPUs). ``gpu``: the trial's share of a
    GPU, its TensorFlow memory limit (:mod:`lrtune.training.gpu`). ``metric``/``mode``: what a
    reduce-on-plateau schedule watches (the sweep's).
    """

    model: str | ModelSource = "seed-tiny"
    epochs: int = 10
    batch_size: int = 64
    threads: int | None = None
    xla: bool = False
    mixed_precision: bool = False
    gpu: float = 0
    checkpoint: bool = True
    seed: int = 0
    metric: str = "val_accuracy"
    mode: str = "max"
    repeats: int = 1


def configure_tensorflow(threads: int | None, mixed_precision: bool = False, gpu: float = 0) -> None:
    """Thread pools and each GPU's memory; call before TensorFlow runs anything.

    A fractional ``gpu`` (``0.25``: four trials share a GPU) caps this
    trial's TensorFlow at its share of the GPU's memory, so packed trials
    cannot starve each other; a whole GPU gets memory growth
    (:func:`lrtune.training.gpu.configure_gpus`).
    """
    import tensorflow as tf

    from lrtune.training.gpu import configure_gpus

    try:
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        configure_gpus(gpu)
    except RuntimeError:
        # The runtime is already up (a reused worker): its settings stay.
        pass
    import keras

    # A reused worker drops the previous trial's model. clear_session() also
    # resets the global dtype policy to float32, so it must come first.
    keras.backend.clear_session()
    # Process-wide: set it either way, since a reused worker may have run another sweep.
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")


def trial_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flat hyperparameters of a Tune trial config (``{"arm": {...}}``).

    A sweep nests each trial's values under ``arm`` so that arms with
    different hyperparameters can share one Tune search space.
    """
    flat = dict(config.get("arm", config))
    if "__trial_index__" in config:  # Tune's Repeater numbers the repeats of a suggestion
        flat["repeat"] = config["__trial_index__"]
    return flat


def trial_seed(base: int, sample: int, repeat: int, repeats: int) -> int:
    """The seed of repeat ``repeat`` of sample ``sample``: ``base + sample * repeats + repeat``.

    The repeats of one configuration get ``base, base + 1, ...``; the next
    sample (``num_samples``, or TPE's next suggestion) continues after them,
    so two samples that happen to be the same configuration (grid search
    with ``num_samples: 2``, random search over choices only) are
    independent runs, not copies. Within a sample, every grid point and arm
    shares the seeds, so they are compared on the same initialisations.

    >>> [trial_seed(7, sample, repeat, repeats=3) for sample in (0, 1) for repeat in range(3)]
    [7, 8, 9, 10, 11, 12]
    """
    return base + sample * repeats + repeat


def config_seed(config: Mapping[str, Any], base: int, repeats: int) -> int:
    """The seed trial config ``config`` runs with: its own ``seed``, else :func:`trial_seed`'s.

    ``config`` is flat (:func:`trial_config`); its ``sample`` and ``repeat``
    (0 when absent) number it for the rule. This is the one place the rule
    is applied to a config: the trainable and the rounds that extend a
    sweep (:mod:`lrtune.engine.rounds`) both call it.

    >>> config_seed({"sample": 1, "repeat": 1}, base=7, repeats=3), config_seed({"seed": 42}, 7, 3)
    (11, 42)
    """
    if config.get("seed") is not None:
        return int(config["seed"])
    return trial_seed(base, int(config.get("sample", 0)), int(config.get("repeat", 0)), repeats)


def run_trial(
    config: Mapping[str, Any],
    data: Dataset,
    settings: TrainSettings,
    report: ReportFn,
    *,
    restore_from: str | None = None,
    extra: Mapping[str, Any] | None = None,
    checkpoint: Checkpointer | None = None,
    restore_rng: bool = True,
    restored_from: str | None = None,
    replay_after: int | None = None,
) -> Reporter:
    """Train one trial to ``settings.epochs``, reporting every epoch.

    ``restore_from`` is a state folder (:func:`lrtune.training.checkpoints.save_state`):
    training continues at the epoch after it, with the optimizer's state,
    iteration count and dropout RNG restored, so a schedule goes on where
    it left off and a re-run epoch repeats exactly. The trial's config may
    differ from the state's (PBT changes ``lr`` and ``momentum``): the new
    values take effect from the next step. ``checkpoint`` writes the
    folder reported with each epoch (default: a local copy of the state;
    none if ``settings.checkpoint`` is false). ``restore_rng=False`` keeps
    the dropout RNG of this run's seed instead of the state's (a PBT member
    continuing from another trial's weights); ``restored_from`` names the
    trial whose state ``restore_from`` is. ``replay_after``: the last epoch
    the caller's scheduler has seen; history rows after it are reported
    again before training (see :meth:`Reporter.replay`).

    Returns the :class:`Reporter`, whose ``status`` is ``done``,
    ``diverged`` or (stopped from outside) ``running``.
    """
    configure_tensorflow(settings.threads, settings.mixed_precision, settings.gpu)
    import keras

    from lrtune.training.checkpoints import load_extra_state, load_state
    from lrtune.training.models import build_model
    from lrtune.training.optimizers import build_optimizer
    from lrtune.training.reporter import Reporter, local_checkpoint

    trial = resolve(config, settings.epochs)
    seed = trial.seed
    keras.utils.set_random_seed(seed)
    schedule = trial.schedule()
    steps_per_epoch = math.ceil(len(data.x_train) / settings.batch_size)
    model = build_model(settings.model, data.num_classes, tuple(data.x_train.shape[1:]))
    optimizer = build_optimizer(trial.optimizer, schedule, steps_per_epoch, **trial.optimizer_settings)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=settings.xla,
    )
    plateau = _plateau(schedule, optimizer, settings)
    initial_epoch, history = 0, []
    if restore_from is not None:
        initial_epoch, history = load_state(restore_from, model, rng=restore_rng)
        if plateau is not None and "plateau" in load_extra_state(restore_from):
            plateau.set_state(load_extra_state(restore_from)["plateau"])
    reporter = Reporter(
        report,
        num_train=len(data.x_train),
        epochs=settings.epochs,
        extra={"seed": seed, **(extra or {})},
        hparams=trial.values(),
        checkpoint=(checkpoint or local_checkpoint) if settings.checkpoint else None,
        history=history,
        restored_from=restored_from,
        extra_state=(lambda: {"plateau": plateau.get_state()}) if plateau is not None else None,
    )
    reporter.set_model(model)
    seen = initial_epoch if replay_after is None else replay_after  # a donor's epochs are not ours to replay
    if history and (initial_epoch >= settings.epochs or seen < initial_epoch):
        reporter.replay(seen)
    if initial_epoch >= settings.epochs:
        return reporter
    from lrtune.training.batches import training_batches, validation_batches

    model.fit(
        training_batches(
            data.x_train, data.y_train, settings.batch_size,
            seed=seed, initial_epoch=initial_epoch, epochs=settings.epochs,
        ),
        # One iterator through every epoch: the pipeline holds the epochs' orders.
        steps_per_epoch=steps_per_epoch,
        epochs=settings.epochs,
        initial_epoch=initial_epoch,
        validation_data=validation_batches(data.x_val, data.y_val, settings.batch_size),
        callbacks=_callbacks(optimizer, plateau, reporter),
        verbose=0,
        # The pipeline shuffles by (seed, epoch); Keras's own shuffle would draw
        # from a global RNG, so a re-run epoch would differ.
        shuffle=False,
    )  # fmt: skip
    reporter.finish()
    return reporter


def _callbacks(optimizer, plateau, reporter) -> list:
    """``fit``'s callbacks, in order.

    Schedule-free AdamW validates at its averaged weights ``x``, swapped in
    around each validation and out before any other callback's epoch end
    (:mod:`lrtune.training.schedule_free`). The plateau rule comes before
    the reporter, so the checkpoint the reporter writes holds its new state.
    """
    from lrtune.training.schedule_free import ValidateAtAverage, is_schedule_free

    callbacks = [ValidateAtAverage()] if is_schedule_free(optimizer) else []
    return [*callbacks, *([plateau] if plateau is not None else []), reporter]


def _plateau(schedule, optimizer, settings: TrainSettings):
    """The reduce-on-plateau callback for a reactive schedule, else None."""
    if not schedule.reactive:
        return None
    from lrtune.training.plateau import ReduceOnPlateau

    return ReduceOnPlateau(schedule, optimizer._learning_rate.multiplier, settings.metric, settings.mode)


def _node() -> tuple[str, str]:
    """(host name, Ray node id) of the process running the trial."""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - outside Ray there is no node id, only a host
        node_id = ""
    return socket.gethostname(), node_id or ""


@dataclasses.dataclass(frozen=True)
class TrialStorage:
    """Where a sweep's trials keep their states, and which trials are over.

    ``finished``: trials that ``trials.parquet`` records as done, stopped
    early or diverged, each with its last row. Tune's experiment snapshot
    lags behind the trials, so ``--resume`` may start a trial again that
    ended (an early-stopping decision the snapshot missed); such a trial
    reports its last row again, ending it, and trains nothing.
    """

    sweep_dir: str
    finished: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


def tune_trainable(
    config: dict[str, Any], data: Dataset, settings: TrainSettings, storage: TrialStorage
) -> None:
    """Ray Tune function trainable: :func:`run_trial` reporting to Tune.

    Each epoch's state goes to the sweep's storage and its row to
    ``ray.tune.report`` with a pointer to that state as the checkpoint. A
    trial started again by Tune (a lost node, ``--resume``, a PBT exploit)
    resumes from :func:`lrtune.training.checkpoints.choose_state`.
    """
    import os
    import time
    import uuid
    import zlib

    from ray import tune

    from lrtune.training.checkpoints import StateStore, choose_state, read_pointer

    # Tune reuses this worker for the next trial only if this function has
    # returned within TUNE_FUNCTION_THREAD_TIMEOUT_S of its last report (2 s
    # by default, read here in the worker): a big model's teardown can take
    # longer, and a refused reuse fails the next trial (ray-project/ray#29268).
    os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = "600"
    trial_id = tune.get_context().get_trial_id()
    own = StateStore(storage.sweep_dir, trial_id)
    pointer = None
    given = tune.get_checkpoint()
    if given is not None:
        with given.as_directory() as directory:
            pointer = read_pointer(directory)
    if trial_id in storage.finished:
        # Over before the kill: the epochs Tune's snapshot missed go to its scheduler
        # (so early-stopping rungs hold them again), then the last row ends the trial.
        states = own.states()
        history = own.meta(states[-1].name)["history"] if states else []
        seen = int(pointer["epoch"]) if pointer and pointer["trial_id"] == trial_id else 0
        for row in history[:-1]:
            if row["epoch"] > seen:
                tune.report({**row, "done": False})
        tune.report({**storage.finished[trial_id], "done": True})
        return
    hyper = trial_config(config)
    hyper["seed"] = config_seed(hyper, settings.seed, settings.repeats)
    run = uuid.uuid4().hex[:12]
    host, node_id = _node()
    # The settings the run trains with travel once, with its first trained epoch (see Reporter).
    extra = {"node": host, "node_id": node_id, "trial": trial_id, "run": run}

    def report(row: dict[str, Any], checkpoint_dir: str | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        # `done` ends the trial with this result: no scheduler acts on a last
        # epoch (PBT would otherwise replace a finished model with a copy).
        tune.report({**row, "done": row["status"] in ("done", "diverged")}, checkpoint=checkpoint)
        # Fault injection for tests: hold the trial after an epoch while this file exists
        # (a node kill must land while the trial still has epochs to train).
        while (hold := os.environ.get("LRTUNE_TEST_HOLD_FILE")) and os.path.exists(hold):
            time.sleep(0.1)

    @contextlib.contextmanager
    def checkpoint(model, epoch: int, history: list[dict[str, Any]], extra_state: Mapping[str, Any] | None):
        name = own.save(model, epoch, history, run=run, hparams=hyper, extra_state=extra_state)
        with tempfile.TemporaryDirectory(prefix="lrtune-pointer-") as directory:
            write_pointer(directory, trial_id, name, epoch)
            yield directory

    donor = (
        StateStore(storage.sweep_dir, pointer["trial_id"])
        if pointer is not None and pointer["trial_id"] != trial_id
        else None
    )
    source = choose_state(own, pointer, hyper, donor)
    for state in own.states():
        # States past the one resumed from belong to an abandoned line of training.
        if source is None or (state.epoch > source[1].epoch and state != source[1]):
            own.delete(state.name)
    try:
        if source is None:
            run_trial(hyper, data, settings, report, extra=extra, checkpoint=checkpoint)
            return
        store, state = source
        if store is own:  # the seed this trial's line of training runs with
            hyper["seed"] = store.meta(state.name)["hparams"].get("seed", hyper["seed"])
        else:
            # A PBT exploit: the donor's weights, but this member's own randomness from
            # here on (batch order, dropout), or two members that clone one donor with
            # one perturbation would train the same model twice.
            hyper["seed"] = zlib.crc32(f"{settings.seed}:{trial_id}:{state.epoch}".encode())
        with store.open(state.name) as directory:
            run_trial(
                hyper, data, settings, report, restore_from=directory, extra=extra, checkpoint=checkpoint,
                restore_rng=store is own, restored_from=store.trial_id,
                # Epochs after the checkpoint Tune resumed from: its scheduler never saw them.
                replay_after=int(pointer["epoch"]) if pointer and store is own else 0 if store is own else None,
            )  # fmt: skip
    finally:
        # Fault injection for tests: a teardown as slow as a big model's.
        time.sleep(float(os.environ.get("LRTUNE_TEST_TEARDOWN_SECONDS", 0)))
