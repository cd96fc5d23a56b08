"""CIFAR-10 loading from real-format files the tests write themselves.

Every image has a known identity ``g`` and pixel ``(g, row, col, channel)``
equal to :func:`pixel`, so a loaded image can be checked exactly against
the formula, whatever shuffling or subsetting happened. ``g`` is also the
image's red value at (0, 0), and its label is ``g % 10``.
"""

import builtins
import os
import pickle
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from lrtune.data import CLASS_NAMES, DataError, Dataset, load_cifar10, scale_pixels
from lrtune.data import cifar as data_module

BATCH_SIZES = (30, 25, 30, 35, 30)  # not 10,000 and not all equal: loaders must not assume
NUM_TRAIN = sum(BATCH_SIZES)  # 150
NUM_TEST = 30
TRAIN_IDS = np.split(np.arange(NUM_TRAIN), np.cumsum(BATCH_SIZES)[:-1])
TEST_IDS = np.arange(NUM_TRAIN, NUM_TRAIN + NUM_TEST)
PROTOCOLS = (2, 4, 2, 4, 2)  # the official files are protocol 2, the shared subset protocol 4
TEST_PROTOCOL = 4


def pixel(g, row, col, channel):
    """The value of every fixture pixel; ``g`` < 256 is readable back from (0, 0, red)."""
    return (g + 3 * row + 5 * col + 70 * channel) % 256


def expected_images(ids: np.ndarray) -> np.ndarray:
    """Images as (N, 32, 32, 3), straight from the formula."""
    g, row, col, channel = np.ix_(ids, np.arange(32), np.arange(32), np.arange(3))
    return pixel(g, row, col, channel).astype(np.uint8)


def channel_major_rows(ids: np.ndarray) -> np.ndarray:
    """Images as CIFAR stores them: N x 3072, red plane, green plane, blue plane, each row-major."""
    g, channel, row, col = np.ix_(ids, np.arange(3), np.arange(32), np.arange(32))
    return pixel(g, row, col, channel).astype(np.uint8).reshape(len(ids), 3072)


def ids_of(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(np.int64)


def batch_dict(ids: np.ndarray, label_of=lambda g: g % 10) -> dict:
    return {
        b"batch_label": b"fixture batch",
        b"labels": [int(label_of(g)) for g in ids],
        b"data": channel_major_rows(ids),
    }


def write_python_tree(root: Path, label_of=lambda g: g % 10) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, (ids, protocol) in enumerate(zip(TRAIN_IDS, PROTOCOLS, strict=True), start=1):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch_dict(ids, label_of), protocol=protocol))
    (folder / "test_batch").write_bytes(pickle.dumps(batch_dict(TEST_IDS, label_of), protocol=TEST_PROTOCOL))
    meta = {
        b"label_names": [name.encode() for name in CLASS_NAMES],
        b"num_cases_per_batch": 30,
        b"num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_binary_tree(root: Path) -> Path:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, ids in [
        *((f"data_batch_{i}.bin", ids) for i, ids in enumerate(TRAIN_IDS, start=1)),
        ("test_batch.bin", TEST_IDS),
    ]:
        records = np.concatenate([(ids % 10).astype(np.uint8)[:, None], channel_major_rows(ids)], axis=1)
        (folder / name).write_bytes(records.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(CLASS_NAMES) + "\n\n")
    return folder


def pack(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


@pytest.fixture
def python_tree(tmp_path) -> Path:
    return write_python_tree(tmp_path / "extracted")


@pytest.fixture
def python_archive(python_tree, tmp_path) -> Path:
    return pack(python_tree, tmp_path / "cifar-10-python.tar.gz")


def assert_same_images(a: Dataset, b: Dataset) -> None:
    for name in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.class_names == b.class_names


# --- Formats ----------------------------------------------------------------


def test_python_archive_gives_channels_last_uint8_images_from_channel_major_rows(python_archive):
    data = load_cifar10(python_archive)
    assert data.x_train.shape == (NUM_TRAIN, 32, 32, 3) and data.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.x_train, expected_images(np.arange(NUM_TRAIN)))
    np.testing.assert_array_equal(data.x_val, expected_images(TEST_IDS))


