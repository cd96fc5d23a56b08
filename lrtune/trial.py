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

import dataclasses
import math
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lrtune.schedules import make_schedule, schedule_params

if TYPE_CHECKING:
    from lrtune.data import Dataset
    from lrtune.reporter import Reporter

__all__ = [
    "TrainSettings",
    "run_trial",
    "tune_trainable",
    "configure_tensorflow",
    "trial_config",
    "trial_seed",
]

#: Config keys that are not optimizer settings or schedule parameters.
_TRIAL_KEYS = {"optimizer", "schedule", "seed", "repeat", "label", "sample"}

ReportFn = Callable[[dict[str, Any], str | None], None]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """What stays fixed across the trials of a sweep.

    ``threads``: TensorFlow's intra-op threads (the trial's CPUs), so
    concurrent trials on one machine do not oversubscribe its cores.
    ``xla`` and ``mixed_precision`` only pay off on a GPU (XLA measured
    3-4x slower on this project's CPUs).
    """

    model: str = "seed-tiny"
    epochs: int = 10
    batch_size: int = 64
    threads: int | None = None
    xla: bool = False
    mixed_precision: bool = False
    checkpoint: bool = True
    seed: int = 0
    repeats: int = 1


def configure_tensorflow(threads: int | None, mixed_precision: bool = False) -> None:
    """Thread pools and GPU memory growth; call before TensorFlow runs anything.

    Memory growth lets several trials share one GPU (``gpu: 0.25``): without
    it the first trial takes all of the GPU's memory.
    """
    import tensorflow as tf

    try:
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
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


def split_config(config: Mapping[str, Any]) -> tuple[str, Any, dict[str, Any]]:
    """(optimizer name, schedule, optimizer settings) from a trial config.

    Keys are either trial keys (``optimizer``, ``schedule``, ``seed``), the
    schedule's parameters (``lr``, ``drop``, ...) or optimizer settings
    (``momentum``, ``rho``, ...); ``lr`` defaults to the optimizer's.
    """
    from lrtune.optimizers import DEFAULTS

    optimizer = config.get("optimizer", "sgd")
    if optimizer not in DEFAULTS:
        raise ValueError(f"Unknown optimizer {optimizer!r}. Valid optimizers: {', '.join(DEFAULTS)}.")
    name = config.get("schedule", "constant")
    wanted = schedule_params(name)
    params = {k: config[k] for k in wanted if config.get(k) is not None}
    params.setdefault("lr", DEFAULTS[optimizer]["lr"])
    schedule = make_schedule(name, **params)
    settings = {k: v for k, v in config.items() if k not in _TRIAL_KEYS and k not in wanted and v is not None}
    return optimizer, schedule, settings


def run_trial(
    config: Mapping[str, Any],
    data: Dataset,
    settings: TrainSettings,
    report: ReportFn,
    *,
    restore_from: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Reporter:
    """Train one trial to ``settings.epochs``, reporting every epoch.

    ``restore_from`` is a checkpoint directory written by this function:
    training continues at the epoch after it, with the optimizer's state and
    iteration count restored, so a schedule goes on where it left off. The
    trial's config may differ from the checkpoint's (PBT changes ``lr`` and
    ``momentum``): the new values take effect from the next step.

    Returns the :class:`Reporter`, whose ``status`` is ``done``,
    ``diverged`` or (stopped from outside) ``running``.
    """
    configure_tensorflow(settings.threads, settings.mixed_precision)
    import keras

    from lrtune.models import build_model
    from lrtune.optimizers import build_optimizer
    from lrtune.reporter import Reporter, load_checkpoint

    seed = int(config.get("seed", 0))
    keras.utils.set_random_seed(seed)
    optimizer_name, schedule, optimizer_settings = split_config(config)
    steps_per_epoch = math.ceil(len(data.x_train) / settings.batch_size)
    model = build_model(settings.model, data.num_classes)
    model.compile(
        optimizer=build_optimizer(optimizer_name, schedule, steps_per_epoch, **optimizer_settings),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=settings.xla,
    )
    initial_epoch, history = 0, []
    if restore_from is not None:
        initial_epoch, history = load_checkpoint(restore_from, model)
    reporter = Reporter(
        report,
        num_train=len(data.x_train),
        epochs=settings.epochs,
        extra={"seed": seed, **(extra or {})},
        checkpoint=settings.checkpoint,
        history=history,
    )
    if initial_epoch >= settings.epochs:
        reporter.status = "done"
        return reporter
    from lrtune.batches import Batches

    train = Batches(data.x_train, data.y_train, settings.batch_size, shuffle=True, seed=seed)
    train.set_epoch(initial_epoch)
    model.fit(
        train,
        epochs=settings.epochs,
        initial_epoch=initial_epoch,
        validation_data=Batches(data.x_val, data.y_val, settings.batch_size, shuffle=False),
        callbacks=[reporter],
        verbose=0,
    )
    return reporter


def _node() -> tuple[str, str]:
    """(host name, Ray node id) of the process running the trial."""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - outside Ray there is no node id, only a host
        node_id = ""
    return socket.gethostname(), node_id or ""


def tune_trainable(config: dict[str, Any], data: Dataset, settings: TrainSettings) -> None:
    """Ray Tune function trainable: :func:`run_trial` reporting to Tune.

    Each epoch's row goes to ``ray.tune.report`` with a checkpoint; a trial
    restored by Tune (node failure, ``--resume``, PBT exploit) continues
    from ``tune.get_checkpoint()``.
    """
    from ray import tune

    def report(row: dict[str, Any], checkpoint_dir: str | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(row, checkpoint=checkpoint)

    hyper = trial_config(config)
    sample, repeat = int(hyper.get("sample", 0)), int(hyper.get("repeat", 0))
    hyper.setdefault("seed", trial_seed(settings.seed, sample, repeat, settings.repeats))
    host, node_id = _node()
    extra = {"node": host, "node_id": node_id}
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        run_trial(hyper, data, settings, report, extra=extra)
        return
    with checkpoint.as_directory() as directory:
        run_trial(hyper, data, settings, report, restore_from=directory, extra=extra)
