"""The sweep folder: the one place that knows where a sweep's files live.

Under ``<storage>/<name>/`` (a local path, an NFS path, or an ``s3://`` /
``gs://`` URI; every access goes through ``pyarrow.fs``)::

    sweep.yaml               the validated sweep file, as run
    data.json                what identifies the data it trained on
    metrics/                 Parquet, one row per (trial, epoch)
    trials.parquet           one row per trial
    exploits.parquet         PBT: one row per exploit
    trackers.json            what TensorBoard or a tracker could not show (when anything)
    tensorboard/, events.*   TensorBoard's logs (lrtune.engine.views.tensorboard)
    rounds/<k>/round.json    round k (--extend, confirm): its trials
    rounds/<k>/trials.parquet
    <trial_id>/state/        a trial's saved states (lrtune.training.checkpoints)
    .lrtune.engine.lock      the driver's lock (a lease on object stores)
    find.json, lr_range/, suggestions.yaml   a range test's (lrtune find)

plus Ray Tune's own experiment state. What the files *hold* is the job of
the modules that write them (the schemas in :mod:`lrtune.results.tables`,
the states in :mod:`lrtune.training.checkpoints`); this module names the
paths and reads and writes the two small documents, ``sweep.yaml`` and
``data.json``. It imports nothing of lrtune: every floor may use it.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["SweepFolder", "filesystem"]


def filesystem(path: str):
    """``(pyarrow filesystem, path in it)`` for a local path or a URI.

    A local path is made absolute (``~`` expanded).

    >>> type(filesystem("/tmp/x")[0]).__name__, filesystem("file:///tmp/x")[1]
    ('LocalFileSystem', '/tmp/x')

    Raises:
        ValueError: (pyarrow's ``ArrowInvalid``) a URI pyarrow cannot open.
    """
    from pyarrow import fs

    if "://" in path:
        return fs.FileSystem.from_uri(path)
    return fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


class SweepFolder:
    """The folder of one sweep (or one range test): its paths and its two small documents.

    ``SweepFolder(path)`` takes the folder itself (path or URI);
    :meth:`at` takes the storage and the sweep's name. ``path`` is the
    folder as users name it (a local path made absolute, or the URI);
    ``fs`` and ``root`` are the pyarrow filesystem and the folder's path in
    it, and every ``*_path`` is a path in ``fs``.

    >>> folder = SweepFolder.at("/results", "quick")
    >>> folder.path, folder.trials_path, folder.round_folder(2).path
    ('/results/quick', '/results/quick/trials.parquet', '/results/quick/rounds/2')
    >>> folder.storage, folder.name
    ('/results', 'quick')
    """

    LOCK_NAME = ".lrtune.engine.lock"

    def __init__(self, path: str):
        path = path.rstrip("/")
        if "://" not in path:
            path = os.path.abspath(os.path.expanduser(path))
        self.path = path
        self.fs, self.root = filesystem(path)
        self.root = self.root.rstrip("/")

    @classmethod
    def at(cls, storage: str, name: str) -> SweepFolder:
        """The folder of sweep ``name`` in ``storage``: ``<storage>/<name>``."""
        if "://" not in storage:
            storage = os.path.abspath(os.path.expanduser(storage))
        return cls(f"{storage.rstrip('/')}/{name}")

    def __repr__(self) -> str:
        return f"SweepFolder({self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SweepFolder) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def storage(self) -> str:
        """The storage the folder is in (its parent)."""
        return self.path.rsplit("/", 1)[0]

    @property
    def name(self) -> str:
        """The sweep's name (the folder's last part)."""
        return self.path.rsplit("/", 1)[1]

    # --- paths in fs ---------------------------------------------------------

    def _in(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    @property
    def spec_path(self) -> str:
        return self._in("sweep.yaml")

    @property
    def data_path(self) -> str:
        return self._in("data.json")

    @property
    def metrics_path(self) -> str:
        return self._in("metrics")

    @property
    def trials_path(self) -> str:
        return self._in("trials.parquet")

    @property
    def exploits_path(self) -> str:
        return self._in("exploits.parquet")

    @property
    def trackers_path(self) -> str:
        """``trackers.json``: what TensorBoard or a tracker could not show."""
        return self._in("trackers.json")

    @property
    def lock_path(self) -> str:
        return self._in(self.LOCK_NAME)

    @property
    def rounds_path(self) -> str:
        return self._in("rounds")

    def round_folder(self, index: int) -> SweepFolder:
        """Round ``index``'s folder, ``rounds/<index>/``: its Tune experiment, ``round.json`` and ``trials.parquet``."""
        return SweepFolder(f"{self.path}/rounds/{int(index)}")

    @property
    def round_file_path(self) -> str:
        """``round.json``, in a round's folder."""
        return self._in("round.json")

    def states_path(self, trial_id: str) -> str:
        """``<trial_id>/state``: the trial's saved states."""
        return self._in(trial_id, "state")

    @property
    def find_path(self) -> str:
        """A range test's record (``lrtune find``)."""
        return self._in("find.json")

    @property
    def lr_range_path(self) -> str:
        """A range test's rows: a Parquet dataset."""
        return self._in("lr_range")

    @property
    def suggestions_path(self) -> str:
        return self._in("suggestions.yaml")

    def round_indices(self) -> list[int]:
        """The indices of the round folders present, ascending (round folders are ``rounds/<digits>``)."""
        from pyarrow import fs

        infos = self.fs.get_file_info(fs.FileSelector(self.rounds_path, allow_not_found=True))
        return sorted(
            int(i.base_name) for i in infos if i.type == fs.FileType.Directory and i.base_name.isdigit()
        )

    def exists(self, path: str) -> bool:
        """Whether ``path`` (one of this folder's paths) exists."""
        from pyarrow import fs

        return self.fs.get_file_info(path).type != fs.FileType.NotFound

    # --- documents ------------------------------------------------------------

    def read_text(self, path: str) -> str | None:
        """The text of ``path`` in this folder's filesystem, None if it does not exist.

        Raises:
            OSError: the storage cannot be read.
        """
        try:
            with self.fs.open_input_stream(path) as f:
                return f.read().decode()
        except FileNotFoundError:
            return None

    def write_text(self, path: str, text: str) -> None:
        """Write ``text`` to ``path``, creating the folders above it.

        Raises:
            OSError: the storage cannot be written.
        """
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as f:
            f.write(text.encode())

    def read_spec(self) -> dict[str, Any] | None:
        """``sweep.yaml`` as a plain dict (what :meth:`lrtune.spec.SweepSpec.to_yaml_dict` wrote), None if absent.

        Raises:
            OSError: the storage cannot be read.
        """
        import yaml

        text = self.read_text(self.spec_path)
        return None if text is None else yaml.safe_load(text)

    def write_spec(self, spec: dict[str, Any]) -> None:
        """Write ``sweep.yaml`` (a plain dict, keys in their order)."""
        import yaml

        self.write_text(self.spec_path, yaml.safe_dump(spec, sort_keys=False))

    def read_data_record(self) -> dict[str, Any] | None:
        """``data.json``: the data's source, counts, classes and SHA-256; None if absent.

        Raises:
            OSError: the storage cannot be read.
        """
        text = self.read_text(self.data_path)
        return None if text is None else json.loads(text)

    def write_data_record(self, record: dict[str, Any]) -> None:
        """Write ``data.json``."""
        self.write_text(self.data_path, json.dumps(record, indent=1))

    def read_json(self, path: str) -> Any:
        """The JSON document at ``path`` (``round.json``, ``find.json``), None if absent."""
        text = self.read_text(path)
        return None if text is None else json.loads(text)