def test_labels_are_int32_with_all_ten_class_names(python_archive):
    data = load_cifar10(python_archive)
    assert data.y_train.dtype == np.int32 and data.y_val.dtype == np.int32
    np.testing.assert_array_equal(data.y_train, np.arange(NUM_TRAIN) % 10)
    np.testing.assert_array_equal(data.y_val, TEST_IDS % 10)
    assert data.class_names == CLASS_NAMES and data.num_classes == 10


def test_extracted_folder_and_its_parent_load_like_the_archive(python_tree, python_archive):
    from_archive = load_cifar10(python_archive)
    assert_same_images(load_cifar10(python_tree), from_archive)
    assert_same_images(load_cifar10(python_tree.parent), from_archive)


@pytest.mark.parametrize("packed", [True, False], ids=["archive", "folder"])
def test_binary_version_loads_the_same_images_as_the_python_version(tmp_path, python_archive, packed):
    folder = write_binary_tree(tmp_path / "bin")
    source = pack(folder, tmp_path / "cifar-10-binary.tar.gz") if packed else folder
    assert_same_images(load_cifar10(source), load_cifar10(python_archive))


def test_file_uri_loads_like_the_local_path(python_archive):
    assert_same_images(load_cifar10(python_archive.as_uri()), load_cifar10(python_archive))


def test_uncompressed_tar_loads_like_tar_gz(python_tree, python_archive, tmp_path):
    plain = tmp_path / "cifar.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(python_tree, arcname=python_tree.name)
    assert_same_images(load_cifar10(plain), load_cifar10(python_archive))


def test_pickles_naming_numpy_1_module_numpy_core_load(python_tree, python_archive):
    """Files written under numpy 1 (like the official ones) name numpy.core, not numpy._core."""
    blob = pickle.dumps(batch_dict(TEST_IDS), protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray\n_reconstruct" in blob
    (python_tree / "test_batch").write_bytes(blob)
    assert_same_images(load_cifar10(python_tree), load_cifar10(python_archive))


def test_data_stored_as_a_list_and_str_keys_load_like_an_array(python_tree, python_archive):
    batch = {"data": channel_major_rows(TEST_IDS).ravel().tolist(), "labels": [int(g % 10) for g in TEST_IDS]}
    (python_tree / "test_batch").write_bytes(pickle.dumps(batch, protocol=4))
    assert_same_images(load_cifar10(python_tree), load_cifar10(python_archive))


def test_dataset_survives_pickling_for_the_object_store(python_archive):
    data = load_cifar10(python_archive, classes=["cat"])
    assert_same_images(pickle.loads(pickle.dumps(data)), data)


# --- Classes, validation, limit ---------------------------------------------


def test_classes_by_name_are_renumbered_in_the_order_given(python_archive):
    data = load_cifar10(python_archive, classes=["dog", "cat"])
    assert data.class_names == ("dog", "cat") and data.num_classes == 2
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        original = ids_of(x) % 10
        assert set(original) == {5, 3}
        np.testing.assert_array_equal(y, np.where(original == 5, 0, 1))
    assert len(data.x_train) == NUM_TRAIN // 5 and len(data.x_val) == NUM_TEST // 5


def test_classes_by_index_and_name_can_be_mixed(python_archive):
    data = load_cifar10(python_archive, classes=[9, "airplane"])
    assert data.class_names == ("truck", "airplane")
    np.testing.assert_array_equal(data.y_train, np.where(ids_of(data.x_train) % 10 == 9, 0, 1))


def test_validation_fraction_holds_out_rounded_share_of_train_disjoint_from_it(python_archive):
    data = load_cifar10(python_archive, validation=0.2)
    train, val = set(ids_of(data.x_train)), set(ids_of(data.x_val))
    assert len(data.x_val) == round(0.2 * NUM_TRAIN) == len(val)
    assert len(data.x_train) == NUM_TRAIN - len(val) == len(train)
    assert train.isdisjoint(val) and train | val == set(range(NUM_TRAIN))


def test_validation_split_is_fixed_by_the_seed(python_archive):
    def val_ids(seed):
        return ids_of(load_cifar10(python_archive, validation=0.2, seed=seed).x_val)

    np.testing.assert_array_equal(val_ids(1), val_ids(1))
    assert set(val_ids(1)) != set(val_ids(2))


@pytest.mark.parametrize(
    ("limit", "num_train", "num_val"), [(20, 20, 4), (3, 3, 1), (1000, NUM_TRAIN, NUM_TEST)]
)
def test_limit_caps_train_at_limit_and_validation_at_a_fifth_of_it(python_archive, limit, num_train, num_val):
    data = load_cifar10(python_archive, limit=limit)
    assert (len(data.x_train), len(data.y_train)) == (num_train, num_train)
    assert (len(data.x_val), len(data.y_val)) == (num_val, num_val)


def test_subsets_keep_each_image_with_its_label(python_archive):
    data = load_cifar10(python_archive, classes=["ship", 2, "frog"], validation=0.3, seed=7, limit=20)
    renumber = {8: 0, 2: 1, 6: 2}
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        ids = ids_of(x)
        np.testing.assert_array_equal(x, expected_images(ids))
        np.testing.assert_array_equal(y, [renumber[g % 10] for g in ids])


def test_scale_pixels_divides_by_255_into_float32():
    scaled = scale_pixels(np.arange(256, dtype=np.uint8))
    assert scaled.dtype == np.float32 and scaled[0] == 0 and scaled[-1] == 1
    np.testing.assert_allclose(scaled, np.arange(256) / 255, rtol=1e-6)


# --- Argument errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (["cat", "kat"], r"unknown class 'kat'"),
        ([3, 10], r"index 10 is out of range"),
        (["cat", 3], r"'cat' \(index 3\) is listed twice"),
        ([], r"classes is empty"),
        ("cat", r"must be a list"),
    ],
)
def test_bad_classes_are_refused_listing_the_valid_names(python_archive, classes, message):
    with pytest.raises(
        DataError, match=message + r".*airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck"
    ):
        load_cifar10(python_archive, classes=classes)


