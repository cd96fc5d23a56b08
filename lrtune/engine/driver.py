"""The driver session every command shares: one sweep folder, its lock, Ray, the data and the checks.

``lrtune sweep``, ``--extend``, ``confirm`` and ``find`` all run their trials
through a :class:`Driver`, so ``--address``, ``max_concurrent``, the lock and
the data checks mean the same in each::

    with Driver(folder, spec, data=path, address=None, max_concurrent=2) as driver:
        driver.start()                  # data loads while Ray starts; placement, storage
        driver.lock()                   # one driver per sweep folder
        resources = driver.trial_resources()   # cpu, gpu and a trial slot
        ...                             # a Tune run (lrtune.engine.sweep.run_trials)

Leaving the block releases the lock and stops the Ray the driver started
(never one it joined). Nothing is written to the folder before
:meth:`Driver.lock` or :meth:`Driver.save_spec`: a sweep refused by a check
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lrtune.engine.errors import StorageError, SweepError
from lrtune.engine.ray_runtime import TRIAL_SLOT, load_while_ray_starts
from lrtune.engine.translation import Concurrency, check_limit, concurrency
from lrtune.engine.tune_internals import callback_usage_without_integrations
from lrtune.folder import SweepFolder
from lrtune.spec import SweepSpec

__all__ = [
    "Driver",
    "check_sweep_model",
    "data_fingerprint",
    "load_sweep_data",
    "quiet_tune_logs",
    "with_model_function",
]

log = logging.getLogger(__name__)

#: Filesystem types (/proc/mounts) that every host of a cluster can share.
NETWORK_FILESYSTEMS = {
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "lustre",
    "glusterfs",
    "ceph",
    "fuse.sshfs",
    "beegfs",
    "gpfs",
}


#: Where `ray up` leaves the cluster's config on the head (its autoscaler reads it).
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
#: How long a sweep on a `ray up` cluster waits for every host its file lists.
LISTED_NODES_WAIT_S = 180


def load_sweep_data(spec: SweepSpec, data: str | None):
    """The dataset a sweep trains on: what ``data:`` names, from ``data`` (``--data``) if given.

    ``data`` replaces the path of the file's source (the CIFAR archive, the
    image folder or the npz); with neither, CIFAR comes from Keras's copy.

    Raises:
        lrtune.data.DataError: the data cannot be read.
    """
    from lrtune.data import load_dataset

    return load_dataset(spec.data, data, spec.seed)


def data_fingerprint(dataset) -> dict[str, Any]:
    """What identifies the data a sweep trains on: counts, classes and a SHA-256 of every array.

    ``--resume`` compares it: the training-image count sets the steps per
    epoch, so a restored optimizer step count on other data would land on
    another epoch of the schedule.
    """
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


def with_model_function(spec: SweepSpec, function: Callable[..., Any] | None) -> SweepSpec:
    """``spec`` training ``function``'s model (``run_sweep(spec, model=function)``), recorded by name.

    ``sweep.yaml`` then says ``model: {function: "module:qualname"}``; the
    function itself travels to the trials pickled. The file's
    ``model.args`` are kept. ``function`` None: ``spec`` as it is.
    """
    from lrtune.spec import UserModel

    if function is None:
        return spec
    label = (
        f"{getattr(function, '__module__', None) or '__main__'}:{getattr(function, '__qualname__', 'model')}"
    )
    args = spec.model.args if isinstance(spec.model, UserModel) else {}
    return spec.model_copy(update={"model": UserModel(function=label, args=args)})


def check_sweep_model(spec: SweepSpec, data: str | None = None) -> str | None:
    """``lrtune validate``'s check of the user's model: imported and built once against the data's shape.

    The shape and classes come from the data's headers
    (:func:`lrtune.data.describe_data`), not its pixels. Returns the check's
    one-line summary, or None for a built-in model (they take any shape).
    A data source not reachable here is said, and the model is imported
    but not built.

    Raises:
        SweepError: the import fails, or the model does not fit the data.
        lrtune.data.DataError: the data's headers already show it is wrong.
    """
    from lrtune.data import describe_data
    from lrtune.training.models import ModelError, check_model, import_builder

    model = spec.model
    if isinstance(model, str):
        return None
    if model.import_ is None:
        return f"model {model.function}: a Python function, checked when run_sweep(spec, model=...) starts"
    try:
        import_builder(model.import_)
        shape = describe_data(spec.data, data)
        if shape is None:
            return f"model {model.import_}: imported; not built (the data is not reachable from here)"
        return check_model(model.source(), shape.num_classes, shape.input_shape)
    except ModelError as e:
        raise SweepError(str(e)) from None


#: Ray logs, on the driver, the error of every task whose result nobody fetched
#: ("Unhandled error (suppress with 'RAY_IGNORE_UNHANDLED_ERRORS=1')" and the trial's
#: traceback): the trials Tune drops when a storage failure ends the sweep.
_UNHANDLED = "RAY_IGNORE_UNHANDLED_ERRORS"


@contextlib.contextmanager
def quiet_tune_logs(quiet: bool):
    """With ``quiet``, Tune logs no trial tracebacks, nor Ray the errors of trials it dropped.

    trials.parquet and the final table have the trials' errors; a storage
    failure is lrtune's one line.
    """
    logger = logging.getLogger("ray.tune")
    level, unhandled = logger.level, os.environ.get(_UNHANDLED)
    if quiet:
        logger.setLevel(logging.CRITICAL)
        os.environ[_UNHANDLED] = "1"  # read by Ray at each report, in this process
    try:
        yield
    finally:
        logger.setLevel(level)
        if quiet and unhandled is None:
            os.environ.pop(_UNHANDLED, None)


class Driver:
    """One driver's session over one sweep folder.

    Args:
        folder: the sweep's folder (or a range test's).
        spec: the validated sweep (its data, resources, search and scheduler).
        data: the data's path or URI; None: the file's ``data.path``, else
            the source recorded in ``data.json``, else Keras's copy.
        address: a Ray to join (``auto``, ``host:port``); None starts an
            embedded local Ray with ``max_concurrent`` trial slots.
        max_concurrent: most trials running at once (None: the file's).
        model: the Python function that builds the model, when the sweep's
            ``model`` is one (``run_sweep(spec, model=build)``).

    Raises:
        SweepError: (from the constructor) a Ray Client address.
    """

    def __init__(
        self,
        folder: SweepFolder,
        spec: SweepSpec,
        *,
        data: str | None = None,
        address: str | None = None,
        max_concurrent: int | None = None,
        model: Callable[..., Any] | None = None,
    ):
        if address is not None and address.startswith("ray://"):
            raise SweepError(
                f"--address {address}: Ray Client is not supported (Tune's callbacks, which write the "
                "results, would run on the client). Run lrtune on the cluster instead: "
                "`ray job submit --address http://<head>:8265 --working-dir . -- lrtune sweep ... --address auto`"
            )
        from lrtune.engine.lock import SweepLock

        self.folder = folder
        self.spec = spec
        self.data = data
        self.address = address
        self.limit = max_concurrent or spec.max_concurrent
        try:
            check_limit(spec, self.limit)
        except ValueError as e:
            raise SweepError(str(e)) from None
        self.dataset = None
        self.fingerprint: dict[str, Any] | None = None
        self.model_function = model
        #: What the trials build (set by :meth:`start`, after the model was checked).
        self.model = None
        self.started_ray = False
        self.quiet = False  # set by fit: also when Ray stops, the errors of dropped trials stay unprinted
        self.concurrency: Concurrency | None = None
        self._lock = SweepLock(folder.path)
        self._locked = False

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock and stop the Ray this driver started."""
        if self._locked:
            self._locked = False
            self._lock.release()
        if self.started_ray:
            import ray

            self.started_ray = False
            with quiet_tune_logs(self.quiet):
                ray.shutdown()

    # --- the folder -----------------------------------------------------------

    def lock(self) -> None:
        """Hold the folder's lock until :meth:`close` (a second call does nothing).

        Raises:
            SweepError: another driver holds it.
            StorageError: the storage cannot be written.
        """
        from lrtune.engine.lock import SweepLocked

        if self._locked:
            return
        try:
            self._lock.acquire()
        except SweepLocked as e:
            raise SweepError(str(e)) from None
        except OSError as e:
            raise StorageError(f"cannot write to --storage {self.folder.path}: {e}") from None
        self._locked = True

    @property
    def lease(self):
        """The folder's :class:`~lrtune.engine.lock.SweepLock`, for the callback that renews its lease."""
        return self._lock

    def saved_spec(self) -> dict[str, Any] | None:
        """The folder's ``sweep.yaml`` (None: no sweep there).

        Raises:
            StorageError: the storage cannot be read.
        """
        try:
            return self.folder.read_spec()
        except OSError as e:
            raise StorageError(f"cannot read --storage {self.folder.path}: {e}") from None

    def check_writable(self) -> None:
        """Write and delete a probe file in the storage, leaving no sweep folder behind.

        Raises:
            StorageError: the storage cannot be written; the message names it.
        """
        storage = self.folder.storage
        try:
            parent = SweepFolder(storage)
            probe = f"{parent.root}/.lrtune-probe-{uuid.uuid4().hex[:8]}"
            parent.fs.create_dir(parent.root, recursive=True)
            with parent.fs.open_output_stream(probe) as f:
                f.write(b"lrtune checks that it can write here\n")
            parent.fs.delete_file(probe)
        except (OSError, ValueError) as e:  # pyarrow: ArrowInvalid (a bad URI) is a ValueError
            raise StorageError(f"cannot write to --storage {storage}: {e}") from None

    def save_spec(self) -> None:
        """Take the lock and write ``sweep.yaml`` and ``data.json`` (after :meth:`start`).

        Raises:
            StorageError: the storage cannot be written.
        """
        self.lock()
        try:
            self.folder.write_data_record(self.fingerprint or {})
            self.folder.write_spec(self.spec.to_yaml_dict())
        except OSError as e:
            raise StorageError(f"cannot write to --storage {self.folder.path}: {e}") from None

    def recorded_data(self) -> str | None:
        """The data source the sweep recorded in ``data.json`` (None if it recorded none)."""
        record = self.folder.read_data_record()
        return None if record is None else record.get("source")

    # --- Ray and the data -----------------------------------------------------

    def start(self, *, same_data: bool = False) -> None:
        """Load the data while Ray starts, then check that the sweep can run here.

        ``same_data``: the folder holds a sweep already (``--resume``,
        ``--extend``, ``confirm``): refuse data other than what it recorded.

        Raises:
            SweepError: TPE without Optuna, other data than the sweep's, trials
                that fit on no node of a local Ray, local storage on a cluster
                of several hosts, a Ray that cannot be joined.
            lrtune.data.DataError: the data cannot be read.
        """
        import ray

        if self.spec.search == "tpe":
            try:
                import optuna  # noqa: F401
            except ImportError:
                raise SweepError("search: tpe needs Optuna: pip install 'lrtune[tpe]'") from None
        data = self.data or self.spec.data.path or (self.recorded_data() if same_data else None)
        source, ship = self._model_source()

        def load():
            dataset = load_sweep_data(self.spec, data)
            return dataset, data_fingerprint(dataset)

        (self.dataset, self.fingerprint), self.started_ray = load_while_ray_starts(
            load, self.address, slots=self.limit, py_modules=ship
        )
        if same_data:
            self._check_same_data()
        self._check_listed_nodes()
        self._check_placement()
        self._check_gpu_share()
        self._check_storage()
        self.model = self._checked_model(source, shipped=bool(ship) and self.started_ray)
        self.concurrency = concurrency(
            self.limit,
            slots=ray.cluster_resources().get(TRIAL_SLOT),
            scheduler=self.spec.scheduler.name,
            search=self.spec.search,
        )

    def _model_source(self):
        """(the model's :class:`~lrtune.training.models.ModelSource`, paths Ray must ship for it).

        A model named by import is imported here first, so a typo fails
        before Ray starts; its package is shipped with the trials unless it
        is installed (:func:`lrtune.training.models.module_path`).

        Raises:
            SweepError: the import fails; a sweep of a Python function given none.
        """
        from lrtune.training.models import ModelError, ModelSource, module_path

        model = self.spec.model
        if isinstance(model, str):
            return ModelSource(name=model), []
        if model.function is not None:
            if self.model_function is None:
                raise SweepError(
                    f"{self.spec.name}: its model is the Python function {model.function}, which a sweep "
                    "file cannot name: run it from Python with run_sweep(spec, model=<the function>), or "
                    'name a module\'s function in the file: model: {import: "package.module:function"}'
                )
            return model.source(self.model_function), []
        # Only found here, not imported: the driver stays free of the user's code and of
        # TensorFlow (the model is built on a worker, below).
        try:
            path = module_path(model.import_)
        except ModelError as e:
            raise SweepError(str(e)) from None
        return model.source(), [path] if path else []

    def _checked_model(self, source, *, shipped: bool):
        """``source`` ready to send to the trials, after one build (:func:`~lrtune.training.models.check_model`).

        The build runs as a Ray task, as a trial would: with the code Ray
        shipped, and with TensorFlow and the user's module imported in a
        worker, never in the driver (which then stays as light as with a
        built-in model: a driver holding TensorFlow measured slower trials
        on 2 cores). The task's worker exits when it is done.

        Raises:
            SweepError: the model does not build, does not fit the data, or
                cannot be sent to the trials.
        """
        import ray

        from lrtune.training.models import ModelSource, import_builder, module_path

        if source.name is not None:
            return source
        if source.target is not None and not shipped and module_path(source.target) is not None:
            # A Ray this process had started already: its workers get no py_modules, so
            # the function itself travels, pickled by value.
            source = ModelSource(function=import_builder(source.target), args=source.args)
        if source.function is not None:
            _pickle_by_value(source.function)
        shape = tuple(self.dataset.x_train.shape[1:])
        check = ray.remote(num_cpus=0, max_calls=1, max_retries=0)(_check_model)
        ok, text = ray.get(check.remote(source, self.dataset.num_classes, shape))
        if not ok:
            raise SweepError(text)
        log.info("%s", text)
        return source

    def trial_resources(self) -> dict[str, float]:
        """What each trial asks Ray for: the file's CPUs and GPUs, and a trial slot where the limit is slots."""
        slot = self.concurrency is not None and self.concurrency.slot
        return {
            "cpu": self.spec.resources.cpu,
            "gpu": self.spec.resources.gpu,
            **({TRIAL_SLOT: 1} if slot else {}),
        }

    @property
    def live_limit(self) -> int | None:
        """Tune's limit on live trials for this run (:func:`lrtune.engine.translation.concurrency`)."""
        return None if self.concurrency is None else self.concurrency.live

    def fit(self, tuner, *, quiet: bool):
        """``tuner.fit()`` with Tune's console output left to lrtune (the live view, or nothing)."""
        # Ray's new console output prints banners whatever the verbosity;
        # the legacy reporter at verbose=0 leaves the terminal to the live view.
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
        self.quiet = quiet
        with warnings.catch_warnings(), quiet_tune_logs(quiet), callback_usage_without_integrations():
            warnings.filterwarnings("ignore", message=".*reuse_actors.*")
            return tuner.fit()

    def _check_same_data(self) -> None:
        before = self.folder.read_data_record()
        if before is None:
            return  # a sweep started before lrtune recorded its data
        now = self.fingerprint
        if before.get("sha256") != now["sha256"]:
            raise SweepError(
                f"--resume: the data differs from the data this sweep started with "
                f"({before.get('num_train')} training / {before.get('num_val')} validation images of "
                f"{before.get('source')}; now {now['num_train']} / {now['num_val']} of "
                f"{now['source']}). Steps per epoch and the restored schedules depend on it: "
                "resume with the same --data, or start a new --name"
            )

    def _check_listed_nodes(self, timeout_s: float = LISTED_NODES_WAIT_S) -> None:
        """On a cluster `ray up` started from a ``local``-provider file, wait for every listed host.

        The file's copy on the head (:data:`BOOTSTRAP_CONFIG`) lists them. A
        host still missing after ``timeout_s`` stops the sweep rather than
        letting it run on fewer machines than the user listed.

        Raises:
            SweepError: a listed host has no live Ray node; the message names it.
        """
        import time

        import ray
        import yaml

        path = Path(os.path.expanduser(BOOTSTRAP_CONFIG))
        if self.started_ray or not path.is_file():
            return
        provider = (yaml.safe_load(path.read_text()) or {}).get("provider", {})
        if provider.get("type") != "local":
            return
        listed = {provider.get("head_ip"), *(provider.get("worker_ips") or [])} - {None}
        deadline = time.monotonic() + timeout_s
        while True:
            missing = listed - {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
            if not missing:
                return
            if time.monotonic() > deadline:
                break
            log.warning("waiting for Ray on %s (listed in %s)", ", ".join(sorted(missing)), path)
            time.sleep(5)
        raise SweepError(
            f"{path} lists {len(listed)} hosts, but after {timeout_s:.0f} s Ray has no node on "
            f"{', '.join(sorted(missing))}: see `ray status` and the autoscaler's log on the head "
            "(/tmp/ray/session_latest/logs/monitor.*). Ray 2.60's autoscaler v2 starts one worker "
            "fewer than a local-provider file lists (ray-project/ray#57153): cluster-local.yaml's head "
            "start command sets RAY_enable_autoscaler_v2=0 for that"
        )

    def _check_placement(self) -> None:
        """Refuse, before anything starts, trials that fit on no node.

        On a local Ray nothing will ever add a node; on a cluster the
        autoscaler may, and the trials wait for it.
        """
        import ray

        spec = self.spec
        need = {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if any(all(r.get(k, 0) >= v for k, v in need.items() if v) for r in nodes):
            return
        have = ", ".join(f"{r.get('CPU', 0):g} CPU {r.get('GPU', 0):g} GPU" for r in nodes) or "no nodes"
        short = [k for k, v in need.items() if v and not any(r.get(k, 0) >= v for r in nodes)]
        most = {k: max((r.get(k, 0) for r in nodes), default=0) for k in short}
        fix = " ".join(f"--set resources.{k.lower()}={most[k]:g}" for k in short)
        message = (
            f"{spec.name}: a trial needs resources: {{cpu: {spec.resources.cpu:g}, gpu: {spec.resources.gpu:g}}} "
            f"but no node of this Ray has that (nodes: {have}). Run with {fix}"
        )
        if self.started_ray:
            raise SweepError(message)
        log.warning("%s, or trials wait until the autoscaler adds such a node.", message)

    def _check_gpu_share(self, timeout_s: float = 60) -> None:
        """Refuse, before any trial starts, a GPU share that leaves a trial too little memory.

        A task holding the trial's share reads its GPU's total memory where
        the trials will run (:func:`lrtune.training.gpu.gpu_total_memory_mb`).
        No GPU node within ``timeout_s`` (an autoscaler still adding one): the
        trials check their share themselves when they start.
        """
        import ray

        from lrtune.training.gpu import GpuShareError, check_gpu_share, gpu_total_memory_mb

        share = self.spec.resources.gpu
        if not 0 < share < 1:
            return
        probe = ray.remote(gpu_total_memory_mb).options(num_gpus=share, num_cpus=0, max_retries=0)
        ref = probe.remote()
        try:
            totals = ray.get(ref, timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref)
            log.warning(
                "no GPU node answered in %.0f s: each trial checks its GPU share as it starts", timeout_s
            )
            return
        for total_mb in totals:
            try:
                check_gpu_share(total_mb, share)
            except GpuShareError as e:
                raise SweepError(f"{self.spec.name}: {e}") from None

    def _check_storage(self) -> None:
        """A cluster of several hosts needs storage they all see."""
        import ray

        storage = self.folder.storage
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
    return best is not None and best[1] in NETWORK_FILESYSTEMS


def _pickle_by_value(function) -> None:
    """Make ``function`` travel to the trials whole: its module pickled by value unless installed.

    Cloudpickle sends functions of ``__main__`` (a script, a notebook) by
    value already; a function of a module that only this machine has is
    registered so its module goes with it.

    Raises:
        SweepError: it cannot be pickled (the message says to put it in a module).
    """
    import sys

    from ray import cloudpickle

    from lrtune.training.models import module_path

    name = getattr(function, "__module__", None) or "__main__"
    if name != "__main__" and module_path(f"{name}:f") is not None:
        cloudpickle.register_pickle_by_value(sys.modules.get(name.split(".")[0]) or sys.modules[name])
    try:
        cloudpickle.dumps(function)
    except Exception as e:  # noqa: BLE001 - any pickling failure: say what to do
        raise SweepError(
            f"model: the function {name}:{getattr(function, '__qualname__', function)!r} cannot be sent to "
            f"the trials ({type(e).__name__}: {e}); put it in a module and name it in the sweep file as "
            'model: {import: "package.module:function"}'
        ) from None


def _check_model(source, num_classes: int, input_shape: tuple[int, ...]) -> tuple[bool, str]:
    """(True, summary) or (False, the error): :func:`lrtune.training.models.check_model`, where Ray runs it."""
    from lrtune.training.models import ModelError, check_model

    try:
        return True, check_model(source, num_classes, input_shape)
    except ModelError as e:
        return False, str(e)
