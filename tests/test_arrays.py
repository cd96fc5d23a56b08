"""Images and labels from an .npz the tests write with numpy.savez."""

import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from data_files import formula_images, write_npz  # noqa: E402

from lrtune.data import DataError  # noqa: E402
from lrtune.data.arrays import describe_arrays, load_arrays  # noqa: E402

TRAIN_IDS, VAL_IDS = np.arange(12), np.arange(100, 106)


def arrays(**changes):
    base = {
        "x_train": formula_images(TRAIN_IDS),
        "y_train": (TRAIN_IDS % 3).astype(np.int64),
        "x_val": formula_images(VAL_IDS),
        "y_val": (VAL_IDS % 3).astype(np.int64),
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "savez_compressed"])
def test_npz_loads_exactly_with_classes_named_by_label(tmp_path, compressed):
    path = write_npz(tmp_path / "d.npz", compressed, **arrays())
    data = load_arrays(path)
    np.testing.assert_array_equal(data.x_train, formula_images(TRAIN_IDS))
    np.testing.assert_array_equal(data.x_val, formula_images(VAL_IDS))
    assert data.y_train.tolist() == (TRAIN_IDS % 3).tolist() and data.y_train.dtype == np.int32
    assert data.class_names == ("0", "1", "2") and data.input_shape == (32, 32, 3)
    assert data.source == str(path)


def test_classes_name_the_labels_in_order(tmp_path):
    data = load_arrays(write_npz(tmp_path / "d.npz", **arrays()), classes=["ant", "bee", "cow"])
    assert data.class_names == ("ant", "bee", "cow")


def test_images_without_a_channel_axis_and_column_labels_load_as_one_channel(tmp_path):
    path = write_npz(
        tmp_path / "d.npz",
        **arrays(
            x_train=formula_images(TRAIN_IDS, 24, 24, 1)[..., 0],
            y_train=(TRAIN_IDS % 3).reshape(-1, 1),
            x_val=formula_images(VAL_IDS, 24, 24, 1)[..., 0],
        ),
    )
    data = load_arrays(path)
    assert data.input_shape == (24, 24, 1) and data.y_train.shape == (12,)
    np.testing.assert_array_equal(data.x_train, formula_images(TRAIN_IDS, 24, 24, 1))


def test_validation_fraction_needs_no_x_val(tmp_path):
    data = load_arrays(write_npz(tmp_path / "d.npz", **arrays(x_val=None, y_val=None)), validation=0.25)
    assert (len(data.x_train), len(data.x_val)) == (9, 3)
    ids = data.x_train[:, 0, 0, 0].tolist() + data.x_val[:, 0, 0, 0].tolist()
    assert sorted(ids) == TRAIN_IDS.tolist()


def test_wider_integer_pixels_in_0_to_255_become_uint8(tmp_path):
    path = write_npz(tmp_path / "d.npz", **arrays(x_train=formula_images(TRAIN_IDS).astype(np.int64)))
    assert load_arrays(path).x_train.dtype == np.uint8


def test_describe_reads_the_shape_from_the_header_and_classes_from_the_labels(tmp_path):
    path = write_npz(tmp_path / "d.npz", **arrays(y_val=np.array([0, 1, 3, 0, 1, 2])))
    shape = describe_arrays(path)
    assert shape.input_shape == (32, 32, 3) and shape.class_names == ("0", "1", "2", "3")
    assert describe_arrays(path, classes=["a", "b"]).class_names == ("a", "b")
    assert describe_arrays(tmp_path / "absent.npz") is None


# --- Bad files -------------------------------------------------------------------


def test_an_array_of_python_objects_is_refused_without_unpickling_it(tmp_path):
    labels = np.empty(12, dtype=object)
    labels[:] = [{"label": i} for i in range(12)]
    path = write_npz(tmp_path / "d.npz", **arrays(y_train=labels))
    with pytest.raises(
        DataError,
        match=r"d.npz \(array 'y_train'\): holds Python objects \(dtype object\); .*allow_pickle=False",
    ):
        load_arrays(path)


def test_labels_outside_the_listed_classes_are_refused(tmp_path):
    path = write_npz(tmp_path / "d.npz", **arrays())
    with pytest.raises(
        DataError,
        match=r"d.npz \(array 'y_train'\): label 2 is outside the classes 0..1 \(classes lists 2 names\)",
    ):
        load_arrays(path, classes=["a", "b"])


def test_negative_labels_are_refused(tmp_path):
    path = write_npz(tmp_path / "d.npz", **arrays(y_val=np.array([0, 1, -1, 0, 1, 2])))
    with pytest.raises(DataError, match=r"\(array 'y_val'\): label -1 is outside the classes 0..2"):
        load_arrays(path)


def test_a_class_without_training_images_is_refused(tmp_path):
    path = write_npz(tmp_path / "d.npz", **arrays(y_train=np.where(TRAIN_IDS % 3 == 1, 2, TRAIN_IDS % 3)))
    with pytest.raises(DataError, match=r"\(array 'y_train'\): class 1 \('1'\) has no training image"):
        load_arrays(path)


def test_a_missing_array_is_refused_listing_what_the_file_holds(tmp_path):
    path = write_npz(tmp_path / "d.npz", **arrays(x_val=None))
    with pytest.raises(DataError, match=r"d.npz: has no array 'x_val' \(it holds x_train, y_train, y_val\)"):
        load_arrays(path)


def test_float_pixels_are_refused_saying_how_to_save_them(tmp_path):
    path = write_npz(tmp_path / "d.npz", **arrays(x_train=formula_images(TRAIN_IDS) / 255.0))
    with pytest.raises(DataError, match=r"\(array 'x_train'\): holds float64; lrtune shares pixels as uint8"):
        load_arrays(path)


@pytest.mark.parametrize("shape", [(12, 32, 32, 2), (12, 3072)])
def test_images_of_a_wrong_shape_are_refused(tmp_path, shape):
    path = write_npz(tmp_path / "d.npz", **arrays(x_train=np.zeros(shape, np.uint8)))
    with pytest.raises(DataError, match=r"\(array 'x_train'\): has shape .*; images are \(N, height, width"):
        load_arrays(path)


def test_validation_images_of_another_shape_are_refused(tmp_path):
    path = write_npz(tmp_path / "d.npz", **arrays(x_val=formula_images(VAL_IDS, 24, 24)))
    with pytest.raises(
        DataError, match=r"x_train images are \(32, 32, 3\) .* but x_val images are \(24, 24, 3\)"
    ):
        load_arrays(path)


def test_a_file_that_is_not_an_npz_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"d.npz: is not an .npz \(a zip of .npy arrays"):
        load_arrays(path)


def test_an_array_declaring_more_than_its_bytes_is_refused_before_it_is_allocated(tmp_path):
    # A real .npy header declaring 10^12 bytes, followed by none of them.
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000, 1000, 1000), }"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    path = write_npz(tmp_path / "d.npz", **arrays(x_train=None))
    with zipfile.ZipFile(path, "a") as npz:
        npz.writestr("x_train.npy", npy)
    with pytest.raises(
        DataError,
        match=r"\(array 'x_train'\): declares shape \(1000000, 1000, 1000\) \(uint8, 1000000000000 bytes\) "
        r"but holds 0 bytes",
    ):
        load_arrays(path)