def test_class_subset_with_no_training_images_is_refused(tmp_path):
    tree = write_python_tree(tmp_path, label_of=lambda g: g % 9)  # no truck anywhere
    with pytest.raises(DataError, match=r"classes \[truck\] leave no training images"):
        load_cifar10(tree, classes=["truck"])


@pytest.mark.parametrize("validation", [0, 1, 1.5, "val", True, None])
def test_validation_must_be_test_or_a_fraction_between_0_and_1(python_archive, validation):
    with pytest.raises(DataError, match=r"validation must be 'test' .* or a fraction in \(0, 1\)"):
        load_cifar10(python_archive, validation=validation)


@pytest.mark.parametrize("limit", [0, -5, 2.5])
def test_limit_must_be_a_positive_integer(python_archive, limit):
    with pytest.raises(DataError, match=r"limit must be a positive number of training images"):
        load_cifar10(python_archive, limit=limit)


# --- Hostile and broken files -----------------------------------------------


class Payload:
    """Unpickling this runs ``call(*args)``: the classic pickle code-execution gadget."""

    def __init__(self, call, args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def payloads(marker: Path) -> list[tuple[Payload, str]]:
    return [
        (Payload(os.system, (f"touch {marker}",)), r"(posix|nt)\.system"),
        (
            Payload(builtins.exec, (f"open({str(marker)!r}, 'w').close()",)),
            r"(builtins|__builtin__)\.exec",
        ),  # protocol 2 writes Python 2's name
    ]


@pytest.mark.parametrize("which", [0, 1], ids=["os.system", "builtins.exec"])
def test_naively_unpickling_the_payload_would_run_it(tmp_path, which):
    marker = tmp_path / "pwned"
    payload, _ = payloads(marker)[which]
    pickle.loads(pickle.dumps({b"data": payload, b"labels": []}, protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("which", [0, 1], ids=["os.system", "builtins.exec"])
def test_malicious_pickle_is_refused_without_running_it(python_tree, tmp_path, which):
    marker = tmp_path / "pwned"
    payload, global_name = payloads(marker)[which]
    (python_tree / "data_batch_2").write_bytes(pickle.dumps({b"data": payload, b"labels": []}, protocol=2))
    archive = pack(python_tree, tmp_path / "evil.tar.gz")
    with pytest.raises(
        DataError,
        match=rf"evil\.tar\.gz \(member cifar-10-batches-py/data_batch_2\): refuses to load global '{global_name}'",
    ):
        load_cifar10(archive)
    assert not marker.exists()


def test_truncated_archive_is_reported_as_truncated(python_archive, tmp_path):
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(python_archive.read_bytes()[: python_archive.stat().st_size // 2])
    with pytest.raises(
        DataError,
        match=r"cut\.tar\.gz: archive is truncated or corrupt \(while reading member cifar-10-batches-py/",
    ):
        load_cifar10(cut)


def test_file_that_is_not_a_tar_is_refused_naming_the_accepted_formats(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an archive\n" * 100)
    with pytest.raises(
        DataError, match=r"notes\.txt: is not a readable tar archive .*lrtune reads cifar-10-python\.tar\.gz"
    ):
        load_cifar10(notes)


def test_archive_without_test_batch_names_the_missing_file(python_tree, tmp_path):
    (python_tree / "test_batch").unlink()
    archive = pack(python_tree, tmp_path / "partial.tar.gz")
    with pytest.raises(
        DataError, match=r"partial\.tar\.gz: cifar-10-batches-py/ lacks test_batch; .*holds data_batch_1"
    ):
        load_cifar10(archive)


def test_folder_without_test_batch_names_the_missing_file(python_tree):
    (python_tree / "test_batch").unlink()
    with pytest.raises(
        DataError, match=r"cifar-10-batches-py: lacks test_batch; a CIFAR-10 python version folder holds"
    ):
        load_cifar10(python_tree)


def test_folder_without_batches_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"holds no CIFAR-10 batch files; lrtune reads"):
        load_cifar10(tmp_path)


def test_missing_path_is_reported(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.tar\.gz: no such file or folder"):
        load_cifar10(tmp_path / "nowhere.tar.gz")


def test_labels_outside_0_to_9_are_refused_naming_the_file(python_tree):
    batch = batch_dict(TRAIN_IDS[2])
    batch[b"labels"][4] = 10
    (python_tree / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3: label 10 is outside 0\.\.9"):
        load_cifar10(python_tree)


def test_label_count_must_match_image_count(python_tree):
    batch = batch_dict(TEST_IDS)
    batch[b"labels"].pop()
    (python_tree / "test_batch").write_bytes(pickle.dumps(batch, protocol=4))
    with pytest.raises(DataError, match=rf"test_batch: has {NUM_TEST} images but {NUM_TEST - 1} labels"):
        load_cifar10(python_tree)


def test_data_length_must_be_divisible_by_3072(python_tree):
    batch = batch_dict(TEST_IDS)
    batch[b"data"] = batch[b"data"].ravel()[:-5]
    (python_tree / "test_batch").write_bytes(pickle.dumps(batch, protocol=4))
    with pytest.raises(DataError, match=r"test_batch: 'data' has shape \(92155,\); .*divisible by 3072"):
        load_cifar10(python_tree)


def test_binary_batch_size_must_be_a_multiple_of_3073(tmp_path):
    folder = write_binary_tree(tmp_path)
    (folder / "data_batch_4.bin").write_bytes((folder / "data_batch_4.bin").read_bytes()[:-1])
    with pytest.raises(
        DataError, match=r"data_batch_4\.bin: is 107554 bytes, not a positive multiple of 3073"
    ):
        load_cifar10(folder)


def test_pickle_that_is_not_a_dict_is_refused(python_tree):
    (python_tree / "data_batch_1").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1: holds a list; a CIFAR-10 pickle holds a dict"):
        load_cifar10(python_tree)


def test_corrupt_pickle_is_reported_with_the_file(python_tree):
    (python_tree / "data_batch_5").write_bytes(pickle.dumps(batch_dict(TRAIN_IDS[4]), protocol=2)[:1000])
    with pytest.raises(DataError, match=r"data_batch_5: is not a readable pickle"):
        load_cifar10(python_tree)


def test_cifar100_batch_is_refused_as_cifar100(python_tree):
    batch = batch_dict(TEST_IDS)
    batch[b"fine_labels"] = batch.pop(b"labels")
    (python_tree / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"test_batch: has 'fine_labels', so it is CIFAR-100"):
        load_cifar10(python_tree)


def test_meta_with_other_class_names_is_refused(python_tree):
    (python_tree / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [b"apple", b"pear"]}, protocol=2)
    )
    with pytest.raises(DataError, match=r"batches\.meta: lists classes apple, pear; CIFAR-10 has airplane"):
        load_cifar10(python_tree)


# --- No source: Keras's cache, then download --------------------------------


def test_no_source_loads_the_python_folder_from_keras_cache(tmp_path, monkeypatch, python_archive):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    write_python_tree(tmp_path / "keras-home" / "datasets" / "cifar-10-batches-py-target")
    assert_same_images(load_cifar10(), load_cifar10(python_archive))


def test_no_source_offline_says_where_it_looked_and_how_to_give_data(tmp_path, monkeypatch):
    def offline(*dataset_and_labels):
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr(data_module, "_download_with_keras", offline)
    looked_in = re.escape(str(tmp_path / "keras-home" / "datasets"))
    with pytest.raises(
        DataError,
        match=rf"looked in {looked_in} for cifar-10-batches-py-target.*URL fetch failure.*--data PATH",
    ):
        load_cifar10()


def test_loading_imports_neither_keras_nor_tensorflow(python_archive):
    script = (
        "import sys\n"
        "import lrtune.data\n"
        f"lrtune.data.load_cifar10({str(python_archive)!r})\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'ray') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- Issue 13: protocol 5, declared sizes, file sizes ------------------------


def test_batches_resaved_with_the_highest_pickle_protocol_load_the_same(python_tree, tmp_path):
    before = load_cifar10(python_tree)
    assert pickle.HIGHEST_PROTOCOL == 5
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        path = python_tree / name
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")  # our own fixture: trusted
        path.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    assert b"_frombuffer" in (python_tree / "test_batch").read_bytes()  # numpy's protocol-5 form
    assert_same_images(load_cifar10(python_tree), before)
    assert_same_images(load_cifar10(pack(python_tree, tmp_path / "p5.tar.gz")), before)


class Declared:
    """Pickles as ``numpy.ndarray(shape, dtype)``: an array declared, no pixel bytes given."""

    def __init__(self, *args):
        self.args = args

    def __reduce__(self):
        return np.ndarray, self.args


class Rebuilt:
    """Pickles as numpy's ``_reconstruct(ndarray, shape, dtype)`` with a huge shape."""

    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        return np.zeros(1).__reduce__()[0], (np.ndarray, self.shape, np.dtype(np.uint8))


@pytest.mark.parametrize(
    "declared",
    [Declared((4_000_000, 3072), np.dtype(np.uint8)), Rebuilt((4_000_000, 3072))],
    ids=["ndarray", "_reconstruct"],
)
def test_an_array_the_file_cannot_back_is_refused_before_it_is_allocated(python_tree, declared):
    blob = pickle.dumps({b"data": declared, b"labels": [0]}, protocol=2)
    assert len(blob) < 300
    (python_tree / "data_batch_2").write_bytes(blob)
    # 12 GB declared: refused by the size check, not by running out of memory.
    with pytest.raises(
        DataError,
        match=r"data_batch_2: declares an array of shape \(4000000, 3072\) \(uint8, 12288000000 bytes\) "
        r"that the file's bytes cannot hold; the file is truncated or was made to exhaust memory",
    ):
        load_cifar10(python_tree)


def test_an_array_of_python_objects_is_refused(python_tree):
    (python_tree / "data_batch_2").write_bytes(
        pickle.dumps({b"data": np.array([1, "x"], dtype=object), b"labels": [0]}, protocol=2)
    )
    with pytest.raises(DataError, match=r"data_batch_2: holds an array of Python objects"):
        load_cifar10(python_tree)


def test_a_file_in_a_folder_over_the_size_cap_is_refused(python_tree, monkeypatch):
    monkeypatch.setattr(data_module, "_MAX_MEMBER_BYTES", 50_000)
    with pytest.raises(
        DataError, match=r"data_batch_1: is over 50000 bytes, too large for a CIFAR-10 batch file"
    ):
        load_cifar10(python_tree)
