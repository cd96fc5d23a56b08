"""What a sweep file's data: loads (load_dataset, describe_data), and the fingerprint that guards --resume."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from data_files import formula_images, write_cifar100_archive, write_image_folder, write_npz  # noqa: E402

from lrtune.data import DataError, describe_data, load_dataset  # noqa: E402
from lrtune.engine.driver import data_fingerprint  # noqa: E402
from lrtune.spec import parse_spec, parse_yaml  # noqa: E402


def data_of(text):
    return parse_spec(parse_yaml(f"name: t\ndata: {text}\nspace: {{lr: 0.1}}\n", "s.yaml"), "s.yaml").data


@pytest.fixture
def folder(tmp_path):
    write_image_folder(tmp_path / "imgs", per_class=4)
    return tmp_path / "imgs"


def test_a_folder_source_loads_and_describes_alike(folder):
    spec = data_of(f"{{folder: {folder}, validation: 0.25, classes: [fox, cat]}}")
    data = load_dataset(spec, None, seed=0)
    shape = describe_data(spec, None)
    assert (
        (data.input_shape, data.class_names)
        == (shape.input_shape, shape.class_names)
        == ((32, 32, 3), ("fox", "cat"))
    )


def test_the_data_option_overrides_the_path_of_the_files_source(folder, tmp_path):
    write_image_folder(tmp_path / "other", ("a", "b"), 2)
    spec = data_of(f"{{folder: {folder}, validation: 0.5}}")
    assert load_dataset(spec, str(tmp_path / "other"), seed=0).class_names == ("a", "b")
    path = write_npz(tmp_path / "d.npz", x_train=formula_images(range(4)), y_train=np.array([0, 1, 0, 1]),
                     x_val=formula_images(range(2)), y_val=np.array([0, 1]))  # fmt: skip
    assert load_dataset(data_of("{arrays: nowhere.npz}"), str(path), seed=0).class_names == ("0", "1")
    archive = write_cifar100_archive(tmp_path / "c.tar.gz")
    assert (
        load_dataset(data_of("{dataset: cifar100, labels: coarse}"), str(archive), seed=0).num_classes == 20
    )


def test_cifar_is_described_without_its_files():
    assert describe_data(data_of("{classes: [cat, dog]}"), None).class_names == ("cat", "dog")
    shape = describe_data(data_of("{dataset: cifar100, labels: coarse}"), "/nowhere")
    assert shape.input_shape == (32, 32, 3) and shape.num_classes == 20


def test_describe_refuses_what_is_already_wrong_and_returns_none_for_what_is_not_here(tmp_path):
    write_image_folder(tmp_path / "one", ("cat",), 2)
    with pytest.raises(DataError, match=r"one: has 1 class folder"):
        describe_data(data_of(f"{{folder: {tmp_path / 'one'}, validation: 0.5}}"), None)
    assert describe_data(data_of(f"{{folder: {tmp_path / 'absent'}, validation: 0.5}}"), None) is None


def test_the_fingerprint_changes_when_one_image_of_a_folder_changes(folder):
    from PIL import Image

    spec = data_of(f"{{folder: {folder}, validation: 0.25}}")
    before = data_fingerprint(load_dataset(spec, None, seed=0))
    assert data_fingerprint(load_dataset(spec, None, seed=0)) == before
    Image.fromarray(formula_images([77])[0]).save(folder / "dog" / "004.png")
    after = data_fingerprint(load_dataset(spec, None, seed=0))
    assert after["sha256"] != before["sha256"] and after["num_train"] == before["num_train"]
