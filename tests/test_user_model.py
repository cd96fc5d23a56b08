"""The user's own Keras model: named in a sweep file, given from Python, checked before anything starts.

The user's package is written by each test into a project folder of its
own, outside this repository: the driver imports it from there (lrtune
searches the folder it runs in), and the trials can import it only from
what lrtune shipped with them (Ray's ``py_modules``) or pickled by value.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from lrtune.spec import SweepFileError, parse_spec, parse_yaml
from lrtune.training.models import ModelError, ModelSource, check_model, import_builder, module_path

sys.path.insert(0, str(Path(__file__).parent))
from data_files import formula_images, write_image_folder, write_npz  # noqa: E402
from sweep_runs import assert_rows_are_the_final_models_history, lrtune, rows, start  # noqa: E402
from user_project import write_project  # noqa: E402


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return write_project(tmp_path_factory.mktemp("project"))


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project)
    yield project
    for name in [m for m in sys.modules if m == "usernets" or m.startswith("usernets.")]:
        del sys.modules[name]


def spec_with(model) -> object:
    return parse_spec({"name": "mine", "model": model, "space": {"optimizer": "adam"}}, "mine.yaml")


# --- the sweep file ----------------------------------------------------------------


def test_a_sweep_file_names_the_users_function_and_its_arguments():
    spec = spec_with({"import": "usernets.nets:convnet", "args": {"width": 8}})
    assert spec.to_yaml_dict()["model"] == {"import": "usernets.nets:convnet", "args": {"width": 8}}
    assert spec.model.source() == ModelSource(target="usernets.nets:convnet", args=(("width", 8),))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"import": "usernets"}, r'mine.yaml: model: import: \'usernets\' is not "package.module:function"'),
        ({"improt": "a:b"}, r"mine.yaml: model: improt: Extra inputs are not permitted"),
        ({}, r'mine.yaml: model: give the model\'s function as import: "package.module:function"'),
        (
            "resnet",
            r"mine.yaml: model: 'resnet' is not a model; allowed: seed-tiny, keras-cifar10-cnn, or your own",
        ),
    ],
)
def test_a_model_key_that_names_no_function_is_refused_with_the_form(model, message):
    with pytest.raises(SweepFileError, match=message):
        spec_with(model)


# --- importing and checking (no Ray) ------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "nosuch.nets:convnet",
            r"model.import: cannot import module 'nosuch.nets' \(No module named 'nosuch'\)",
        ),
        (
            "usernets.broken:f",
            r"model.import: importing 'usernets.broken' raised RuntimeError: the user module fails",
        ),
        ("usernets.nets:nope", r"model.import: module 'usernets.nets' has no function 'nope'"),
        (
            "usernets.nets:NOT_CALLABLE",
            r"model.import: module 'usernets.nets' has no function 'NOT_CALLABLE' \(it is a int\)",
        ),
    ],
)
def test_an_import_that_fails_names_the_key_the_module_and_the_error(in_project, target, message):
    with pytest.raises(ModelError, match=message):
        import_builder(target)


def test_the_users_package_is_shipped_unless_installed(in_project):
    import_builder("usernets.nets:convnet")
    assert module_path("usernets.nets:convnet") == str((in_project / "usernets").resolve())
    assert module_path("keras.models:Model") is None  # installed: the cluster has it as lrtune does


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("compiled", r"returned a compiled model; lrtune compiles it with each trial's optimizer"),
        ("one_output_too_many", r"its output is \(None, 3\), but the data has 2 classes"),
        ("fixed_input", r"its input is \(None, 28, 28, 1\), but the data's images are \(24, 24, 1\)"),
        ("frozen", r"it has no trainable weights"),
        ("not_a_model", r"returned a str, not a keras.Model"),
    ],
)
def test_a_model_that_cannot_train_on_the_data_is_refused_before_anything_starts(
    in_project, function, message
):
    with pytest.raises(ModelError, match=rf"model usernets.nets:{function}: {message}"):
        check_model(ModelSource(target=f"usernets.nets:{function}"), 2, (24, 24, 1))


def test_a_convnet_on_grayscale_24x24_and_a_dense_model_pass_the_check(in_project):
    summary = check_model(ModelSource(target="usernets.nets:convnet", args=(("width", 3),)), 3, (24, 24, 1))
    # Conv 3x3x1x3 + 3 biases, Dense 3x3 + 3 biases.
    assert summary == "usernets.nets:convnet: input (24, 24, 1), 3 classes, 42 trainable weights"
    assert "dense" in check_model(ModelSource(target="usernets.nets:dense"), 10, (32, 32, 3))


# --- real sweeps on a local Ray ---------------------------------------------------


SWEEP = """
name: {name}
data: {data}
model: {{import: "usernets.nets:{function}", args: {args}}}
epochs: {epochs}
batch_size: 8
space: {{optimizer: sgd, lr: {{grid: [0.02, 0.05]}}, momentum: 0.9}}
resources: {{cpu: 1}}
"""


def killed_and_resumed(project, sweep_file, storage, *data_option, kill_group):
    """``lrtune sweep`` from the user's project folder, killed once rows exist, then ``--resume``."""
    first = start("sweep", sweep_file, *data_option, "--storage", storage, "--quiet", cwd=project)
    deadline = time.monotonic() + 300
    while not rows(storage / sweep_file.stem) and first.poll() is None:
        assert time.monotonic() < deadline, "no rows appeared"
        time.sleep(0.2)
    if first.poll() is None:
        kill_group(first)
    else:
        assert first.returncode == 0, first.stdout.read()
    again = lrtune(
        "sweep",
        sweep_file,
        *data_option,
        "--storage",
        storage,
        "--quiet",
        "--resume",
        cwd=project,
        timeout=420,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert_rows_are_the_final_models_history(storage / sweep_file.stem, trials=2, epochs=3)
    best = lrtune("best", storage / sweep_file.stem)
    assert best.returncode == 0, best.stderr
    assert "optimizer: sgd" in best.stdout and "momentum: 0.9" in best.stdout


@pytest.mark.ray
@pytest.mark.soak
def test_a_users_convnet_on_24x24_grayscale_pngs_survives_a_kill(project, tmp_path, kill_group):
    """The issue's case: a functional-API convnet, a 3-class folder of grayscale 24x24 PNGs."""
    write_image_folder(tmp_path / "pngs", ("cat", "dog", "fox"), 8, size=(24, 24), mode="L")
    data = f"{{folder: {tmp_path / 'pngs'}, validation: 0.25, color_mode: grayscale}}"
    sweep_file = project / "gray.yaml"
    sweep_file.write_text(
        SWEEP.format(name="gray", data=data, function="convnet", args="{width: 4}", epochs=3)
    )
    validate = lrtune("validate", sweep_file, cwd=project)
    assert validate.returncode == 0, validate.stderr
    assert "usernets.nets:convnet: input (24, 24, 1), 3 classes, 55 trainable weights" in validate.stdout
    killed_and_resumed(project, sweep_file, tmp_path / "results", kill_group=kill_group)


@pytest.mark.ray
def test_a_users_dense_model_on_an_npz_trains_and_a_resume_on_changed_arrays_is_refused(project, tmp_path):
    """A model without convolutions, on arrays the user saved with numpy, their path given with --data.

    A resume finds the path in data.json; once the arrays change (same
    shapes, other labels), it is refused. (Killed and resumed sweeps of a
    user's model: the PNG test above, and CIFAR-100 in test_data_sweeps.py.)
    """
    import numpy as np

    def arrays(seed):
        rng = np.random.default_rng(seed)
        return dict(
            x_train=formula_images(range(40)),
            y_train=rng.permutation(np.arange(40) % 2),
            x_val=formula_images(range(40, 50)),
            y_val=np.arange(10) % 2,
        )

    path = write_npz(tmp_path / "d.npz", **arrays(0))
    sweep_file = project / "flat.yaml"
    sweep_file.write_text(
        SWEEP.format(
            name="flat", data="{arrays: given-by-data-option.npz}", function="dense", args="{}", epochs=3
        )
    )
    storage = tmp_path / "results"
    done = lrtune(
        "sweep", sweep_file, "--data", path, "--storage", storage, "--quiet", cwd=project, timeout=420
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert_rows_are_the_final_models_history(storage / "flat", trials=2, epochs=3)
    again = lrtune("sweep", sweep_file, "--storage", storage, "--quiet", "--resume", cwd=project)
    assert again.returncode == 0, again.stdout + again.stderr  # the path from data.json; nothing to run
    write_npz(path, **arrays(1))
    refused = lrtune("sweep", sweep_file, "--storage", storage, "--quiet", "--resume", cwd=project)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--resume: the data differs from the data this sweep started with (40 training" in refused.stderr


def test_validate_refuses_a_model_that_does_not_fit_the_data_naming_the_file(project, tmp_path):
    write_image_folder(tmp_path / "pngs", ("cat", "dog"), 2, size=(24, 24), mode="L")
    data = f"{{folder: {tmp_path / 'pngs'}, validation: 0.5, color_mode: grayscale}}"
    sweep_file = project / "wrong.yaml"
    sweep_file.write_text(SWEEP.format(name="wrong", data=data, function="fixed_input", args="{}", epochs=1))
    result = lrtune("validate", sweep_file, cwd=project)
    assert result.returncode == 2
    assert (
        f"{sweep_file}: model usernets.nets:fixed_input: its input is (None, 28, 28, 1), but the data's "
        "images are (24, 24, 1)" in " ".join(result.stderr.split())
    )


@pytest.mark.ray
def test_run_sweep_trains_a_python_function_sent_by_value(cifar_archive, tmp_path, monkeypatch):
    """A function the workers cannot import (defined in a module only the driver has) travels pickled."""
    from lrtune.engine.sweep import run_sweep
    from lrtune.results.tables import load

    write_project(tmp_path / "elsewhere", package="drivernets")
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))
    from drivernets.nets import dense

    data = "{classes: [airplane, automobile]}"
    text = SWEEP.format(name="fn", data=data, function="dense", args="{}", epochs=2)
    spec = parse_spec(parse_yaml(text, "fn.yaml"), "fn.yaml")
    outcome = run_sweep(
        spec, storage=str(tmp_path / "results"), data=str(cifar_archive), quiet=True, model=dense
    )
    assert outcome.counts == {"done": 2}
    assert load(outcome.sweep_dir).num_rows == 4
    saved = (tmp_path / "results" / "fn" / "sweep.yaml").read_text()
    assert "function: drivernets.nets:dense" in saved
