"""Run a validated sweep on Ray Tune.

The translation is direct: each arm of the space becomes a dict of Tune
domains under the key ``arm``, once per sample, numbered ``sample`` (several
arms or samples: a ``tune.grid_search`` over them, so every family gets the
same budget), repeats become a grid over ``repeat`` inside each arm, and
random values are drawn once per sample and held across the grid
(``constant_grid_search``), so the repeats of a configuration differ only
in their seed (:func:`lrtune.trial.trial_seed`). Tune's own schedulers,
``FailureConfig``, checkpointing and storage do the rest; lrtune adds the
trainable, the Parquet sink and the live view.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lrtune.results import filesystem as results_filesystem
from lrtune.space import KeepInBounds
from lrtune.spec import SweepSpec

__all__ = ["run_sweep", "SweepOutcome", "SweepError", "StorageError", "param_space", "make_scheduler", "sweep_dir_for"]

log = logging.getLogger(__name__)


class SweepError(RuntimeError):
    """The sweep cannot start or finish; the message says why and what to do."""


class StorageError(SweepError):
    """The results storage cannot be read or written (``lrtune sweep`` exits 3)."""


@dataclass(frozen=True)
class SweepOutcome:
    """What a finished (or stopped) sweep left behind."""

    sweep_dir: str
    counts: Mapping[str, int]  # trial status -> number of trials
    trials: Any  # pyarrow.Table of trials.parquet

    @property
    def all_failed(self) -> bool:
        total = sum(self.counts.values())
        return total > 0 and self.counts.get("error", 0) == total


# --- spec -> Tune ---------------------------------------------------------------


def param_space(spec: SweepSpec) -> dict[str, Any]:
    """The Tune ``param_space``: ``{"arm": <domains of one arm, or a grid of arms>}``.

    TPE defines its own space (:func:`_tpe_search`): it gets an empty one.
    """
    from ray import tune

    if spec.search == "tpe":
        return {}
    arms = []
    for arm in spec.space:
        domains: dict[str, Any] = {
            key: (
                tune.grid_search(list(d.args))
                if spec.search == "grid" and d.kind == "choice"
                else d.to_tune()
            )
            for key, d in arm.params.items()
        }
        domains["label"] = arm.label
        domains["repeat"] = tune.grid_search(list(range(spec.repeats))) if spec.repeats > 1 else 0
        arms.append(domains)
    # One grid entry per (sample, arm), numbered for the seed rule (lrtune.trial.trial_seed):
    # Tune draws each entry's random values once and holds them across its inner grid.
    draws = [{**domains, "sample": i} for i in range(spec.num_samples) for domains in arms]
    return {"arm": draws[0] if len(draws) == 1 else tune.grid_search(draws)}


def make_scheduler(spec: SweepSpec):
    """The Tune trial scheduler named in ``spec.scheduler``."""
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
        PopulationBasedTraining,
    )

    name, s = spec.scheduler.name, spec.scheduler.settings
    if name == "asha":
        return ASHAScheduler(
            time_attr="epoch",
            max_t=spec.epochs,
            grace_period=min(s.grace_period, spec.epochs),
            reduction_factor=s.reduction_factor,
            brackets=s.brackets,
        )
    if name == "hyperband":
        return HyperBandScheduler(time_attr="epoch", max_t=spec.epochs, reduction_factor=s.reduction_factor)
    if name == "median":
        return MedianStoppingRule(
            time_attr="epoch", grace_period=s.grace_period, min_samples_required=s.min_samples_required
        )
    if name == "pbt":
        return PopulationBasedTraining(
            time_attr="epoch",
            perturbation_interval=s.perturbation_interval,
            quantile_fraction=s.quantile_fraction,
            resample_probability=s.resample_probability,
            hyperparam_mutations={"arm": pbt_mutations(spec)},
            custom_explore_fn=KeepInBounds(pbt_dists(spec)),
        )
    return FIFOScheduler()


def pbt_dists(spec: SweepSpec) -> dict[str, Any]:
    """The distributions PBT perturbs: the file's ``mutations``, or the space's lr and momentum."""
    from lrtune.space import parse_dist

    pbt = spec.scheduler.pbt
    if pbt.mutations:
        return {k: parse_dist(k, v) for k, v in pbt.mutations.items()}
    return {k: d for k, d in spec.space[0].params.items() if k in ("lr", "momentum") and d.kind != "fixed"}


def pbt_mutations(spec: SweepSpec) -> dict[str, Any]:
    """PBT's mutations: :func:`pbt_dists` as Tune lists and domains."""
    mutations = {}
    for key, dist in pbt_dists(spec).items():
        if dist.kind in ("grid", "choice"):
            mutations[key] = list(dist.args)
        else:
            mutations[key] = dist.to_tune()
    return mutations


