"""Run a validated sweep on Ray Tune.

The translation is direct: each arm of the space becomes a dict of Tune
domains under the key ``arm``, once per sample, numbered ``sample`` (several
arms or samples: a ``tune.grid_search`` over them, so every family gets the
same budget), repeats become a grid over ``repeat`` inside each arm, and
random values are drawn once per sample and held across the grid
(``constant_grid_search``), so the repeats of a configuration differ only
in their seed (:func:`lrtune.training.trial.trial_seed`). Tune's own schedulers,
``FailureConfig``, checkpointing and storage do the rest; lrtune adds the
trainable, the Parquet sink and the live view.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lrtune.engine.errors import StorageError, SweepError
from lrtune.engine.ray_runtime import TRIAL_SLOT, load_while_ray_starts
from lrtune.engine.rounds import Round, round_dir
from lrtune.results.tables import filesystem as results_filesystem
from lrtune.space import KeepInBounds
from lrtune.spec import SweepSpec

__all__ = [
    "run_sweep",
    "SweepOutcome",
    "SweepError",
    "StorageError",
    "param_space",
    "make_scheduler",
    "sweep_dir_for",
]

log = logging.getLogger(__name__)


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
    # One grid entry per (sample, arm), numbered for the seed rule (lrtune.training.trial.trial_seed):
    # Tune draws each entry's random values once and holds them across its inner grid.
    draws = [{**domains, "sample": i} for i in range(spec.num_samples) for domains in arms]
    return {"arm": draws[0] if len(draws) == 1 else tune.grid_search(draws)}


def make_scheduler(spec: SweepSpec):
    """The Tune trial scheduler named in ``spec.scheduler``."""
    from ray.tune.schedulers import FIFOScheduler, HyperBandScheduler, MedianStoppingRule

    from lrtune.engine.asha import AsyncSuccessiveHalving
    from lrtune.engine.pbt import PopulationBasedTraining

    name, s = spec.scheduler.name, spec.scheduler.settings
    if name == "asha":
        return AsyncSuccessiveHalving(
            time_attr="epoch",
            max_t=spec.epochs,
            grace_period=min(s.grace_period, spec.epochs),
            reduction_factor=s.reduction_factor,
            brackets=s.brackets,
        )
    if name == "sha":
        from lrtune.engine.schedulers import SuccessiveHalving

        return SuccessiveHalving(
            time_attr="epoch",
            max_t=spec.epochs,
            grace_period=min(s.grace_period, spec.epochs),
            reduction_factor=s.reduction_factor,
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
            custom_explore_fn=KeepInBounds(spec.pbt_mutations()),
        )
    return FIFOScheduler()


def pbt_mutations(spec: SweepSpec) -> dict[str, Any]:
    """PBT's ``hyperparam_mutations`` for the trial config's ``arm`` (:meth:`SweepSpec.pbt_mutations`)."""
    return {
        key: list(dist.args) if dist.kind in ("grid", "choice") else dist.to_tune()
        for key, dist in spec.pbt_mutations().items()
    }


def sweep_dir_for(storage: str, name: str) -> str:
    """``<storage>/<name>``, with a local storage made absolute."""
    if "://" not in storage:
        storage = os.path.abspath(os.path.expanduser(storage))
    return f"{storage.rstrip('/')}/{name}"


# --- running ------------------------------------------------------------------


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


def _save_spec(spec: SweepSpec, sweep_dir: str, fingerprint: dict[str, Any]) -> None:
    fs_, root = results_filesystem(sweep_dir)
    try:
        fs_.create_dir(root, recursive=True)
        with fs_.open_output_stream(f"{root}/data.json") as f:
            f.write(json.dumps(fingerprint, indent=1).encode())
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


def _save_round(round: Round, sweep_dir: str) -> None:
    fs_, root = results_filesystem(round_dir(sweep_dir, round.index))
    try:
        fs_.create_dir(root, recursive=True)
        with fs_.open_output_stream(f"{root}/round.json") as f:
            f.write(round.to_json().encode())
    except OSError as e:
        raise StorageError(f"cannot write to --storage {sweep_dir}: {e}") from None


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
    round: Round | None = None,
    lock=None,
) -> SweepOutcome:
    """Run ``spec`` to completion (or resume it) and return its outcome.

    With ``round``, run that round of the existing sweep ``spec.name``
    instead (:mod:`lrtune.engine.rounds`; ``resume`` then finishes the
    round): its trials are ``round.trials``, its Tune experiment and
    ``trials.parquet`` are in ``rounds/<index>/``, its rows join the
    sweep's. ``lock`` is the sweep's :class:`~lrtune.engine.lock.SweepLock`
    when the caller holds it already (it stays held).

    The dataset is loaded once here and shared with every trial through
    Ray's object store (``tune.with_parameters``). Everything that can be
    checked is checked before the sweep folder is written: the sweep's
    name, the data, Ray, whether the trials fit on a node, the storage.

    Raises:
        SweepError: the sweep cannot start (the message says why and what to
            do; a :class:`StorageError` when the storage cannot be read or written).
        lrtune.data.DataError: the data cannot be read.
        lrtune.engine.sink.SinkError: the results storage failed.
    """
    import ray
    from ray import tune

    from lrtune.engine.housekeeping import LeaseRenewal, StateRetention
    from lrtune.engine.lock import SweepLock, SweepLocked
    from lrtune.engine.progress import LiveView
    from lrtune.engine.sink import ParquetSink
    from lrtune.training.trial import TrainSettings, TrialStorage

    if address is not None and address.startswith("ray://"):
        raise SweepError(
            f"--address {address}: Ray Client is not supported (Tune's callbacks, which write the "
            "results, would run on the client). Run lrtune on the cluster instead: "
            "`ray job submit --address http://<head>:8265 --working-dir . -- lrtune sweep ... --address auto`"
        )
    sweep_dir = sweep_dir_for(storage, spec.name)
    saved = _read_saved_spec(sweep_dir)
    if round is not None:
        if saved is None:
            raise SweepError(
                f"no sweep {spec.name!r} in {storage} (no {sweep_dir}/sweep.yaml) to add trials to"
            )
    elif resume and saved is None:
        raise SweepError(
            f"--resume: no sweep {spec.name!r} in {storage} (no {sweep_dir}/sweep.yaml); run it without --resume first"
        )
    elif not resume and saved is not None:
        raise SweepError(
            f"sweep {spec.name!r} already exists in {sweep_dir}: add --resume to finish it, "
            "or give another --name or --storage"
        )
    elif resume and saved != spec.to_yaml_dict():
        raise SweepError(
            f"--resume: {sweep_dir}/sweep.yaml differs from the sweep given now; "
            "resume with the same file and --set values, or start a new --name"
        )
    own_lock = lock is None
    lock = lock or SweepLock(sweep_dir)
    if resume and own_lock:
        _acquire(lock, SweepLocked)

    try:
        if spec.search == "tpe":
            try:
                import optuna  # noqa: F401
            except ImportError:
                raise SweepError("search: tpe needs Optuna: pip install 'lrtune[tpe]'") from None
        if not resume and round is None:
            _check_writable(storage, sweep_dir)

        def load():
            dataset = load_sweep_data(spec, data)
            return dataset, data_fingerprint(dataset)

        (dataset, fingerprint), started = load_while_ray_starts(
            load, address, slots=max_concurrent or spec.max_concurrent
        )
    except BaseException:
        if own_lock:
            lock.release()
        raise
    try:
        if resume or round is not None:
            _check_same_data(sweep_dir, fingerprint)
        _check_placement(spec, local=started)
        _check_storage(storage)
        slot, live_limit = _concurrency(spec, max_concurrent)
        experiment = round_dir(sweep_dir, round.index) if round is not None else sweep_dir
        # A round whose start was killed before Tune wrote its state starts again from round.json.
        restore = resume and (round is None or tune.Tuner.can_restore(experiment))
        if round is not None and not restore:
            space = {
                "arm": tune.grid_search(list(round.trials)) if len(round.trials) > 1 else round.trials[0]
            }
            tune_config = _tune_config(spec, live_limit, trial_prefix=f"r{round.index}")
            _save_round(round, sweep_dir)
        elif not resume:
            # Built before sweep.yaml is written: Tune and Optuna check them here.
            space, tune_config = param_space(spec), _tune_config(spec, live_limit)
            _acquire(lock, SweepLocked)
            _save_spec(spec, sweep_dir, fingerprint)
        settings = TrainSettings(
            model=spec.model,
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            threads=max(1, int(spec.resources.cpu)),
            xla=spec.xla,
            mixed_precision=spec.mixed_precision,
            seed=spec.seed,
            metric=spec.metric,
            mode=spec.metric_mode,
            repeats=spec.repeats,
        )
        trial_storage = TrialStorage(sweep_dir, finished=_finished_trials(sweep_dir) if resume else {})
        trainable = trainable_for(
            dataset, settings, trial_storage, cpu=spec.resources.cpu, gpu=spec.resources.gpu, slot=slot
        )
        sink = ParquetSink(
            sweep_dir,
            sweep=spec.name,
            metric=spec.metric,
            mode=spec.metric_mode,
            epochs=spec.epochs,
            trials_file=f"rounds/{round.index}/trials.parquet" if round is not None else "trials.parquet",
        )
        view = LiveView(
            spec,
            sweep_dir,
            sink=sink,
            quiet=quiet,
            console=console,
            trials=len(round.trials) if round is not None else None,
        )
        retention = StateRetention(sweep_dir, pin_clones=spec.scheduler.name == "pbt")
        callbacks = [sink, retention, LeaseRenewal(lock), view]
        # Tune's checkpoints are pointers of a few bytes (lrtune.training.checkpoints):
        # keep every one, so a lagging experiment snapshot never names a
        # deleted one, and store no metrics with them, so snapshots stay small.
        os.environ["TUNE_ONLY_STORE_CHECKPOINT_SCORE_ATTRIBUTE"] = "1"
        if restore:
            tuner = tune.Tuner.restore(
                experiment, trainable=trainable, resume_unfinished=True, resume_errored=False
            )
            # Tune restores the callbacks pickled with the first run; this run's
            # sink and view (fresh state, this run's --quiet) replace them.
            tuner._local_tuner.get_run_config().callbacks = callbacks
            # And the scheduler as it was built, with empty rungs: ASHA's get back
            # what every trial had recorded there (lrtune.engine.asha).
            scheduler = tuner._local_tuner._tune_config.scheduler
            if hasattr(scheduler, "restore_rungs"):
                scheduler.restore_rungs(_metric_history(sweep_dir, spec.metric))
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=space,
                tune_config=tune_config,
                run_config=tune.RunConfig(
                    name=experiment.rsplit("/", 1)[1],
                    storage_path=experiment.rsplit("/", 1)[0],
                    callbacks=callbacks,
                    verbose=0,
                    failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                ),
            )
        # Ray's new console output prints banners whatever the verbosity;
        # the legacy reporter at verbose=0 leaves the terminal to the live view.
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
        with view, warnings.catch_warnings(), _quiet_tune_logs(quiet):
            warnings.filterwarnings("ignore", message=".*reuse_actors.*")
            tuner.fit()
        table = sink.trials_table(view.trials)
        counts: dict[str, int] = {}
        for status in table.column("status").to_pylist():
            counts[status] = counts.get(status, 0) + 1
        return SweepOutcome(sweep_dir=sweep_dir, counts=counts, trials=table)
    finally:
        if own_lock:
            lock.release()
        if started:
            ray.shutdown()


def _metric_history(sweep_dir: str, metric: str) -> dict[str, dict[int, float]]:
    """``{trial_id: {epoch: metric}}`` from the sweep's Parquet rows (every round's)."""
    from lrtune.results.tables import load

    rows = load(sweep_dir).select(["trial_id", "epoch", metric]).to_pylist()
    history: dict[str, dict[int, float]] = {}
    for row in rows:
        if row[metric] is not None:
            history.setdefault(row["trial_id"], {})[row["epoch"]] = row[metric]
    return history


def _acquire(lock, locked_error) -> None:
    try:
        lock.acquire()
    except locked_error as e:
        raise SweepError(str(e)) from None
    except OSError as e:
        raise StorageError(f"cannot write to --storage {lock.sweep_dir}: {e}") from None


@contextlib.contextmanager
def _quiet_tune_logs(quiet: bool):
    """With ``--quiet``, Tune logs no trial tracebacks: trials.parquet and the final table have them."""
    logger = logging.getLogger("ray.tune")
    level = logger.level
    if quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_sweep_data(spec: SweepSpec, data: str | None):
    """The dataset a sweep trains on: ``data`` (else the file's ``data.path``, else Keras's copy), as ``data:`` says.

    Raises:
        lrtune.data.DataError: the data cannot be read.
    """
    from lrtune.data import load_cifar10

    return load_cifar10(
        data or spec.data.path,
        classes=spec.data.classes,
        validation=spec.data.validation,
        seed=spec.seed,
        limit=spec.data.limit,
    )


def data_fingerprint(dataset) -> dict[str, Any]:
    """What identifies the data a sweep trains on: counts, classes and a SHA-256 of every array.

    ``--resume`` compares it: the training-image count sets the steps per
    epoch, so a restored optimizer step count on other data would land on
    another epoch of the schedule.
    """
    import hashlib

    digest = hashlib.sha256()
    for array in (dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val):
        digest.update(str(array.shape).encode())
        digest.update(memoryview(array).cast("B") if array.flags.c_contiguous else array.tobytes())
    return {
        "source": str(dataset.source),
        "num_train": len(dataset.x_train),
        "num_val": len(dataset.x_val),
        "classes": list(dataset.class_names),
        "sha256": digest.hexdigest(),
    }


def _check_same_data(sweep_dir: str, fingerprint: dict[str, Any]) -> None:
    fs_, root = results_filesystem(sweep_dir)
    try:
        with fs_.open_input_stream(f"{root}/data.json") as f:
            before = json.loads(f.read().decode())
    except FileNotFoundError:
        return  # a sweep started before lrtune recorded its data
    if before.get("sha256") != fingerprint["sha256"]:
        raise SweepError(
            f"--resume: the data differs from the data this sweep started with "
            f"({before.get('num_train')} training / {before.get('num_val')} validation images of "
            f"{before.get('source')}; now {fingerprint['num_train']} / {fingerprint['num_val']} of "
            f"{fingerprint['source']}). Steps per epoch and the restored schedules depend on it: "
            "resume with the same --data, or start a new --name"
        )


def _finished_trials(sweep_dir: str) -> dict[str, dict[str, Any]]:
    """Trials that trials.parquet records as over (done, stopped early, diverged), each with its last row."""
    from lrtune.results.tables import load, load_trials

    try:
        trials = load_trials(sweep_dir)
        metrics = load(sweep_dir)
    except FileNotFoundError:
        return {}
    over = {
        r["trial_id"]: r["epochs_run"]
        for r in trials.select(["trial_id", "status", "epochs_run"]).to_pylist()
        if r["status"] in ("done", "stopped_early", "diverged")
    }
    keep = ["epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy", "status"]
    last = {}
    for row in metrics.select(["trial_id", *keep]).to_pylist():
        if over.get(row["trial_id"]) == row["epoch"]:
            last[row.pop("trial_id")] = row
    return last


def _check_placement(spec: SweepSpec, *, local: bool) -> None:
    """Refuse, before anything starts, a sweep whose trials fit on no node.

    On a local Ray nothing will ever add a node; on a cluster the
    autoscaler may, and the trials wait for it.
    """
    import ray

    need = {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(all(r.get(k, 0) >= v for k, v in need.items() if v) for r in nodes):
        return
    have = ", ".join(f"{r.get('CPU', 0):g} CPU {r.get('GPU', 0):g} GPU" for r in nodes) or "no nodes"
    short = [k for k, v in need.items() if v and not any(r.get(k, 0) >= v for r in nodes)]
    fix = " ".join(f"--set resources.{k.lower()}={_fit(k, nodes):g}" for k in short)
    message = (
        f"{spec.name}: a trial needs resources: {{cpu: {spec.resources.cpu:g}, gpu: {spec.resources.gpu:g}}} "
        f"but no node of this Ray has that (nodes: {have}). Run with {fix}"
    )
    if local:
        raise SweepError(message)
    log.warning("%s, or trials wait until the autoscaler adds such a node.", message)


def _fit(resource: str, nodes: list[dict[str, float]]) -> float:
    """The most of ``resource`` any node has (what a trial may ask for)."""
    return max((r.get(resource, 0) for r in nodes), default=0)


def trainable_for(dataset, settings, storage, *, cpu: float, gpu: float, slot: bool = False):
    """The Tune trainable: the dataset goes into the object store once, here.

    ``slot``: each trial also holds one :data:`TRIAL_SLOT` while it runs.
    """
    from ray import tune

    from lrtune.training.trial import tune_trainable

    return tune.with_resources(
        tune.with_parameters(tune_trainable, data=dataset, settings=settings, storage=storage),
        {"cpu": cpu, "gpu": gpu, **({TRIAL_SLOT: 1} if slot else {})},
    )


def _concurrency(spec: SweepSpec, max_concurrent: int | None) -> tuple[bool, int | None]:
    """How the sweep keeps ``max_concurrent or spec.max_concurrent`` trials at once: ``(slot, live)``.

    On lrtune's embedded Ray (it has :data:`TRIAL_SLOT` resources, as many as
    the limit it was started for) each trial holds a slot while it runs:
    ``slot`` is True. Otherwise (``--address``, or a ``ray.init`` of the
    caller's) the only limit Tune has counts *live* trials, paused ones
    included: ``live`` is the limit for schedulers that never hold a trial
    paused for others (fifo, asha, median); sha, hyperband and PBT would
    wait for trials such a limit never starts, so there it is ignored, with
    a warning. TPE always gets ``live`` (Tune's ConcurrencyLimiter: it
    suggests from finished trials, not ahead of them).
    """
    import ray

    limit = max_concurrent or spec.max_concurrent
    slots = ray.cluster_resources().get(TRIAL_SLOT)
    if slots and limit and slots != limit:
        log.warning("max_concurrent %s: this Ray was started with %g trial slots; those apply", limit, slots)
    if spec.search == "tpe" or not limit:
        return bool(slots), limit
    if slots:
        return True, None
    if spec.scheduler.name in ("sha", "hyperband", "pbt"):
        log.warning(
            "max_concurrent %s is ignored on this Ray (not lrtune's own): with scheduler %s it would "
            "leave paused trials waiting for trials it never starts. Leave out --address to run "
            "on lrtune's embedded Ray, where it holds.",
            limit,
            spec.scheduler.name,
        )
        return False, None
    return False, limit


def _tune_config(spec: SweepSpec, live_limit: int | None, trial_prefix: str | None = None):
    """Tune's ``TuneConfig``; ``trial_prefix`` replaces Tune's random trial-id prefix (rounds: ``r<k>``).

    ``live_limit``: most live trials (paused ones included), from :func:`_concurrency`.
    """
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if spec.search == "tpe":
        search_alg = _tpe_search(spec)
    else:
        # Tune ignores max_concurrent_trials beside a given BasicVariantGenerator: the limit goes here.
        search_alg = BasicVariantGenerator(
            constant_grid_search=True, random_state=spec.seed, max_concurrent=live_limit or 0
        )
        if trial_prefix is not None:
            # Tune names trials <random 5 hex>_<counter>; a round's "r<k>_" prefix
            # cannot equal a hex prefix, so trial ids stay unique across rounds.
            if not hasattr(search_alg, "_uuid_prefix"):
                raise SweepError("this Ray's BasicVariantGenerator has no _uuid_prefix: rounds need Ray 2.60")
            search_alg._uuid_prefix = f"{trial_prefix}_"
    return tune.TuneConfig(
        metric=spec.metric,
        mode=spec.metric_mode,
        # Random and grid search: the samples are in the param space (param_space).
        num_samples=spec.num_samples * spec.repeats if spec.search == "tpe" else 1,
        # TPE: a ConcurrencyLimiter, so it suggests from finished trials.
        max_concurrent_trials=live_limit if spec.search == "tpe" else None,
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
