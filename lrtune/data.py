"""CIFAR-10 images from the official files, a folder or an object store.

:func:`load_cifar10` reads either release of CIFAR-10 and returns a
:class:`Dataset` of ``uint8`` images, channels last. Pixels stay 0..255 so
Ray's object store holds one byte per pixel; models divide by 255 with a
``Rescaling`` layer (:func:`scale_pixels` is the same formula in NumPy).

Accepted sources, as a local path or a ``file://``, ``s3://`` or ``gs://``
URI (read through :mod:`pyarrow.fs`, one code path for all of them):

- the python version: ``cifar-10-python.tar.gz`` (any ``.tar``, ``.tar.gz``
  or ``.tgz`` holding ``cifar-10-batches-py/``), the extracted folder or its
  parent. Batch files are pickles, read by an unpickler that admits only
  numpy array reconstruction, so a tampered file cannot run code.
- the binary version: ``cifar-10-binary.tar.gz``, the extracted
  ``cifar-10-batches-bin/`` folder or its parent. Each image is a record of
  one label byte and 3072 pixel bytes.

Both hold ``data_batch_1`` .. ``data_batch_5`` (``.bin`` in the binary
version) and ``test_batch``, of any number of images each, pixels
channel-major: the 32x32 red plane, then green, then blue, each row-major.
An optional ``batches.meta`` (``batches.meta.txt``) must list the usual
class names in the usual order. Archives are streamed and read in memory;
nothing is extracted to disk and member names are only compared, never
used as paths.

The loaded images then go through three seeded steps, in this order:
keep ``classes`` (renumbered 0..n-1), hold out ``validation``, cap at
``limit``.

>>> scale_pixels(np.array([0, 51, 255], dtype=np.uint8))
array([0. , 0.2, 1. ], dtype=float32)
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

__all__ = ["CLASS_NAMES", "DataError", "Dataset", "class_indices", "load_cifar10", "scale_pixels"]

CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

PIXELS_PER_IMAGE = 32 * 32 * 3
# The largest sane batch file holds all 60,000 images: 184 MB of pixels,
# up to twice that in a protocol-2 pickle (bytes stored as latin-1 text in
# UTF-8). A bigger file or tar member is refused before it is read.
_MAX_MEMBER_BYTES = 512 << 20

_ACCEPTED = (
    "lrtune reads cifar-10-python.tar.gz or cifar-10-binary.tar.gz (.tar, .tar.gz or .tgz), "
    "or an extracted cifar-10-batches-py/ or cifar-10-batches-bin/ folder or its parent"
)
_HOW_TO_GIVE = (
    "pass --data PATH (archive, folder, or s3:// / gs:// URI) or set `data: {path: ...}` in the sweep file"
)


class DataError(ValueError):
    """A data source that cannot be loaded: the message names the file and the fix."""


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Training and validation images, ready to share through Ray's object store.

    ``x_*`` are ``uint8`` arrays of shape ``(N, 32, 32, 3)`` (channels last,
    pixels 0..255, not scaled); ``y_*`` are ``int32`` labels in
    ``0..num_classes-1``, indexing ``class_names``. ``source`` says where the
    images came from.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("val", self.x_val, self.y_val)):
            if len(x) != len(y):
                raise ValueError(
                    f"Dataset: x_{split} and y_{split} must have one label per image, got {len(x)=} {len(y)=}"
                )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        return (
            f"Dataset(train={len(self.x_train)}, val={len(self.x_val)}, "
            f"class_names={self.class_names!r}, source={self.source!r})"
        )


def scale_pixels(x) -> np.ndarray:
    """Pixels 0..255 as ``float32`` in [0, 1]: ``x / 255``.

    The same scaling the models apply with a ``Rescaling(1 / 255)`` layer.

    >>> scale_pixels(np.array([[0, 255]], dtype=np.uint8))
    array([[0., 1.]], dtype=float32)
    """
    return np.asarray(x, dtype=np.float32) / np.float32(255)


def load_cifar10(
    source: str | os.PathLike | None = None,
    *,
    classes: Iterable[str | int] | None = None,
    validation: str | float = "test",
    seed: int = 0,
    limit: int | None = None,
) -> Dataset:
    """Load CIFAR-10 from ``source`` (see the module docstring for the formats).

    Args:
        source: an archive, a folder, or a ``file://`` / ``s3://`` / ``gs://``
            URI. ``None`` looks in Keras's cache (``$KERAS_HOME/datasets`` or
            ``~/.keras/datasets``), then lets ``keras.datasets.cifar10`` download
            it.
        classes: names (``"cat"``) or indices (``3``), mixed allowed; labels
            are renumbered 0..n-1 in the order given. ``None`` keeps all ten.
        validation: ``"test"`` uses the test batch. A fraction ``f`` in (0, 1)
            holds out training images instead: the first ``round(f * N)`` of a
            permutation seeded with ``seed`` (a plain permutation, not
            stratified; class shares match the training set's on average).
            The test batch is then unused.
        seed: seeds the validation permutation and the ``limit`` sample.
        limit: keep a seeded random ``limit`` training images and
            ``max(1, limit // 5)`` validation images, for quick runs.
            Without it, and with ``validation="test"``, images keep the
            order of the files.

    Returns:
        A :class:`Dataset`.

    Raises:
        DataError: the source is missing, unreadable, corrupt, not CIFAR-10,
            or the arguments select nothing.
    """
    wanted = class_indices(classes)
    held_out = _check_validation(validation)
    if not isinstance(seed, Integral) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    if limit is not None and (not isinstance(limit, Integral) or isinstance(limit, bool) or limit < 1):
        raise DataError(f"limit must be a positive number of training images or None, got {limit!r}")

    raw, shown = _read_default() if source is None else _read(source)
    rng = np.random.default_rng(seed)

    # Class subset, renumbered through a lookup table: -1 marks a dropped class.
    lookup = np.full(len(CLASS_NAMES), -1, dtype=np.int32)
    lookup[list(wanted)] = np.arange(len(wanted), dtype=np.int32)
    train_idx = np.flatnonzero(lookup[raw.train_labels] >= 0)
    picked = ", ".join(CLASS_NAMES[i] for i in wanted)
    if len(train_idx) == 0:
        raise DataError(f"{shown}: classes [{picked}] leave no training images")

    if held_out == "test":
        val_rows, val_labels = raw.test_rows, raw.test_labels
        val_idx = np.flatnonzero(lookup[val_labels] >= 0)
    else:
        val_rows, val_labels = raw.train_rows, raw.train_labels
        train_idx = rng.permutation(train_idx)
        num_val = round(held_out * len(train_idx))
        if not 0 < num_val < len(train_idx):
            raise DataError(
                f"validation={held_out} of {len(train_idx)} training images holds out {num_val}; "
                "choose a fraction that leaves at least one image on each side"
            )
        train_idx, val_idx = train_idx[num_val:], train_idx[:num_val]
    if len(val_idx) == 0:
        raise DataError(f"{shown}: classes [{picked}] leave no validation images")

    if limit is not None:
        train_idx = rng.permutation(train_idx)[:limit]
        val_idx = rng.permutation(val_idx)[: max(1, limit // 5)]

    return Dataset(
        x_train=_channels_last(raw.train_rows, train_idx),
        y_train=lookup[raw.train_labels[train_idx]],
        x_val=_channels_last(val_rows, val_idx),
        y_val=lookup[val_labels[val_idx]],
        class_names=tuple(CLASS_NAMES[i] for i in wanted),
        source=shown,
    )


def _channels_last(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``rows[index]``, channel-major N x 3072, as contiguous (len(index), 32, 32, 3)."""
    images = np.empty((len(index), 32, 32, 3), dtype=np.uint8)
    # Gathering and transposing 1024 images at a time stays in cache: twice
    # as fast as one whole-array transpose, and no intermediate copy.
    for start in range(0, len(index), 1024):
        chunk = rows[index[start : start + 1024]]
        images[start : start + 1024] = chunk.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images


def class_indices(classes: Iterable[str | int] | None) -> tuple[int, ...]:
    """CIFAR-10 class indices (0..9) for ``classes``, names or indices, in order.

    ``None`` means all ten. Raises :class:`DataError` for an unknown name, an
    index outside 0..9, a class listed twice or an empty list.

    >>> class_indices(["cat", 5])
    (3, 5)
    """
    if classes is None:
        return tuple(range(len(CLASS_NAMES)))
    valid = f"valid classes are {', '.join(CLASS_NAMES)} (or their indices 0..9)"
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
        raise DataError(f"classes must be a list of class names or indices, got {classes!r}; {valid}")
    picked: list[int] = []
    for item in classes:
        if isinstance(item, str):
            if item not in CLASS_NAMES:
                raise DataError(f"classes: unknown class {item!r}; {valid}")
            index = CLASS_NAMES.index(item)
        elif isinstance(item, Integral) and not isinstance(item, bool):
            if not 0 <= item < len(CLASS_NAMES):
                raise DataError(f"classes: index {item} is out of range; {valid}")
            index = int(item)
        else:
            raise DataError(f"classes: {item!r} is neither a class name nor an index; {valid}")
        if index in picked:
            raise DataError(f"classes: {CLASS_NAMES[index]!r} (index {index}) is listed twice; {valid}")
        picked.append(index)
    if not picked:
        raise DataError(f"classes is empty; list at least one: {valid}")
    return tuple(picked)


def _check_validation(validation: Any) -> str | float:
    if isinstance(validation, str) and validation == "test":
        return "test"
    if isinstance(validation, Real) and not isinstance(validation, bool) and 0 < validation < 1:
        return float(validation)
    raise DataError(
        "validation must be 'test' (validate on the test batch) or a fraction in (0, 1) "
        f"of the training images to hold out, got {validation!r}"
    )


# --- Reading: where the bytes come from -------------------------------------


@dataclass(frozen=True)
class _Raw:
    """All images of a source as channel-major rows, labels 0..9."""

    train_rows: np.ndarray
    train_labels: np.ndarray
    test_rows: np.ndarray
    test_labels: np.ndarray


@dataclass(frozen=True)
class _Format:
    """One CIFAR-10 release: its folder and file names and how to parse them."""

    label: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    parse_batch: Callable[[bytes, str], tuple[np.ndarray, np.ndarray]]
    parse_meta: Callable[[bytes, str], tuple[str, ...]]

    @property
    def batch_files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file)


def _read(source: str | os.PathLike) -> tuple[_Raw, str]:
    """Read the python or binary version from a path or URI; returns it and its display name."""
    shown = os.fspath(source)
    if not isinstance(shown, str) or not shown:
        raise DataError(f"data source must be a non-empty path or URI, got {source!r}; {_HOW_TO_GIVE}")
    try:
        if "://" in shown:
            fs, path = pafs.FileSystem.from_uri(shown)
        else:
            fs, path = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(shown))
        info = fs.get_file_info(path)
    except (OSError, ValueError) as e:  # pyarrow: ArrowInvalid (bad URI), OSError (access, network)
        raise DataError(f"{shown}: cannot open: {e}") from e
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"{shown}: no such file or folder; {_ACCEPTED}")
    shown = shown.rstrip("/") or shown
    if info.type == pafs.FileType.Directory:
        fmt, files, where = _read_folder(fs, path, shown)
    else:
        fmt, files, where = _read_archive(fs, path, shown)
    return _decode(fmt, files, where), shown