def sweep_dir_for(storage: str, name: str) -> str:
    """``<storage>/<name>``, with a local storage made absolute."""
    if "://" not in storage:
        storage = os.path.abspath(os.path.expanduser(storage))
    return f"{storage.rstrip('/')}/{name}"


# --- running ------------------------------------------------------------------


def _init_ray(address: str | None) -> bool:
    """Join ``address`` or start an embedded local Ray; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    if address is None:
        # An embedded Ray: quiet workers (no TensorFlow banner per trial).
        ray.init(
            # "local": a new Ray, never one that `ray start` left running here.
            address="local",
            log_to_driver=False,
            logging_level=logging.ERROR,
            include_dashboard=False,
            runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}},
        )
    else:
        # A cluster (or a `ray job submit` driver): keep the job's own runtime env.
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except ConnectionError as e:
            raise SweepError(
                f"--address {address}: cannot join a Ray cluster there ({e}). Start one "
                "(`ray up cluster.yaml`, `ray start --head`), or leave out --address for a local Ray."
            ) from None
    return True


def _check_storage(storage: str) -> None:
    """A cluster of several hosts needs storage they all see."""
    import ray

    if "://" in storage:
        return
    hosts = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
    if len(hosts) <= 1 or _on_network_filesystem(storage):
        return
    raise SweepError(
        f"--storage {storage} is a local path, but the Ray cluster spans {len(hosts)} hosts: "
        "trials on other hosts could not write their checkpoints there. Use shared storage: "
        "an object store (--storage s3://bucket/prefix, gs://...) or a network filesystem "
        "mounted at the same path on every node (NFS)."
    )


def _on_network_filesystem(path: str) -> bool:
    """Whether ``path`` lies on NFS/CIFS/Lustre/etc., from /proc/mounts."""
    network = {"nfs", "nfs4", "cifs", "smb3", "lustre", "glusterfs", "ceph", "fuse.sshfs", "beegfs", "gpfs"}
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return False
    path = os.path.realpath(path)
    best = max(
        (m for m in mounts if path == m[0] or path.startswith(m[0].rstrip("/") + "/")),
        key=lambda m: len(m[0]),
        default=None,
    )
    return best is not None and best[1] in network


def _save_spec(spec: SweepSpec, sweep_dir: str) -> None:
    fs_, root = results_filesystem(sweep_dir)
    try:
        fs_.create_dir(root, recursive=True)
        with fs_.open_output_stream(f"{root}/sweep.yaml") as f:
            f.write(yaml.safe_dump(spec.to_yaml_dict(), sort_keys=False).encode())
    except OSError as e:
        raise StorageError(f"cannot write to --storage {sweep_dir}: {e}") from None


def _check_writable(storage: str, sweep_dir: str) -> None:
    """Write and delete a probe file in ``storage``, leaving no sweep folder behind.

    Raises :class:`StorageError` naming the path when it cannot be written.
    """
    import uuid

    try:
        fs_, root = results_filesystem(sweep_dir.rsplit("/", 1)[0])
        probe = f"{root.rstrip('/')}/.lrtune-probe-{uuid.uuid4().hex[:8]}"
        fs_.create_dir(root, recursive=True)
        with fs_.open_output_stream(probe) as f:
            f.write(b"lrtune checks that it can write here\n")
        fs_.delete_file(probe)
    except (OSError, ValueError) as e:  # pyarrow: ArrowInvalid (a bad URI) is a ValueError
        raise StorageError(f"cannot write to --storage {storage}: {e}") from None


def _check_resources(spec: SweepSpec) -> None:
    """A trial must fit on the local Ray (no autoscaler adds nodes to it)."""
    import ray

    total = ray.cluster_resources()
    for name, key in (("cpu", "CPU"), ("gpu", "GPU")):
        wanted, have = getattr(spec.resources, name), total.get(key, 0.0)
        if wanted > have:
            raise SweepError(
                f"resources.{name}: each trial asks for {wanted:g} {key}s but this machine's Ray has "
                f"{have:g}; lower resources.{name} (--set resources.{name}=...), or join a cluster with --address"
            )


def _read_saved_spec(sweep_dir: str) -> dict[str, Any] | None:
    fs_, root = results_filesystem(sweep_dir)
    try:
        with fs_.open_input_stream(f"{root}/sweep.yaml") as f:
            return yaml.safe_load(f.read().decode())
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(f"cannot read --storage {sweep_dir}: {e}") from None


def run_sweep(
    spec: SweepSpec,
    *,
    storage: str = "./lrtune-results",
    data: str | None = None,
    address: str | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
    quiet: bool = False,
    console=None,
) -> SweepOutcome:
    """Run ``spec`` to completion (or resume it) and return its outcome.

    The dataset is loaded once here and shared with every trial through
    Ray's object store (``tune.with_parameters``). Everything that can
    refuse to start (the data, Optuna, the storage, the resources, Tune's
    search space and scheduler) is checked before ``sweep.yaml`` is written,
    so a failed start leaves no folder behind and the same command can run
    again.

    Raises:
        SweepError: the sweep cannot start (a :class:`StorageError` when the
            storage cannot be read or written).
        lrtune.data.DataError: the data cannot be loaded.
    """
    import ray
    from ray import tune

    from lrtune.data import load_cifar10
    from lrtune.progress import LiveView
    from lrtune.sink import ParquetSink
    from lrtune.trial import TrainSettings

    sweep_dir = sweep_dir_for(storage, spec.name)
    saved = _read_saved_spec(sweep_dir)
    if resume and saved is None:
        raise SweepError(
            f"--resume: no sweep {spec.name!r} in {storage} (no {sweep_dir}/sweep.yaml); run it without --resume first"
        )
    if not resume and saved is not None:
        raise SweepError(
            f"sweep {spec.name!r} already exists in {sweep_dir}: add --resume to finish it, "
            "or give another --name or --storage"
        )
    if resume and saved != spec.to_yaml_dict():
        raise SweepError(
            f"--resume: {sweep_dir}/sweep.yaml differs from the sweep given now; "
            "resume with the same file and --set values, or start a new --name"
        )

    if spec.search == "tpe":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise SweepError("search: tpe needs Optuna: pip install 'lrtune[tpe]'") from None
    if not resume:
        _check_writable(storage, sweep_dir)
    data_source = data or spec.data.path
    dataset = load_cifar10(
        data_source,
        classes=spec.data.classes,
        validation=spec.data.validation,
        seed=spec.seed,
        limit=spec.data.limit,
    )
    started = _init_ray(address)
    try:
        _check_storage(storage)
        if address is None:
            _check_resources(spec)
        settings = TrainSettings(
            model=spec.model,
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            threads=max(1, int(spec.resources.cpu)),
            xla=spec.xla,
            mixed_precision=spec.mixed_precision,
            seed=spec.seed,
            repeats=spec.repeats,
        )
        trainable = trainable_for(dataset, settings, cpu=spec.resources.cpu, gpu=spec.resources.gpu)
        sink = ParquetSink(
            sweep_dir, sweep=spec.name, metric=spec.metric, mode=spec.metric_mode, epochs=spec.epochs
        )
        view = LiveView(spec, sweep_dir, sink=sink, quiet=quiet, console=console)
        callbacks = [sink, view]
        if resume:
            tuner = tune.Tuner.restore(
                sweep_dir, trainable=trainable, resume_unfinished=True, resume_errored=False
            )
            # Tune restores the callbacks pickled with the first run; this run's
            # sink and view (fresh state, this run's --quiet) replace them.
            tuner._local_tuner.get_run_config().callbacks = callbacks
        else:
            # Built before sweep.yaml is written: Tune and Optuna check them here.
            space, tune_config = param_space(spec), _tune_config(spec, max_concurrent)
            _save_spec(spec, sweep_dir)
            tuner = tune.Tuner(
                trainable,
                param_space=space,
                tune_config=tune_config,
                run_config=tune.RunConfig(
                    name=spec.name,
                    storage_path=sweep_dir.rsplit("/", 1)[0],
                    callbacks=callbacks,
                    verbose=0,
                    failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                    checkpoint_config=tune.CheckpointConfig(
                        # The best two and the latest per trial. Tune snapshots the
                        # experiment every num_to_keep trial checkpoints, so 1
                        # would snapshot at every epoch; PBT needs a few more for
                        # the trials that copy another's checkpoint.
                        num_to_keep=4 if spec.scheduler.name == "pbt" else 2,
                        checkpoint_score_attribute=spec.metric,
                        checkpoint_score_order=spec.metric_mode,
                    ),
                ),
            )
        # Ray's new console output prints banners whatever the verbosity;
        # the legacy reporter at verbose=0 leaves the terminal to the live view.
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
        with view, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*reuse_actors.*")
            tuner.fit()
        table = sink.trials_table(view.trials)
        counts: dict[str, int] = {}
        for status in table.column("status").to_pylist():
            counts[status] = counts.get(status, 0) + 1
        return SweepOutcome(sweep_dir=sweep_dir, counts=counts, trials=table)
    finally:
        if started:
            ray.shutdown()


def trainable_for(dataset, settings, *, cpu: float, gpu: float):
    """The Tune trainable: the dataset goes into the object store once, here."""
    from ray import tune

    from lrtune.trial import tune_trainable

    return tune.with_resources(
        tune.with_parameters(tune_trainable, data=dataset, settings=settings), {"cpu": cpu, "gpu": gpu}
    )


def _tune_config(spec: SweepSpec, max_concurrent: int | None):
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if spec.search == "tpe":
        search_alg = _tpe_search(spec)
    else:
        search_alg = BasicVariantGenerator(constant_grid_search=True, random_state=spec.seed)
    return tune.TuneConfig(
        metric=spec.metric,
        mode=spec.metric_mode,
        # Random and grid search: the samples are in the param space (param_space).
        num_samples=spec.num_samples * spec.repeats if spec.search == "tpe" else 1,
        max_concurrent_trials=max_concurrent or spec.max_concurrent,
        time_budget_s=spec.time_budget_s,
        scheduler=make_scheduler(spec),
        search_alg=search_alg,
        # A finished trial's process takes the next trial: TensorFlow is
        # imported once per worker, not once per trial (seconds each).
        reuse_actors=True,
        trial_dirname_creator=lambda trial: f"{trial.trial_id}",
    )


class ArmSpace:
    """Optuna define-by-run space over the arms (picklable: Tune saves its searcher)."""

    def __init__(self, arms):
        self.arms = list(arms)

    def __call__(self, trial) -> dict[str, Any]:
        index = (
            trial.suggest_categorical("arm_index", list(range(len(self.arms)))) if len(self.arms) > 1 else 0
        )
        arm = self.arms[index]
        values: dict[str, Any] = {"label": arm.label}
        for key, dist in arm.params.items():
            name = f"arm{index}.{key}"
            if dist.kind == "fixed":
                values[key] = dist.args[0]
            elif dist.kind in ("choice", "grid"):
                values[key] = trial.suggest_categorical(name, list(dist.args))
            elif dist.kind == "randint":
                values[key] = trial.suggest_int(name, dist.args[0], dist.args[1])
            elif dist.kind == "quniform":
                low, high, q = dist.args
                values[key] = dist.on_grid(trial.suggest_float(name, low, high, step=q))
            else:  # uniform, loguniform, qloguniform (Optuna has no log with a step: onto the grid after)
                value = trial.suggest_float(name, dist.args[0], dist.args[1], log="log" in dist.kind)
                values[key] = dist.on_grid(value) if dist.kind == "qloguniform" else value
        values["sample"] = trial.number  # Optuna numbers its trials 0, 1, ...: the seed rule's sample
        return {"arm": values}


def _tpe_search(spec: SweepSpec):
    """Optuna's TPE over the arms, define-by-run so each arm keeps its own space.

    Repeats go through Tune's ``Repeater``: each suggestion runs once per
    seed and TPE learns from their mean.
    """
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(
        space=ArmSpace(spec.space), metric=spec.metric, mode=spec.metric_mode, seed=spec.seed
    )
    return Repeater(searcher, repeat=spec.repeats, set_index=True) if spec.repeats > 1 else searcher
