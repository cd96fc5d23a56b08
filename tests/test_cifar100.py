"""CIFAR-100 from an archive in the official python layout, written by the tests."""

import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from data_files import formula_images, write_cifar100_archive  # noqa: E402

from lrtune.data import CIFAR100_COARSE_NAMES, CIFAR100_FINE_NAMES, DataError, load_cifar100  # noqa: E402


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_cifar100_archive(tmp_path_factory.mktemp("c100") / "cifar-100-python.tar.gz")


def ids_of(images):
    return images[:, 0, 0, 0].astype(int)


def test_fine_labels_give_100_classes_and_exact_images(archive):
    data = load_cifar100(archive)
    assert data.class_names == CIFAR100_FINE_NAMES and len(data.class_names) == 100
    assert (len(data.x_train), len(data.x_val)) == (120, 30)
    np.testing.assert_array_equal(data.x_train, formula_images(np.arange(120)))
    assert data.y_train.tolist() == [g % 100 for g in range(120)]
    assert data.y_val.tolist() == [g % 100 for g in range(120, 150)]


def test_coarse_labels_give_the_20_superclasses(archive):
    data = load_cifar100(archive, labels="coarse")
    assert data.class_names == CIFAR100_COARSE_NAMES
    assert data.y_train.tolist() == [g % 20 for g in range(120)]


def test_classes_by_name_keep_those_images_renumbered(archive):
    data = load_cifar100(archive, classes=["couch", "chair"])  # fine labels 25 and 20
    assert data.class_names == ("couch", "chair")
    for images, labels, ids in ((data.x_train, data.y_train, [20, 25]), (data.x_val, data.y_val, [120, 125])):
        order = np.argsort(ids_of(images))
        assert ids_of(images)[order].tolist() == ids and labels[order].tolist() == [1, 0]


def test_the_extracted_folder_loads_like_the_archive(archive, tmp_path):
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    np.testing.assert_array_equal(load_cifar100(tmp_path).x_val, load_cifar100(archive).x_val)


def test_a_cifar10_archive_given_as_cifar100_is_refused(cifar_archive):
    with pytest.raises(
        DataError, match=r"holds no cifar-100-python/ batch files; lrtune reads cifar-100-python.tar.gz"
    ):
        load_cifar100(cifar_archive)


def test_an_unknown_class_lists_the_cifar100_names(archive):
    with pytest.raises(
        DataError, match=r"classes: unknown class 'cat'; valid classes are apple, aquarium_fish"
    ):
        load_cifar100(archive, classes=["cat", "apple"])


def test_labels_must_be_fine_or_coarse(archive):
    with pytest.raises(
        DataError, match=r"labels must be 'fine' \(100 classes\) or 'coarse' \(20 superclasses\)"
    ):
        load_cifar100(archive, labels="medium")


def test_meta_with_other_class_names_is_refused(tmp_path):
    meta = {b"fine_label_names": [b"x"] * 100, b"coarse_label_names": [b"y"] * 20}
    path = write_cifar100_archive(tmp_path / "c.tar.gz", meta=meta)
    with pytest.raises(
        DataError, match=r"member cifar-100-python/meta\): lists classes x, x.*CIFAR-100 has apple"
    ):
        load_cifar100(path)


def test_fine_labels_outside_0_to_99_are_refused(tmp_path):
    path = write_cifar100_archive(tmp_path / "c.tar.gz")
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    train = pickle.loads(members["cifar-100-python/train"], encoding="bytes")
    train[b"fine_labels"][3] = 100
    members["cifar-100-python/train"] = pickle.dumps(train, protocol=2)
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(
        DataError, match=r"train\): label 100 is outside 0..99 \('fine_labels' has 100 classes\)"
    ):
        load_cifar100(path)