def _open(fs: pafs.FileSystem, path: str, shown: str):
    try:
        # compression=None: pyarrow would otherwise gunzip by file extension;
        # tarfile detects gzip/bz2/xz itself, whatever the name.
        return fs.open_input_stream(path, compression=None)
    except OSError as e:
        raise DataError(f"{shown}: cannot read: {e}") from e


def _read_folder(
    fs: pafs.FileSystem, path: str, shown: str
) -> tuple[_Format, dict[str, bytes], Callable[[str], str]]:
    entries = _list_folder(fs, path, shown)
    fmt = next((f for f in _FORMATS if entries.keys() & set(f.batch_files)), None)
    if fmt is None:
        inner = next((f for f in _FORMATS if entries.get(f.folder) == pafs.FileType.Directory), None)
        if inner is None:
            raise DataError(f"{shown}: holds no CIFAR-10 batch files; {_ACCEPTED}")
        fmt, path, shown = inner, f"{path.rstrip('/')}/{inner.folder}", f"{shown}/{inner.folder}"
        entries = _list_folder(fs, path, shown)
    missing = [name for name in fmt.batch_files if entries.get(name) != pafs.FileType.File]
    if missing:
        raise DataError(
            f"{shown}: lacks {', '.join(missing)}; a CIFAR-10 {fmt.label} folder holds {', '.join(fmt.batch_files)}"
        )
    files = {}
    for name in (*fmt.batch_files, fmt.meta_file):
        if entries.get(name) == pafs.FileType.File:
            with _open(fs, f"{path.rstrip('/')}/{name}", f"{shown}/{name}") as stream:
                try:
                    # One byte over the cap is enough to refuse, whatever size the listing claims.
                    files[name] = stream.read(_MAX_MEMBER_BYTES + 1)
                except OSError as e:
                    raise DataError(f"{shown}/{name}: cannot read: {e}") from e
            if len(files[name]) > _MAX_MEMBER_BYTES:
                raise DataError(
                    f"{shown}/{name}: is over {_MAX_MEMBER_BYTES} bytes, "
                    f"too large for a CIFAR-10 batch file (at most {_MAX_MEMBER_BYTES})"
                )
    return fmt, files, lambda name: f"{shown}/{name}"


