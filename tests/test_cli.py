"""The command line, run as a user runs it: a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from sweep_runs import lrtune  # noqa: E402


def test_importing_lrtune_imports_none_of_its_heavy_dependencies():
    script = (
        "import sys, lrtune\n"
        "heavy = ('scipy', 'pyarrow', 'numpy', 'typer', 'ray', 'tensorflow', 'keras')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "print(lrtune.load_spec.__module__, lrtune.results.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "lrtune.spec lrtune.results"]


@pytest.mark.parametrize("module", ["typer", "scipy"])
def test_ctrl_c_while_the_command_imports_exits_130_without_a_traceback(module):
    # A real SIGINT, delivered while `module` is being imported: the window a user's Ctrl-C
    # hits in the first second of any command (CI's soak hit it inside scipy's import).
    # typer: before the command line is parsed; scipy: inside the command, which Typer ends.
    script = (
        "import os, signal, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from lrtune.__main__ import main\n"
        "sys.exit(main(['best', 'nowhere']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [(None, 0, ""), (0, 0, ""), (2, 2, ""), ("lrtune: gone", 1, "lrtune: gone\n")],
)
def test_the_entry_point_exits_as_python_would(code, status, stderr, monkeypatch, capsys):
    # sys.exit("message") prints the message and exits 1 in Python; main() must do the same.
    import lrtune.cli
    from lrtune.__main__ import main

    def app(args, prog_name):
        raise SystemExit(code)

    monkeypatch.setattr(lrtune.cli, "app", app)
    assert main([]) == status
    assert capsys.readouterr().err == stderr


def test_validate_counts_the_trials_of_a_library_sweep():
    result = lrtune("validate", "sweeps/seed-article.yaml")
    assert result.returncode == 0, result.stderr
    assert "seed-article: 24 trials x 100 epochs" in result.stdout
    assert (
        "arms: sgd/constant, sgd/time, sgd/step, sgd/exponential, adagrad, adadelta, rmsprop, adam"
        in result.stdout
    )


def test_set_shrinks_a_sweep_without_editing_it():
    result = lrtune(
        "validate", "sweeps/lr-drop.yaml", "--set", "epochs=3", "--set", "num_samples=1", "--set", "repeats=1"
    )
    assert result.returncode == 0, result.stderr
    assert "lr-drop: 3 trials x 3 epochs" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "sweeps/nope.yaml"], "sweeps/nope.yaml: no such sweep file"),
        (
            ["validate", "sweeps/quickstart.yaml", "--set", "epoch=3"],
            "--set epoch: no such setting; allowed: name, data",
        ),
        (
            ["validate", "sweeps/quickstart.yaml", "--set", "space.9.lr=0.1"],
            "--set space.9.lr: space.9 is not an arm index (0..4)",
        ),
        (
            ["sweep", "sweeps/quickstart.yaml", "--set", "scheduler.asha.grace=1"],
            "scheduler.asha.grace: unknown key",
        ),
        (
            ["sweep", "sweeps/quickstart.yaml", "--storage", "{tmp}", "--resume"],
            "--resume: no sweep 'quickstart' in",
        ),
    ],
)
def test_bad_invocations_exit_2_with_a_clear_message(args, message, tmp_path):
    result = lrtune(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_option_is_refused_by_name():
    result = lrtune("sweep", "sweeps/quickstart.yaml", "--epochs", "3")
    assert result.returncode == 2
    assert "No such option: --epochs" in result.stderr


@pytest.mark.ray
def test_missing_data_names_the_path_and_no_sweep_folder_is_left(tmp_path):
    result = lrtune(
        "sweep", "sweeps/quickstart.yaml", "--data", tmp_path / "missing.tar.gz", "--storage", tmp_path / "r"
    )
    assert result.returncode == 2
    assert "missing.tar.gz" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "quickstart").exists()  # nothing half-done


def test_a_pbt_mutation_that_cannot_be_parsed_is_refused_and_no_sweep_folder_is_left(tmp_path):
    result = lrtune(
        "sweep",
        "sweeps/pbt-lr.yaml",
        "--set",
        "scheduler.pbt.mutations={lr: {loguniform: [0.3, 0.001]}}",
        "--storage",
        tmp_path / "r",
    )
    assert result.returncode == 2
    assert (
        "sweeps/pbt-lr.yaml: scheduler.pbt.mutations.lr.loguniform: `low < high` must hold, but got low=0.3, high=0.001"
        in " ".join(result.stderr.split())
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_schedules_prints_formulas_and_draws_them(tmp_path):
    png = tmp_path / "lr.png"
    result = lrtune("schedules", "--plot", png, "--epochs", "30", "--set", "step.drop=0.25")
    assert result.returncode == 0, result.stderr
    assert "step  lr(epoch) = lr * drop ** floor(epoch / epochs_drop)" in result.stdout
    assert "lr=0.1, drop=0.25, epochs_drop=10" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_of_a_missing_sweep_is_a_clear_error(tmp_path):
    result = lrtune("results", tmp_path)
    assert result.returncode == 2
    assert "no metrics/ dataset here" in result.stderr


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """A finished sweep with known answers, as real Parquet files (no Ray needed)."""
    from synthetic_results import everything

    return everything(tmp_path_factory.mktemp("done") / "sweep")


def test_results_summarises_statuses_and_runs_sql(finished_sweep):
    summary = lrtune("results", finished_sweep)
    assert summary.returncode == 0, summary.stderr
    assert (
        "1 diverged" in summary.stdout and "1 error" in summary.stdout and "1 stopped early" in summary.stdout
    )
    assert "error " in summary.stdout and "out of memory on GPU 0" in summary.stdout
    query = lrtune(
        "results",
        finished_sweep,
        "--sql",
        "select count(distinct trial_id) as n from metrics where family = 'step'",
    )
    assert query.returncode == 0, query.stderr
    assert query.stdout.split() == ["n", "16"]
    bad = lrtune("results", finished_sweep, "--sql", "select nope from metrics")
    assert bad.returncode == 2 and "--sql:" in bad.stderr and "nope" in bad.stderr


def test_best_prints_a_fragment_the_sweep_file_takes_back(finished_sweep, tmp_path):
    import yaml

    result = lrtune("best", finished_sweep)
    assert result.returncode == 0, result.stderr
    space = yaml.safe_load(result.stdout)["space"]
    assert space == {
        "optimizer": "sgd",
        "schedule": "step",
        "lr": 0.05,
        "drop": 0.5,
        "epochs_drop": 4,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 0.0,  # SGD's default, stated like nesterov's
    }
    sweep_file = tmp_path / "confirm.yaml"
    sweep_file.write_text(yaml.safe_dump({"name": "confirm", "repeats": 5, "space": space}))
    check = lrtune("validate", sweep_file)
    assert check.returncode == 0 and "confirm: 5 trials" in check.stdout, check.stderr


def test_report_writes_html_and_pngs(finished_sweep, tmp_path):
    html = tmp_path / "out" / "report.html"
    result = lrtune("report", finished_sweep, "-o", html)
    assert result.returncode == 0, result.stderr
    assert html.read_text().count("data:image/png;base64,") == 6
    assert sorted(p.name for p in html.parent.glob("*.png")) == sorted(
        f"{n}.png" for n in ("lr", "curves", "families", "step_heatmap", "early_stopping", "importance")
    )


TINY = (
    "name: tiny\ndata: {classes: [airplane, automobile]}\nepochs: 1\nbatch_size: 32\n"
    "space: {optimizer: sgd, lr: 0.05}\n"
)


@pytest.mark.ray
@pytest.mark.parametrize(
    ("resource", "message"),
    [
        (
            "resources.gpu=0.25",
            "tiny: a trial needs resources: {cpu: 1, gpu: 0.25} but no node of this Ray has that "
            "(nodes: 2 CPU 0 GPU). Run with --set resources.gpu=0",
        ),
        (
            "resources.cpu=3",
            "tiny: a trial needs resources: {cpu: 3, gpu: 0} but no node of this Ray has that "
            "(nodes: 2 CPU 0 GPU). Run with --set resources.cpu=2",
        ),
    ],
)
def test_a_sweep_that_fits_on_no_node_is_refused_before_anything_starts(
    resource, message, cifar_archive, tmp_path
):
    sweep_file = tmp_path / "tiny.yaml"
    sweep_file.write_text(TINY)
    result = lrtune(
        "sweep", sweep_file, "--set", resource, "--data", cifar_archive, "--storage", tmp_path / "out",
        "--quiet", timeout=180,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert not (tmp_path / "out" / "tiny").exists()


def test_ray_client_is_refused_with_the_way_that_works(cifar_archive, tmp_path):
    sweep_file = tmp_path / "tiny.yaml"
    sweep_file.write_text(TINY)
    result = lrtune("sweep", sweep_file, "--address", "ray://127.0.0.1:10001", "--storage", tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Ray Client is not supported" in result.stderr
    assert "ray job submit" in result.stderr
    assert not (tmp_path / "tiny").exists()


TINY_WHOLE = """
name: tiny
data: {classes: [airplane, automobile], limit: 32}
epochs: 1
batch_size: 32
space: {optimizer: sgd, lr: 0.05, momentum: 0}
"""


def test_storage_that_cannot_be_written_exits_3_and_leaves_no_sweep_folder(tmp_path, cifar_archive):
    (tmp_path / "tiny.yaml").write_text(TINY_WHOLE)
    (tmp_path / "a-file").write_text("not a folder")
    result = lrtune(
        "sweep", tmp_path / "tiny.yaml", "--data", cifar_archive, "--storage", tmp_path / "a-file" / "results"
    )
    assert result.returncode == 3, result.stderr
    assert "--storage" in result.stderr and "a-file" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "a-file").read_text() == "not a folder"
