"""The files of the ``metrics/`` Parquet dataset: add, withdraw, compact.

Every change is a new file that appears atomically (written under a hidden
name and renamed on a local filesystem; object stores publish an object
only when it is complete). A file that supersedes others (a compaction, or
a rewrite that withdraws rows) names them in its metadata and they are
deleted after it exists; :meth:`PartFiles.finish_replacements` completes a
replacement that a kill interrupted, so a superseded row never comes back.
Between the new file appearing and the old ones going, a plain reader of
the folder can see a row twice; :func:`lrtune.results.tables.load` drops such
duplicates.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs

__all__ = ["PartFiles"]

_REPLACES = b"lrtune.replaces"


class PartFiles:
    """The Parquet files in folder ``root`` of filesystem ``filesystem``.

    ``on_error(path, exception)`` turns an ``OSError`` into the caller's
    error (the sink's :class:`~lrtune.engine.sink.SinkError`).
    """

    def __init__(
        self, filesystem: fs.FileSystem, root: str, schema: pa.Schema, session: str, on_error: Callable
    ):
        self.fs = filesystem
        self.root = root
        self.schema = schema
        self._session = session
        self._sequence = 0
        self._on_error = on_error

    def _name(self, kind: str) -> str:
        self._sequence += 1
        return f"{kind}-{self._session}-{self._sequence:06d}.parquet"

    def names(self) -> list[str]:
        """The visible ``.parquet`` files, in name order."""
        selector = fs.FileSelector(self.root, allow_not_found=True)
        return sorted(
            f.base_name
            for f in self.fs.get_file_info(selector)
            if f.type == fs.FileType.File
            and f.base_name.endswith(".parquet")
            and not f.base_name.startswith(".")
        )

    def read(self, name: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(f"{self.root}/{name}", filesystem=self.fs, columns=columns, schema=self.schema)

    def add(self, table: pa.Table, replaces: Iterable[str] = (), kind: str = "part") -> str:
        """Write ``table`` as a new file that supersedes ``replaces``; returns its name."""
        replaces = list(replaces)
        if replaces:
            metadata = {**(table.schema.metadata or {}), _REPLACES: json.dumps(replaces).encode()}
            table = table.replace_schema_metadata(metadata)
        name = self._name(kind)
        write_atomically(self.fs, table, f"{self.root}/{name}", self._on_error)
        self._delete(name, replaces)
        return name

    def withdraw(self, name: str, drop: Callable[[pa.Table], pa.Array]) -> str | None:
        """Rewrite file ``name`` without the rows where ``drop(table)`` is true.

        Returns the new file's name, or None if nothing was left to keep.
        """
        table = self.read(name)
        keep = table.filter(pc.invert(drop(table)))
        if keep.num_rows == table.num_rows:
            return name
        if keep.num_rows == 0:
            self._delete(None, [name])
            return None
        return self.add(keep, replaces=[name], kind="part")

    def merge(self, names: list[str]) -> str:
        """Write the rows of files ``names`` as one new file that supersedes them; returns its name."""
        table = pa.concat_tables([self.read(n) for n in names])
        return self.add(table, replaces=names, kind="merged")

    def compact(self) -> None:
        """Merge every file into one, sorted by trial and epoch."""
        names = self.names()
        if len(names) < 2:
            return
        table = pa.concat_tables([self.read(n) for n in names])
        table = table.sort_by([("trial_id", "ascending"), ("epoch", "ascending")])
        self.add(table, replaces=names, kind="compacted")

    def finish_replacements(self) -> None:
        """Delete the files that a present file says it replaces."""
        gone: set[str] = set()
        for name in self.names():
            if name in gone:  # replaced by a file listed before it ("compacted-", "merged-" < "part-")
                continue
            metadata = pq.read_schema(f"{self.root}/{name}", filesystem=self.fs).metadata or {}
            if _REPLACES in metadata:
                replaced = json.loads(metadata[_REPLACES])
                self._delete(name, replaced)
                gone.update(replaced)

    def _delete(self, keeper: str | None, names: Iterable[str]) -> None:
        names = list(names)
        if not names:
            return  # no listing: a plain add must cost the same however many files there are
        present = set(self.names())
        for name in names:
            if name in present and name != keeper:
                try:
                    self.fs.delete_file(f"{self.root}/{name}")
                except OSError as e:
                    self._on_error(f"{self.root}/{name}", e)


def write_atomically(filesystem: fs.FileSystem, table: pa.Table, path: str, on_error: Callable) -> None:
    """Write ``table`` to ``path`` so that a reader sees all of it or nothing."""
    directory, name = path.rsplit("/", 1)
    local = isinstance(filesystem, fs.LocalFileSystem)
    target = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}.tmp" if local else path
    try:
        pq.write_table(table, target, filesystem=filesystem, compression="zstd")
        if local:
            filesystem.move(target, path)
    except OSError as e:
        on_error(path, e)
