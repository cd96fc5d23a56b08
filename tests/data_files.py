"""Real data files the tests write: an image folder of PNGs, an .npz, a CIFAR-100 archive.

Every image has an identity ``g`` and pixel ``(g, row, col, channel)``
equal to :func:`pixel`, so a loaded image is checked exactly against the
formula; ``g`` (< 256) is its first pixel's first channel.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from lrtune.data import CIFAR100_COARSE_NAMES, CIFAR100_FINE_NAMES


def pixel(g, row, col, channel):
    return (g + 3 * row + 5 * col + 70 * channel) % 256


def formula_images(ids, height: int = 32, width: int = 32, channels: int = 3) -> np.ndarray:
    """Images ``ids`` as (N, height, width, channels) uint8, straight from the formula."""
    g, row, col, channel = np.ix_(np.asarray(ids), np.arange(height), np.arange(width), np.arange(channels))
    return pixel(g, row, col, channel).astype(np.uint8)


def write_image_folder(
    root: Path,
    classes=("cat", "dog", "fox"),
    per_class: int = 4,
    *,
    size=(32, 32),
    mode: str = "RGB",
    first: int = 0,
) -> dict[str, list[int]]:
    """``root/<class>/<g>.png`` for ``per_class`` images per class; returns the ids per class."""
    from PIL import Image

    height, width = size
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    ids: dict[str, list[int]] = {}
    g = first
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        ids[name] = []
        for _ in range(per_class):
            array = formula_images([g], height, width, channels)[0]
            Image.fromarray(array[..., 0] if channels == 1 else array, mode).save(
                root / name / f"{g:03d}.png"
            )
            ids[name].append(g)
            g += 1
    return ids


def png_bomb(path: Path, side: int) -> Path:
    """A valid PNG of ``side`` x ``side`` one-bit black pixels, its rows deflated a few at a time.

    Written chunk by chunk, so neither the test nor zlib ever holds the
    decoded image: a 20000 x 20000 bomb is ~50 KB on disk, 400 MB decoded.
    """
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    deflate = zlib.compressobj(9)
    compressed = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grayscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", compressed) + chunk(b"IEND", b"")
    )
    return path


def write_npz(path: Path, compressed: bool = False, **arrays) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def cifar100_batch(ids: np.ndarray) -> dict:
    """A CIFAR-100 ``train``/``test`` dict as the official release pickles it."""
    g, channel, row, col = np.ix_(ids, np.arange(3), np.arange(32), np.arange(32))
    return {
        b"filenames": [f"{i}.png".encode() for i in ids],
        b"batch_label": b"fixture",
        b"fine_labels": [int(i % 100) for i in ids],
        b"coarse_labels": [int(i % 20) for i in ids],
        b"data": pixel(g, row, col, channel).astype(np.uint8).reshape(len(ids), 3072),
    }


def write_cifar100_archive(path: Path, train: int = 120, test: int = 30, *, meta=None) -> Path:
    """``cifar-100-python/`` (``train``, ``test``, ``meta``, protocol 2 as released) in a .tar.gz.

    Image ``g`` has fine label ``g % 100`` and coarse label ``g % 20``
    (``g`` counts on through the test images).
    """
    meta = meta or {
        b"fine_label_names": [n.encode() for n in CIFAR100_FINE_NAMES],
        b"coarse_label_names": [n.encode() for n in CIFAR100_COARSE_NAMES],
    }
    members = {
        "train": cifar100_batch(np.arange(train)),
        "test": cifar100_batch(np.arange(train, train + test)),
        "meta": meta,
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            blob = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path
