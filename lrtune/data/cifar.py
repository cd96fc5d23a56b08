"""CIFAR-10 and CIFAR-100 images from the official files, a folder or an object store.

:func:`load_cifar10` reads either release of CIFAR-10, :func:`load_cifar100`
the python release of CIFAR-100 (fine or coarse labels); both return a
:class:`~lrtune.data.dataset.Dataset` of ``uint8`` images, channels last.
Pixels stay 0..255 so Ray's object store holds one byte per pixel; models
divide by 255 with a ``Rescaling`` layer (:func:`scale_pixels` is the same
formula in NumPy).

Accepted sources, as a local path or a ``file://``, ``s3://`` or ``gs://``
URI (read through :mod:`pyarrow.fs`, one code path for all of them):

- CIFAR-10, python version: ``cifar-10-python.tar.gz`` (any ``.tar``,
  ``.tar.gz`` or ``.tgz`` holding ``cifar-10-batches-py/``), the extracted
  folder or its parent. Batch files are pickles, read by an unpickler that
  admits only numpy array reconstruction, so a tampered file cannot run
  code.
- CIFAR-10, binary version: ``cifar-10-binary.tar.gz``, the extracted
  ``cifar-10-batches-bin/`` folder or its parent. Each image is a record of
  one label byte and 3072 pixel bytes.
- CIFAR-100, python version: ``cifar-100-python.tar.gz`` holding
  ``cifar-100-python/`` with ``train``, ``test`` and ``meta``, the extracted
  folder or its parent. ``train`` and ``test`` are pickles of ``data``,
  ``fine_labels`` and ``coarse_labels`` (the same safe unpickler).

CIFAR-10 holds ``data_batch_1`` .. ``data_batch_5`` (``.bin`` in the binary
version) and ``test_batch``, of any number of images each; pixels are
channel-major in every file: the 32x32 red plane, then green, then blue,
each row-major. An optional ``batches.meta`` (``batches.meta.txt``, or
CIFAR-100's ``meta``) must list the usual class names in the usual order.
Archives are streamed and read in memory; nothing is extracted to disk and
member names are only compared, never used as paths.

The loaded images then go through :func:`lrtune.data.dataset.choose`: keep
``classes`` (renumbered 0..n-1), hold out ``validation``, cap at ``limit``.

>>> class_indices(["cat", 5])
(3, 5)
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
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from lrtune.data.dataset import DataError, Dataset, check_options, choose

__all__ = [
    "CLASS_NAMES",
    "CIFAR100_COARSE_NAMES",
    "CIFAR100_FINE_NAMES",
    "class_indices",
    "cifar_class_names",
    "load_cifar10",
    "load_cifar100",
]

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

# As the official release's meta lists them (fine_label_names, coarse_label_names).
CIFAR100_FINE_NAMES: tuple[str, ...] = (
    *("apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle"),
    *("bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle"),
    *("chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup"),
    *("dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house"),
    *("kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man"),
    *("maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid"),
    *("otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine"),
    *("possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew"),
    *("skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower"),
    *("sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train", "trout"),
    *("tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm"),
)
CIFAR100_COARSE_NAMES: tuple[str, ...] = (
    *("aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables"),
    *("household_electrical_devices", "household_furniture", "insects", "large_carnivores"),
    *("large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores"),
    *("medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees"),
    *("vehicles_1", "vehicles_2"),
)

PIXELS_PER_IMAGE = 32 * 32 * 3
# The largest sane batch file holds all 60,000 images: 184 MB of pixels,
# up to twice that in a protocol-2 pickle (bytes stored as latin-1 text in
# UTF-8). A bigger file or tar member is refused before it is read.
_MAX_MEMBER_BYTES = 512 << 20

_ACCEPTED = {
    "cifar10": "lrtune reads cifar-10-python.tar.gz or cifar-10-binary.tar.gz (.tar, .tar.gz or .tgz), "
    "or an extracted cifar-10-batches-py/ or cifar-10-batches-bin/ folder or its parent",
    "cifar100": "lrtune reads cifar-100-python.tar.gz (.tar, .tar.gz or .tgz), "
    "or an extracted cifar-100-python/ folder or its parent",
}
_HOW_TO_GIVE = (
    "pass --data PATH (archive, folder, or s3:// / gs:// URI) or set `data: {path: ...}` in the sweep file"
)


def cifar_class_names(dataset: str, labels: str = "fine") -> tuple[str, ...]:
    """The class names of ``dataset`` (``cifar10`` or ``cifar100``, its ``fine`` or ``coarse`` labels).

    >>> len(cifar_class_names("cifar100")), len(cifar_class_names("cifar100", "coarse"))
    (100, 20)
    """
    if dataset == "cifar10":
        return CLASS_NAMES
    return CIFAR100_FINE_NAMES if labels == "fine" else CIFAR100_COARSE_NAMES


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
    return _load("cifar10", source, classes=classes, validation=validation, seed=seed, limit=limit)


def load_cifar100(
    source: str | os.PathLike | None = None,
    *,
    labels: str = "fine",
    classes: Iterable[str | int] | None = None,
    validation: str | float = "test",
    seed: int = 0,
    limit: int | None = None,
) -> Dataset:
    """Load CIFAR-100 from ``source``, its 100 ``fine`` or 20 ``coarse`` labels.

    As :func:`load_cifar10`, with ``classes`` naming CIFAR-100 classes
    (:data:`CIFAR100_FINE_NAMES` or :data:`CIFAR100_COARSE_NAMES`).
    ``None`` looks in Keras's cache, then lets ``keras.datasets.cifar100``
    download it.
    """
    if labels not in ("fine", "coarse"):
        raise DataError(f"labels must be 'fine' (100 classes) or 'coarse' (20 superclasses), got {labels!r}")
    return _load(
        "cifar100", source, labels=labels, classes=classes, validation=validation, seed=seed, limit=limit
    )


def _load(
    dataset: str,
    source: str | os.PathLike | None,
    *,
    labels: str = "fine",
    classes: Iterable[str | int] | None,
    validation: str | float,
    seed: int,
    limit: int | None,
) -> Dataset:
    names = cifar_class_names(dataset, labels)
    wanted = class_indices(classes, names)
    held_out = check_options(validation, seed, limit)
    formats = _FORMATS[dataset, labels]
    raw, shown = _read_default(dataset, labels) if source is None else _read(source, formats)
    split = choose(
        raw.train_labels,
        raw.test_labels,
        wanted=wanted,
        num_classes=len(names),
        names=names,
        validation=held_out,
        seed=seed,
        limit=limit,
        shown=shown,
    )
    return Dataset(
        x_train=_channels_last(raw.train_rows, split.train_idx),
        y_train=split.y_train,
        x_val=_channels_last(raw.train_rows if split.val_from_train else raw.test_rows, split.val_idx),
        y_val=split.y_val,
        class_names=tuple(names[i] for i in wanted),
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


def class_indices(
    classes: Iterable[str | int] | None, names: tuple[str, ...] = CLASS_NAMES
) -> tuple[int, ...]:
    """Class indices into ``names`` (CIFAR-10's by default) for ``classes``, names or indices, in order.

    ``None`` means all. Raises :class:`DataError` for an unknown name, an
    index outside ``0..len(names)-1``, a class listed twice or an empty list.

    >>> class_indices(["cat", 5])
    (3, 5)
    """
    if classes is None:
        return tuple(range(len(names)))
    valid = f"valid classes are {', '.join(names)} (or their indices 0..{len(names) - 1})"
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
        raise DataError(f"classes must be a list of class names or indices, got {classes!r}; {valid}")
    picked: list[int] = []
    for item in classes:
        if isinstance(item, str):
            if item not in names:
                raise DataError(f"classes: unknown class {item!r}; {valid}")
            index = names.index(item)
        elif isinstance(item, Integral) and not isinstance(item, bool):
            if not 0 <= item < len(names):
                raise DataError(f"classes: index {item} is out of range; {valid}")
            index = int(item)
        else:
            raise DataError(f"classes: {item!r} is neither a class name nor an index; {valid}")
        if index in picked:
            raise DataError(f"classes: {names[index]!r} (index {index}) is listed twice; {valid}")
        picked.append(index)
    if not picked:
        raise DataError(f"classes is empty; list at least one: {valid}")
    return tuple(picked)


# --- Reading: where the bytes come from -------------------------------------


@dataclass(frozen=True)
class _Raw:
    """All images of a source as channel-major rows, labels 0..num_classes-1."""

    train_rows: np.ndarray
    train_labels: np.ndarray
    test_rows: np.ndarray
    test_labels: np.ndarray


@dataclass(frozen=True)
class _Format:
    """One CIFAR release: its folder and file names and how to parse them."""

    key: str  # as sweep files write it: cifar10, cifar100
    dataset: str  # as people write it: CIFAR-10, CIFAR-100
    label: str
    class_names: tuple[str, ...]
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    parse_batch: Callable[[bytes, str], tuple[np.ndarray, np.ndarray]]
    parse_meta: Callable[[bytes, str], tuple[str, ...]]

    @property
    def batch_files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file)


def _read(source: str | os.PathLike, formats: tuple[_Format, ...]) -> tuple[_Raw, str]:
    """Read one of ``formats`` from a path or URI; returns it and its display name."""
    accepted = _ACCEPTED[formats[0].key]
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
        raise DataError(f"{shown}: no such file or folder; {accepted}")
    shown = shown.rstrip("/") or shown
    if info.type == pafs.FileType.Directory:
        fmt, files, where = _read_folder(fs, path, shown, formats)
    else:
        fmt, files, where = _read_archive(fs, path, shown, formats)
    return _decode(fmt, files, where), shown


def _open(fs: pafs.FileSystem, path: str, shown: str):
    try:
        # compression=None: pyarrow would otherwise gunzip by file extension;
        # tarfile detects gzip/bz2/xz itself, whatever the name.
        return fs.open_input_stream(path, compression=None)
    except OSError as e:
        raise DataError(f"{shown}: cannot read: {e}") from e


def _read_folder(
    fs: pafs.FileSystem, path: str, shown: str, formats: tuple[_Format, ...]
) -> tuple[_Format, dict[str, bytes], Callable[[str], str]]:
    entries = _list_folder(fs, path, shown)
    fmt = next((f for f in formats if entries.keys() & set(f.batch_files)), None)
    if fmt is None:
        inner = next((f for f in formats if entries.get(f.folder) == pafs.FileType.Directory), None)
        if inner is None:
            raise DataError(
                f"{shown}: holds no {formats[0].dataset} batch files; {_ACCEPTED[formats[0].key]}"
            )
        fmt, path, shown = inner, f"{path.rstrip('/')}/{inner.folder}", f"{shown}/{inner.folder}"
        entries = _list_folder(fs, path, shown)
    missing = [name for name in fmt.batch_files if entries.get(name) != pafs.FileType.File]
    if missing:
        raise DataError(
            f"{shown}: lacks {', '.join(missing)}; a {fmt.dataset} {fmt.label} folder holds {', '.join(fmt.batch_files)}"
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
                    f"too large for a {fmt.dataset} batch file (at most {_MAX_MEMBER_BYTES})"
                )
    return fmt, files, lambda name: f"{shown}/{name}"


def _list_folder(fs: pafs.FileSystem, path: str, shown: str) -> dict[str, pafs.FileType]:
    try:
        return {info.base_name: info.type for info in fs.get_file_info(pafs.FileSelector(path))}
    except OSError as e:
        raise DataError(f"{shown}: cannot list folder: {e}") from e


def _read_archive(
    fs: pafs.FileSystem, path: str, shown: str, formats: tuple[_Format, ...]
) -> tuple[_Format, dict[str, bytes], Callable[[str], str]]:
    by_folder = {f.folder: f for f in formats}
    found: dict[_Format, dict[str, bytes]] = {}
    member_names: dict[tuple[_Format, str], str] = {}
    with _open(fs, path, shown) as stream:
        try:
            # "r|*": a forward-only stream (object stores need no seeking), any compression.
            tar = tarfile.open(fileobj=stream, mode="r|*", bufsize=1 << 20)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DataError(
                f"{shown}: is not a readable tar archive ({e}); {_ACCEPTED[formats[0].key]}"
            ) from e
        member = None
        try:
            with tar:
                for member in tar:
                    folder, _, name = member.name.rstrip("/").rpartition("/")
                    fmt = by_folder.get(folder.rpartition("/")[2])
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
                            f"too large for a {fmt.dataset} batch file (at most {_MAX_MEMBER_BYTES})"
                        )
                    member_names[fmt, name] = member.name
                    found.setdefault(fmt, {})[name] = tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            at = f"member {member.name}" if member is not None else "its first member"
            raise DataError(f"{shown}: archive is truncated or corrupt (while reading {at}): {e}") from e

    fmt = next((f for f in formats if found.get(f, {}).keys() & set(f.batch_files)), None)
    if fmt is None:
        folders = " or ".join(f"{f.folder}/" for f in formats)
        raise DataError(f"{shown}: holds no {folders} batch files; {_ACCEPTED[formats[0].key]}")
    files = found[fmt]
    missing = [name for name in fmt.batch_files if name not in files]
    if missing:
        raise DataError(
            f"{shown}: {fmt.folder}/ lacks {', '.join(missing)}; a {fmt.dataset} {fmt.label} archive holds "
            f"{', '.join(fmt.batch_files)} (if a download was cut short, the archive is truncated)"
        )
    return fmt, files, lambda name: f"{shown} (member {member_names[fmt, name]})"


def _decode(fmt: _Format, files: Mapping[str, bytes], where: Callable[[str], str]) -> _Raw:
    if fmt.meta_file in files:
        names = fmt.parse_meta(files[fmt.meta_file], where(fmt.meta_file))
        if names != fmt.class_names:
            raise DataError(
                f"{where(fmt.meta_file)}: lists classes {', '.join(names)}; "
                f"{fmt.dataset} has {', '.join(fmt.class_names)} in that order"
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

# Where Keras's cifar10 and cifar100 loaders leave the python version,
# searched in this order: current Keras 3 extracts to NAME-target/ (the
# release's folder inside it) and keeps the download as NAME..._archive;
# earlier releases used NAME/ and NAME.tar.gz. The last name is the official
# archive, for users who copied it there themselves.
_KERAS_CACHE_NAMES = {
    "cifar10": (
        "cifar-10-batches-py-target",
        "cifar-10-batches-py",
        "cifar-10-batches-py-target_archive",
        "cifar-10-batches-py_archive",
        "cifar-10-batches-py.tar.gz",
        "cifar-10-python.tar.gz",
    ),
    "cifar100": (
        "cifar-100-python-target",
        "cifar-100-python",
        "cifar-100-python-target_archive",
        "cifar-100-python_archive",
        "cifar-100-python.tar.gz",
    ),
}


def _keras_datasets_dir() -> Path:
    # Mirrors keras.src.backend.config without importing Keras (and TensorFlow).
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return Path(home) / "datasets"


def _find_in_keras_cache(datasets: Path, fmt: _Format) -> Path | None:
    first = fmt.train_files[0]
    for name in _KERAS_CACHE_NAMES[fmt.key]:
        candidate = datasets / name
        if candidate.is_dir():
            if (candidate / first).is_file() or (candidate / fmt.folder / first).is_file():
                return candidate
        elif candidate.is_file():
            return candidate
    return None


def _download_with_keras(
    dataset: str = "cifar10", labels: str = "fine"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import keras  # slow (imports the backend): only here, when no data was given

    if dataset == "cifar10":
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    else:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar100.load_data(label_mode=labels)
    return x_train, y_train, x_test, y_test


def _read_default(dataset: str, labels: str) -> tuple[_Raw, str]:
    formats = _FORMATS[dataset, labels]
    datasets = _keras_datasets_dir()
    cached = _find_in_keras_cache(datasets, formats[0])
    if cached is not None:
        return _read(cached, formats)
    call = f"keras.datasets.{dataset}.load_data({'' if dataset == 'cifar10' else f'label_mode={labels!r}'})"
    try:
        x_train, y_train, x_test, y_test = _download_with_keras(dataset, labels)
    except Exception as e:  # Keras raises a bare Exception on fetch failure; ImportError without Keras
        raise DataError(
            f"no {formats[0].dataset} data given and none found: looked in {datasets} for "
            f"{', '.join(_KERAS_CACHE_NAMES[dataset])}, then {call} failed ({type(e).__name__}: {e}); "
            f"{_HOW_TO_GIVE}"
        ) from e
    num_classes = len(formats[0].class_names)
    return _Raw(
        train_rows=_rows_from_images(x_train, call),
        train_labels=_labels(y_train, len(x_train), call, "labels", num_classes),
        test_rows=_rows_from_images(x_test, call),
        test_labels=_labels(y_test, len(x_test), call, "labels", num_classes),
    ), call


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

    def __init__(self, file: io.BytesIO, where: str, size: int, dataset: str):
        super().__init__(file, encoding="bytes")
        self._where = where
        self._dataset = dataset
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
                f"{self._where}: refuses to load global '{module}.{name}': {self._dataset} pickles hold only "
                f"numpy arrays, lists, bytes and numbers, so the file is not {self._dataset} or was made to run code"
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
            raise DataError(
                f"{self._where}: holds an array of Python objects; {self._dataset} arrays hold numbers"
            )
        return dtype

    def _ndarray(self, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
        if args or kwargs:  # a buffer, offset, strides: never in a CIFAR pickle
            raise DataError(f"{self._where}: builds an ndarray over a buffer; {self._dataset} pickles do not")
        return np.ndarray(*self._claim(shape, dtype))

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype != self._ndarray:  # bound methods: equal, not identical
            raise DataError(
                f"{self._where}: reconstructs a {subtype!r}; {self._dataset} pickles hold numpy arrays"
            )
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


def _unpickle(blob: bytes, where: str, dataset: str) -> dict[str, Any]:
    try:
        loaded = _BatchUnpickler(io.BytesIO(blob), where, len(blob), dataset).load()
    except DataError:
        raise
    except Exception as e:  # corrupt pickles fail with many types: EOFError, UnpicklingError, KeyError, ...
        raise DataError(f"{where}: is not a readable pickle ({type(e).__name__}: {e})") from e
    if not isinstance(loaded, dict):
        raise DataError(f"{where}: holds a {type(loaded).__name__}; a {dataset} pickle holds a dict")
    return {key.decode("latin-1") if isinstance(key, bytes) else key: value for key, value in loaded.items()}


def _python_batch(
    dataset: str, key: str, num_classes: int
) -> Callable[[bytes, str], tuple[np.ndarray, np.ndarray]]:
    """A parser of one python-version batch file whose labels are under ``key``."""

    def parse(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
        batch = _unpickle(blob, where, dataset)
        if key == "labels" and "fine_labels" in batch:
            raise DataError(
                f"{where}: has 'fine_labels', so it is CIFAR-100; set `data: {{dataset: cifar100}}` "
                "(CIFAR-10 batches have 'labels')"
            )
        if key != "labels" and "labels" in batch:
            raise DataError(
                f"{where}: has 'labels', so it is CIFAR-10; leave out `dataset: cifar100` "
                f"(CIFAR-100 files have 'fine_labels' and 'coarse_labels')"
            )
        missing = [k for k in ("data", key) if k not in batch]
        if missing:
            keys = ", ".join(sorted(map(str, batch)))
            raise DataError(
                f"{where}: has no {' or '.join(map(repr, missing))} (keys: {keys}); "
                f"a {dataset} batch has 'data' and {key!r}"
            )
        rows = _pixel_rows(batch["data"], where)
        return rows, _labels(batch[key], len(rows), where, key, num_classes)

    return parse


def _pixel_rows(data: Any, where: str) -> np.ndarray:
    try:
        array = np.asarray(data)
    except ValueError as e:  # ragged nested lists
        raise DataError(f"{where}: 'data' is not a rectangular array of pixels ({e})") from e
    if array.dtype.kind not in "ui":
        raise DataError(f"{where}: 'data' holds {array.dtype} values; CIFAR pixels are integers 0..255")
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


def _labels(
    labels: Any, num_images: int, where: str, key: str = "labels", num_classes: int = len(CLASS_NAMES)
) -> np.ndarray:
    last = num_classes - 1
    try:
        array = np.asarray(labels)
    except ValueError as e:
        raise DataError(f"{where}: {key!r} is not a list of integers ({e})") from e
    if array.ndim == 2 and array.shape[1] == 1:  # Keras returns (N, 1)
        array = array[:, 0]
    if array.ndim != 1 or array.dtype.kind not in "ui":
        raise DataError(
            f"{where}: {key!r} must be a list of integers 0..{last}, got {array.dtype} of shape {array.shape}"
        )
    if len(array) != num_images:
        raise DataError(f"{where}: has {num_images} images but {len(array)} labels")
    outside = (array < 0) | (array >= num_classes)
    if outside.any():
        raise DataError(
            f"{where}: label {array[outside][0]} is outside 0..{last} ({key!r} has {num_classes} classes); "
            f"{np.count_nonzero(outside)} labels are out of range"
        )
    return array.astype(np.int32)


def _python_meta(
    dataset: str, key: str, expected: tuple[str, ...]
) -> Callable[[bytes, str], tuple[str, ...]]:
    """A parser of a python-version meta file listing class names under ``key``."""

    def parse(blob: bytes, where: str) -> tuple[str, ...]:
        names = _unpickle(blob, where, dataset).get(key)
        if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
            raise DataError(f"{where}: has no {key!r} list; {dataset}'s lists {', '.join(expected)}")
        return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)

    return parse


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


def _cifar100(labels: str) -> _Format:
    names = cifar_class_names("cifar100", labels)
    return _Format(
        key="cifar100",
        dataset="CIFAR-100",
        label="python version",
        class_names=names,
        folder="cifar-100-python",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        parse_batch=_python_batch("CIFAR-100", f"{labels}_labels", len(names)),
        parse_meta=_python_meta("CIFAR-100", f"{labels}_label_names", names),
    )


# The releases lrtune reads, by (dataset, labels).
_FORMATS: dict[tuple[str, str], tuple[_Format, ...]] = {
    ("cifar10", "fine"): (
        _Format(
            key="cifar10",
            dataset="CIFAR-10",
            label="python version",
            class_names=CLASS_NAMES,
            folder="cifar-10-batches-py",
            train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
            test_file="test_batch",
            meta_file="batches.meta",
            parse_batch=_python_batch("CIFAR-10", "labels", len(CLASS_NAMES)),
            parse_meta=_python_meta("CIFAR-10", "label_names", CLASS_NAMES),
        ),
        _Format(
            key="cifar10",
            dataset="CIFAR-10",
            label="binary version",
            class_names=CLASS_NAMES,
            folder="cifar-10-batches-bin",
            train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
            test_file="test_batch.bin",
            meta_file="batches.meta.txt",
            parse_batch=_parse_binary_batch,
            parse_meta=_parse_binary_meta,
        ),
    ),
    ("cifar100", "fine"): (_cifar100("fine"),),
    ("cifar100", "coarse"): (_cifar100("coarse"),),
}