def _list_folder(fs: pafs.FileSystem, path: str, shown: str) -> dict[str, pafs.FileType]:
    try:
        return {info.base_name: info.type for info in fs.get_file_info(pafs.FileSelector(path))}
    except OSError as e:
        raise DataError(f"{shown}: cannot list folder: {e}") from e


def _read_archive(
    fs: pafs.FileSystem, path: str, shown: str
) -> tuple[_Format, dict[str, bytes], Callable[[str], str]]:
    found: dict[_Format, dict[str, bytes]] = {}
    member_names: dict[tuple[_Format, str], str] = {}
    with _open(fs, path, shown) as stream:
        try:
            # "r|*": a forward-only stream (object stores need no seeking), any compression.
            tar = tarfile.open(fileobj=stream, mode="r|*", bufsize=1 << 20)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DataError(f"{shown}: is not a readable tar archive ({e}); {_ACCEPTED}") from e
        member = None
        try:
            with tar:
                for member in tar:
                    folder, _, name = member.name.rstrip("/").rpartition("/")
                    fmt = _FORMAT_BY_FOLDER.get(folder.rpartition("/")[2])
                    if not member.isfile() or fmt is None or name not in (*fmt.batch_files, fmt.meta_file):
                        continue
                    if (fmt, name) in member_names:
                        raise DataError(
                            f"{shown}: holds two copies of {name} "
                            f"({member_names[fmt, name]} and {member.name}); keep one"
                        )
                    if member.size > _MAX_MEMBER_BYTES:
                        raise DataError(
                            f"{shown} (member {member.name}): is {member.size} bytes, "
                            f"too large for a CIFAR-10 batch file (at most {_MAX_MEMBER_BYTES})"
                        )
                    member_names[fmt, name] = member.name
                    found.setdefault(fmt, {})[name] = tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            at = f"member {member.name}" if member is not None else "its first member"
            raise DataError(f"{shown}: archive is truncated or corrupt (while reading {at}): {e}") from e

    fmt = next((f for f in _FORMATS if found.get(f, {}).keys() & set(f.batch_files)), None)
    if fmt is None:
        raise DataError(
            f"{shown}: holds no cifar-10-batches-py/ or cifar-10-batches-bin/ batch files; {_ACCEPTED}"
        )
    files = found[fmt]
    missing = [name for name in fmt.batch_files if name not in files]
    if missing:
        raise DataError(
            f"{shown}: {fmt.folder}/ lacks {', '.join(missing)}; a CIFAR-10 {fmt.label} archive holds "
            f"{', '.join(fmt.batch_files)} (if a download was cut short, the archive is truncated)"
        )
    return fmt, files, lambda name: f"{shown} (member {member_names[fmt, name]})"


