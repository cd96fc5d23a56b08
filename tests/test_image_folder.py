"""Image folders (one subfolder per class, Keras's layout) from PNGs, JPEGs, BMPs and GIFs the tests write."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from data_files import formula_images, png_bomb, write_image_folder  # noqa: E402

from lrtune.data import DataError  # noqa: E402
from lrtune.data.image_folder import describe_image_folder, load_image_folder, pixel_budget  # noqa: E402


@pytest.fixture
def folders(tmp_path):
    """A 3-class PNG folder (4 images each) and its validation folder (2 each)."""
    train, val = tmp_path / "train", tmp_path / "val"
    return train, write_image_folder(train), val, write_image_folder(val, per_class=2, first=100)


def ids_of(images):
    return images[:, 0, 0, 0].astype(int).tolist()


def test_classes_are_the_sorted_subfolders_and_images_load_exactly(folders):
    train, train_ids, val, val_ids = folders
    data = load_image_folder(train, validation_folder=val)
    assert data.class_names == ("cat", "dog", "fox")
    assert data.input_shape == (32, 32, 3) and data.x_train.dtype == np.uint8
    assert ids_of(data.x_train) == train_ids["cat"] + train_ids["dog"] + train_ids["fox"]
    assert data.y_train.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and data.y_train.dtype == np.int32
    assert ids_of(data.x_val) == val_ids["cat"] + val_ids["dog"] + val_ids["fox"]
    np.testing.assert_array_equal(data.x_train, formula_images(ids_of(data.x_train)))
    np.testing.assert_array_equal(data.x_val, formula_images(ids_of(data.x_val)))
    assert data.source == str(train)


def test_validation_fraction_holds_out_a_seeded_share_disjoint_from_training(folders):
    train, *_ = folders
    first = load_image_folder(train, validation=0.25, seed=3)
    assert (len(first.x_train), len(first.x_val)) == (9, 3)
    assert not set(ids_of(first.x_train)) & set(ids_of(first.x_val))
    again = load_image_folder(train, validation=0.25, seed=3)
    assert ids_of(again.x_val) == ids_of(first.x_val)
    for images, labels in ((first.x_train, first.y_train), (first.x_val, first.y_val)):
        assert labels.tolist() == [g // 4 for g in ids_of(images)]  # ids 0-3 cat, 4-7 dog, 8-11 fox


def test_classes_pick_a_subset_by_name_renumbered_in_the_order_given(folders):
    train, train_ids, val, _ = folders
    data = load_image_folder(train, validation_folder=val, classes=["fox", "cat"])
    assert data.class_names == ("fox", "cat")
    assert sorted(zip(ids_of(data.x_train), data.y_train.tolist(), strict=True)) == sorted(
        [(g, 0) for g in train_ids["fox"]] + [(g, 1) for g in train_ids["cat"]]
    )


def test_grayscale_24x24_pngs_load_with_one_channel(tmp_path):
    ids = write_image_folder(tmp_path / "gray", ("a", "b"), 3, size=(24, 24), mode="L")
    data = load_image_folder(tmp_path / "gray", validation=0.5, color_mode="grayscale")
    assert data.input_shape == (24, 24, 1)
    assert sorted(ids_of(data.x_train) + ids_of(data.x_val)) == ids["a"] + ids["b"]
    np.testing.assert_array_equal(data.x_train, formula_images(ids_of(data.x_train), 24, 24, 1))


def test_color_mode_gives_rgba_and_luma_grayscale_from_rgb(folders):
    train, _, val, _ = folders
    rgba = load_image_folder(train, validation_folder=val, color_mode="rgba")
    assert rgba.input_shape == (32, 32, 4)
    np.testing.assert_array_equal(rgba.x_train[..., :3], formula_images(ids_of(rgba.x_train)))
    assert (rgba.x_train[..., 3] == 255).all()
    gray = load_image_folder(train, validation_folder=val, color_mode="grayscale")
    rgb = formula_images(ids_of(rgba.x_train)).astype(float)
    luma = rgb[..., 0] * 299 / 1000 + rgb[..., 1] * 587 / 1000 + rgb[..., 2] * 114 / 1000  # ITU-R 601-2
    assert np.abs(gray.x_train[..., 0] - luma).max() <= 1


def test_image_size_resizes_images_of_mixed_sizes(tmp_path):
    from PIL import Image

    for name, size, color in (("a", (20, 30), (10, 20, 30)), ("b", (64, 48), (200, 100, 50))):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", size, color).save(tmp_path / "f" / name / f"{i}.png")
    data = load_image_folder(tmp_path / "f", validation=0.5, image_size=(16, 24))
    assert data.input_shape == (16, 24, 3)
    images = np.concatenate([data.x_train, data.x_val])
    labels = np.concatenate([data.y_train, data.y_val])
    # Bilinear resizing keeps a flat color exactly.
    assert (images[labels == 0] == (10, 20, 30)).all() and (images[labels == 1] == (200, 100, 50)).all()


def test_every_keras_extension_is_read_in_any_case_and_other_files_ignored(tmp_path):
    from PIL import Image

    image = Image.fromarray(formula_images([7])[0])
    for name, ext in (("a", "png"), ("a", "BMP"), ("a", "gif"), ("b", "jpg"), ("b", "jpeg"), ("b", "PNG")):
        (tmp_path / "f" / name / "deep").mkdir(parents=True, exist_ok=True)
        image.save(tmp_path / "f" / name / "deep" / f"x.{ext}", format={"jpg": "JPEG"}.get(ext.lower()))
    (tmp_path / "f" / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "f" / "top.png").write_bytes((tmp_path / "f" / "a" / "deep" / "x.png").read_bytes())
    data = load_image_folder(tmp_path / "f", validation=0.5, seed=1)
    assert len(data.x_train) + len(data.x_val) == 6
    assert data.class_names == ("a", "b")


def test_describe_reads_the_first_header_or_the_given_size(folders, tmp_path):
    train, *_ = folders
    shape = describe_image_folder(train, classes=["dog", "cat"])
    assert (shape.input_shape, shape.class_names) == ((32, 32, 3), ("dog", "cat"))
    assert describe_image_folder(train, image_size=(8, 9), color_mode="grayscale").input_shape == (8, 9, 1)
    assert describe_image_folder(tmp_path / "elsewhere") is None


# --- Bad folders and images ---------------------------------------------------


def test_an_empty_class_folder_is_refused_naming_it(folders):
    train, _, val, _ = folders
    (train / "emu").mkdir()
    with pytest.raises(
        DataError, match=rf"{train}/emu: class folder holds no images \(.bmp, .gif, .jpeg, .jpg, .png\)"
    ):
        load_image_folder(train, validation_folder=val)


def test_a_folder_of_one_class_is_refused(tmp_path):
    write_image_folder(tmp_path / "one", ("cat",), 3)
    with pytest.raises(
        DataError, match=r"one: has 1 class folder \(only 'cat'\); a classifier needs at least 2"
    ):
        load_image_folder(tmp_path / "one", validation=0.5)


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: no such folder; give a folder with one subfolder"):
        load_image_folder(tmp_path / "nowhere", validation=0.5)


def test_a_corrupt_image_is_refused_naming_it(folders):
    train, _, val, _ = folders
    (train / "dog" / "broken.png").write_bytes(b"this is not a png at all")
    with pytest.raises(DataError, match=r"dog/broken.png: is not an image Pillow can read"):
        load_image_folder(train, validation_folder=val)


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_a_truncated_image_is_refused_naming_it(folders, ext):
    from PIL import Image

    train, _, val, _ = folders
    path = train / "fox" / f"cut.{ext}"
    Image.fromarray(formula_images([5])[0]).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"fox/cut.{ext}: is a corrupt or truncated image"):
        load_image_folder(train, validation_folder=val)


def test_images_of_mixed_sizes_without_image_size_are_refused_naming_both(folders):
    train, _, val, _ = folders
    write_image_folder(train, ("dog",), 1, size=(30, 40), first=50)
    with pytest.raises(
        DataError,
        match=r"dog/050.png: is 40x30 \(width x height\) but .*cat/000.png is 32x32; images of mixed sizes "
        r"need data.image_size: \[height, width\]",
    ):
        load_image_folder(train, validation_folder=val)


def test_a_validation_folder_with_a_class_the_training_folder_lacks_is_refused(folders):
    train, _, val, _ = folders
    write_image_folder(val, ("gnu",), 1, first=200)
    with pytest.raises(DataError, match=r"val: has class folders gnu that .*train has not"):
        load_image_folder(train, validation_folder=val)


def test_validation_must_come_from_a_folder_or_a_fraction_not_both(folders):
    train, _, val, _ = folders
    with pytest.raises(DataError, match=r"validation_folder: PATH .* or as validation: FRACTION"):
        load_image_folder(train)


def test_pixel_budget_is_1024_per_byte_between_a_megapixel_floor_and_a_64_megapixel_cap():
    assert pixel_budget(10) == 1 << 20
    assert pixel_budget(4096) == 4096 * 1024
    assert pixel_budget(1 << 30) == 1 << 26


def test_an_image_declaring_more_pixels_than_its_bytes_is_refused_before_decoding(folders):
    train, _, val, _ = folders
    bomb = png_bomb(train / "cat" / "bomb.png", 5000)  # 25 Mpx: under the cap, far over 1024 per byte
    assert bomb.stat().st_size < 25_000_000 / 1024
    with pytest.raises(
        DataError, match=r"cat/bomb.png: declares 5000x5000 = 25000000 pixels in a file of \d+ bytes"
    ):
        load_image_folder(train, validation_folder=val)


def test_a_decompression_bomb_is_refused_without_allocating_it(folders):
    train, _, val, _ = folders
    bomb = png_bomb(train / "dog" / "bomb.png", 20_000)
    assert bomb.stat().st_size < 200_000  # 400 Mpx: 400 MB as Pillow holds 1-bit pixels, 1.2 GB as RGB
    # A fresh process, so its peak resident memory is this load's alone.
    script = (
        "import resource\n"
        "from lrtune.data import DataError\n"
        "from lrtune.data.image_folder import load_image_folder\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    load_image_folder({str(train)!r}, validation_folder={str(val)!r})\n"
        "except DataError as e:\n"
        "    print(e)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    message, grown_kb = done.stdout.strip().rsplit("\n", 1)
    # Pillow's own check (over 2 x its MAX_IMAGE_PIXELS) fires first here, when the header is read.
    assert "dog/bomb.png: Image size (400000000 pixels) exceeds limit" in message
    assert "an image declaring more is a decompression bomb: refused, not decoded" in message
    assert int(grown_kb) < 50_000, f"peak memory grew {grown_kb} KB"