def _decode(fmt: _Format, files: Mapping[str, bytes], where: Callable[[str], str]) -> _Raw:
    if fmt.meta_file in files:
        names = fmt.parse_meta(files[fmt.meta_file], where(fmt.meta_file))
        if names != CLASS_NAMES:
            raise DataError(
                f"{where(fmt.meta_file)}: lists classes {', '.join(names)}; "
                f"CIFAR-10 has {', '.join(CLASS_NAMES)} in that order"
            )
    train = [fmt.parse_batch(files[name], where(name)) for name in fmt.train_files]
    test_rows, test_labels = fmt.parse_batch(files[fmt.test_file], where(fmt.test_file))
    return _Raw(
        train_rows=np.concatenate([rows for rows, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_rows=test_rows,
        test_labels=test_labels,
    )


# --- Keras cache and download (source=None) ---------------------------------

# Where Keras's cifar10 loader leaves the python version, searched in this
# order: current Keras 3 extracts to cifar-10-batches-py-target/ (batches in
# its cifar-10-batches-py/) and keeps the download as ..._archive; earlier
# releases used cifar-10-batches-py/ and cifar-10-batches-py.tar.gz. The last
# name is the official archive, for users who copied it there themselves.
_KERAS_CACHE_NAMES = (
    "cifar-10-batches-py-target",
    "cifar-10-batches-py",
    "cifar-10-batches-py-target_archive",
    "cifar-10-batches-py_archive",
    "cifar-10-batches-py.tar.gz",
    "cifar-10-python.tar.gz",
)


def _keras_datasets_dir() -> Path:
    # Mirrors keras.src.backend.config without importing Keras (and TensorFlow).
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return Path(home) / "datasets"


def _find_in_keras_cache(datasets: Path) -> Path | None:
    for name in _KERAS_CACHE_NAMES:
        candidate = datasets / name
        if candidate.is_dir():
            if (candidate / "data_batch_1").is_file() or (
                candidate / "cifar-10-batches-py" / "data_batch_1"
            ).is_file():
                return candidate
        elif candidate.is_file():
            return candidate
    return None


def _download_with_keras() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import keras  # slow (imports the backend): only here, when no data was given

    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    return x_train, y_train, x_test, y_test


def _read_default() -> tuple[_Raw, str]:
    datasets = _keras_datasets_dir()
    cached = _find_in_keras_cache(datasets)
    if cached is not None:
        return _read(cached)
    try:
        x_train, y_train, x_test, y_test = _download_with_keras()
    except Exception as e:  # Keras raises a bare Exception on fetch failure; ImportError without Keras
        raise DataError(
            f"no CIFAR-10 data given and none found: looked in {datasets} for {', '.join(_KERAS_CACHE_NAMES)}, "
            f"then keras.datasets.cifar10.load_data() failed ({type(e).__name__}: {e}); {_HOW_TO_GIVE}"
        ) from e
    where = "keras.datasets.cifar10.load_data()"
    return _Raw(
        train_rows=_rows_from_images(x_train, where),
        train_labels=_labels(y_train, len(x_train), where),
        test_rows=_rows_from_images(x_test, where),
        test_labels=_labels(y_test, len(x_test), where),
    ), where


def _rows_from_images(images: np.ndarray, where: str) -> np.ndarray:
    images = np.asarray(images, dtype=np.uint8)
    if images.shape[1:] == (32, 32, 3):  # Keras returns channels last unless configured otherwise
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1:] != (3, 32, 32):
        raise DataError(f"{where}: returned images of shape {images.shape}, expected (N, 32, 32, 3)")
    return images.reshape(len(images), PIXELS_PER_IMAGE)


# --- Parsing: bytes -> rows and labels --------------------------------------


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Pickle protocol 2 stores bytes as _codecs.encode(text, "latin1"); no other use is admitted.
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding)


# numpy's own pickling callables, so they are right under numpy 1 and 2.
_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # protocols 2-4: empty array, then __setstate__ with its bytes
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5: the bytes, then a view of them
_SCALAR = np.float64(0).__reduce__()[0]


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR file, admitting only the globals numpy arrays need.

    A global outside the list is refused when it is looked up, before
    anything is called, so a ``__reduce__`` payload never runs. Arrays are
    built only through guards that check, before allocating, that the bytes
    they declare (shape x item size) fit in the file: a pickle of a few
    bytes cannot make lrtune allocate gigabytes.
    """

    def __init__(self, file: io.BytesIO, where: str, size: int):
        super().__init__(file, encoding="bytes")
        self._where = where
        self._budget = size  # bytes of arrays the file can back, all arrays together
        # Both module spellings: numpy 1 writes numpy.core, numpy 2 numpy._core.
        self._globals: dict[tuple[str, str], Any] = {
            ("numpy", "ndarray"): self._ndarray,
            ("numpy", "dtype"): self._dtype,
            ("_codecs", "encode"): _latin1_encode,
            **{
                (module, name): value
                for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                for name, value in (("_reconstruct", self._reconstruct), ("scalar", self._scalar))
            },
            **{
                (module, "_frombuffer"): self._frombuffer
                for module in ("numpy.core.numeric", "numpy._core.numeric")
            },
        }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[module, name]
        except KeyError:
            raise DataError(
                f"{self._where}: refuses to load global '{module}.{name}': CIFAR-10 pickles hold only "
                "numpy arrays, lists, bytes and numbers, so the file is not CIFAR-10 or was made to run code"
            ) from None

    def _claim(self, shape: Any, dtype: Any) -> tuple[tuple[int, ...], np.dtype]:
        """Checked ``(shape, dtype)`` of an array about to be made; its bytes come off the budget."""
        try:
            dims = (int(shape),) if isinstance(shape, Integral) else tuple(int(d) for d in shape)
            dtype = np.dtype(dtype)
        except (TypeError, ValueError) as e:
            raise DataError(
                f"{self._where}: declares an array of shape {shape!r}, dtype {dtype!r} ({e})"
            ) from e
        if any(d < 0 for d in dims):
            raise DataError(f"{self._where}: declares an array of negative shape {dims}")
        nbytes = dtype.itemsize
        for d in dims:
            nbytes *= d
        if nbytes > self._budget:
            raise DataError(
                f"{self._where}: declares an array of shape {dims} ({dtype}, {nbytes} bytes) that the "
                "file's bytes cannot hold; the file is truncated or was made to exhaust memory"
            )
        self._budget -= nbytes
        return dims, dtype

    def _dtype(self, *args: Any) -> np.dtype:
        dtype = np.dtype(*args)
        if dtype.hasobject:
            raise DataError(f"{self._where}: holds an array of Python objects; CIFAR-10 arrays hold numbers")
        return dtype

    def _ndarray(self, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
        if args or kwargs:  # a buffer, offset, strides: never in a CIFAR-10 pickle
            raise DataError(f"{self._where}: builds an ndarray over a buffer; CIFAR-10 pickles do not")
        return np.ndarray(*self._claim(shape, dtype))

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype != self._ndarray:  # bound methods: equal, not identical
            raise DataError(f"{self._where}: reconstructs a {subtype!r}; CIFAR-10 pickles hold numpy arrays")
        # __setstate__ then checks that the bytes it is given match the shape it is given.
        return _RECONSTRUCT(np.ndarray, *self._claim(shape, dtype))

    def _scalar(self, dtype: Any, *args: Any) -> Any:
        self._claim((), dtype)
        return _SCALAR(dtype, *args)

    def _frombuffer(self, buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
        dims, dtype = self._claim(shape, dtype)
        if len(memoryview(buffer).cast("B")) != dtype.itemsize * int(np.prod(dims, dtype=np.int64)):
            raise DataError(f"{self._where}: an array's bytes do not match its shape {dims} ({dtype})")
        return _FROMBUFFER(buffer, dtype, dims, order)


def _unpickle(blob: bytes, where: str) -> dict[str, Any]:
    try:
        loaded = _BatchUnpickler(io.BytesIO(blob), where, len(blob)).load()
    except DataError:
        raise
    except Exception as e:  # corrupt pickles fail with many types: EOFError, UnpicklingError, KeyError, ...
        raise DataError(f"{where}: is not a readable pickle ({type(e).__name__}: {e})") from e
    if not isinstance(loaded, dict):
        raise DataError(f"{where}: holds a {type(loaded).__name__}; a CIFAR-10 pickle holds a dict")
    return {key.decode("latin-1") if isinstance(key, bytes) else key: value for key, value in loaded.items()}


def _parse_python_batch(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(blob, where)
    if "labels" not in batch and "fine_labels" in batch:
        raise DataError(
            f"{where}: has 'fine_labels', so it is CIFAR-100; lrtune reads CIFAR-10 (key 'labels')"
        )
    missing = [key for key in ("data", "labels") if key not in batch]
    if missing:
        keys = ", ".join(sorted(map(str, batch)))
        raise DataError(
            f"{where}: has no {' or '.join(map(repr, missing))} (keys: {keys}); a CIFAR-10 batch has 'data' and 'labels'"
        )
    rows = _pixel_rows(batch["data"], where)
    return rows, _labels(batch["labels"], len(rows), where)


def _pixel_rows(data: Any, where: str) -> np.ndarray:
    try:
        array = np.asarray(data)
    except ValueError as e:  # ragged nested lists
        raise DataError(f"{where}: 'data' is not a rectangular array of pixels ({e})") from e
    if array.dtype.kind not in "ui":
        raise DataError(f"{where}: 'data' holds {array.dtype} values; CIFAR-10 pixels are integers 0..255")
    if (
        not (array.ndim == 1 or array.ndim == 2 and array.shape[1] == PIXELS_PER_IMAGE)
        or array.size % PIXELS_PER_IMAGE
    ):
        raise DataError(
            f"{where}: 'data' has shape {array.shape}; expected N x {PIXELS_PER_IMAGE} pixel values "
            f"(32x32 red, green, then blue planes per image), a length divisible by {PIXELS_PER_IMAGE}"
        )
    if array.size == 0:
        raise DataError(f"{where}: holds no images")
    if array.dtype != np.uint8:
        if array.min() < 0 or array.max() > 255:
            raise DataError(
                f"{where}: 'data' has values outside 0..255 (min {array.min()}, max {array.max()})"
            )
        array = array.astype(np.uint8)
    return array.reshape(-1, PIXELS_PER_IMAGE)


def _labels(labels: Any, num_images: int, where: str) -> np.ndarray:
    try:
        array = np.asarray(labels)
    except ValueError as e:
        raise DataError(f"{where}: 'labels' is not a list of integers ({e})") from e
    if array.ndim == 2 and array.shape[1] == 1:  # Keras returns (N, 1)
        array = array[:, 0]
    if array.ndim != 1 or array.dtype.kind not in "ui":
        raise DataError(
            f"{where}: 'labels' must be a list of integers 0..9, got {array.dtype} of shape {array.shape}"
        )
    if len(array) != num_images:
        raise DataError(f"{where}: has {num_images} images but {len(array)} labels")
    outside = (array < 0) | (array >= len(CLASS_NAMES))
    if outside.any():
        raise DataError(
            f"{where}: label {array[outside][0]} is outside 0..9 (CIFAR-10 has {len(CLASS_NAMES)} classes); "
            f"{np.count_nonzero(outside)} labels are out of range"
        )
    return array.astype(np.int32)


def _parse_python_meta(blob: bytes, where: str) -> tuple[str, ...]:
    meta = _unpickle(blob, where)
    names = meta.get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(
            f"{where}: has no 'label_names' list; CIFAR-10 batches.meta lists {', '.join(CLASS_NAMES)}"
        )
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def _parse_binary_batch(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    record = 1 + PIXELS_PER_IMAGE
    if not blob or len(blob) % record:
        raise DataError(
            f"{where}: is {len(blob)} bytes, not a positive multiple of {record} "
            f"(1 label byte + {PIXELS_PER_IMAGE} pixel bytes per image)"
        )
    records = np.frombuffer(blob, dtype=np.uint8).reshape(-1, record)
    return records[:, 1:], _labels(records[:, 0], len(records), where)


def _parse_binary_meta(blob: bytes, where: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in blob.decode("utf-8", "replace").splitlines() if line.strip())


_FORMATS = (
    _Format(
        label="python version",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        parse_batch=_parse_python_batch,
        parse_meta=_parse_python_meta,
    ),
    _Format(
        label="binary version",
        folder="cifar-10-batches-bin",
        train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test_file="test_batch.bin",
        meta_file="batches.meta.txt",
        parse_batch=_parse_binary_batch,
        parse_meta=_parse_binary_meta,
    ),
)
_FORMAT_BY_FOLDER = {fmt.folder: fmt for fmt in _FORMATS}
