"""Sweep files: what is accepted, and the message for what is not."""

import re
from pathlib import Path

import pytest

from lrtune.spec import SweepFileError, apply_overrides, load_spec, parse_yaml

SWEEPS = sorted((Path(__file__).parent.parent / "sweeps").glob("*.yaml"))

BASE = """
name: t
epochs: 3
space:
  optimizer: sgd
  schedule: step
  lr: {loguniform: [1e-3, 0.3]}
  momentum: {grid: [0.5, 0.9]}
  drop: {grid: [0.25, 0.5]}
  epochs_drop: {choice: [5, 10]}
"""


def spec_of(text, tmp_path, *overrides):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return load_spec(path, overrides)


def error_of(text, tmp_path, *overrides):
    with pytest.raises(SweepFileError) as info:
        spec_of(text, tmp_path, *overrides)
    return str(info.value)


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_every_library_sweep_validates(path):
    spec = load_spec(path)
    assert spec.trial_count() >= 1


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    spec = spec_of(BASE, tmp_path)
    assert spec.space[0].params["lr"].args == (0.001, 0.3)
    assert isinstance(parse_yaml("lr: 1e-3", "x")["lr"], float)


def test_defaults_fill_what_the_file_leaves_out(tmp_path):
    spec = spec_of(BASE, tmp_path)
    assert (spec.metric, spec.metric_mode, spec.repeats, spec.scheduler.name, spec.search) == (
        "val_accuracy",
        "max",
        1,
        "fifo",
        "random",
    )
    assert spec.resources.cpu == 1 and spec.resources.gpu == 0


def test_loss_metric_minimises(tmp_path):
    assert spec_of(BASE + "metric: val_loss\n", tmp_path).metric_mode == "min"


def test_trial_count_crosses_grids_samples_and_repeats(tmp_path):
    spec = spec_of(BASE + "num_samples: 3\nrepeats: 2\n", tmp_path)
    assert spec.trial_count() == 2 * 2 * 3 * 2


def test_arms_sample_only_their_own_parameters(tmp_path):
    text = """
name: arms
space:
  - {optimizer: sgd, schedule: time, lr: 0.1, decay: 0.001, momentum: 0.5}
  - {optimizer: adam, lr: {loguniform: [1e-4, 1e-2]}}
"""
    spec = spec_of(text, tmp_path)
    assert [a.label for a in spec.space] == ["sgd/time", "adam"]
    assert set(spec.space[1].params) == {"optimizer", "lr"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: t\nepoch: 3\nspace: {lr: 0.1}\n",
            r"s.yaml: epoch: unknown key; allowed here: name, data, model, epochs",
        ),
        ("name: t\nspace: {lr: -0.1}\n", r"s.yaml: space.lr: -0.1 is not in \(0, inf\)"),
        (
            "name: t\nspace: {schedule: step, lr: 0.1, drop: {grid: [0.5, 1.5]}, epochs_drop: 10}\n",
            r"s.yaml: space.drop.grid: 1.5 is not in \(0, 1\]",
        ),
        (
            "name: t\nspace: {optimizer: adam, drop: 0.5}\n",
            r"s.yaml: space.drop: schedule constant does not use drop \(only step does\)",
        ),
        (
            "name: t\nspace: [{lr: 0.1}, {optimizer: adam, momentum: 0.9}]\n",
            r"s.yaml: space.1.momentum: optimizer adam does not use momentum \(only sgd, muon does\)",
        ),
        (
            "name: t\nspace: {schedule: cosinus}\n",
            r"s.yaml: space.schedule: 'cosinus' is not one of: constant, time, step, exponential, piecewise, cosine",
        ),
        (
            "name: t\nspace: {lr: {normal: [0, 1]}}\n",
            r"s.yaml: space.lr: a mapping must have exactly one key, a distribution",
        ),
        (
            "name: t\nspace: {lr: {uniform: [0.3, 0.1]}}\n",
            r"s.yaml: space.lr.uniform: `low < high` must hold, but got low=0.3, high=0.1",
        ),
        (
            "name: t\nspace: {lr: {loguniform: [0, 0.1]}}\n",
            r"space.lr.loguniform: `low > 0` must hold for a log scale, but got low=0",
        ),
        (
            "name: t\nspace: {lr: [0.1, 0.01]}\n",
            r"space.lr: a list needs a distribution: \{grid: \[0.1, 0.01\]\}",
        ),
        ("name: t\nspace: {schedule: step, lr: 0.1}\n", r"s.yaml: space: schedule step needs drop"),
        (
            "name: t\nspace: {learning_rate: 0.1}\n",
            r"space.learning_rate: unknown hyperparameter; allowed: optimizer, schedule, lr",
        ),
        (
            "name: t\nmodel: resnet\nspace: {lr: 0.1}\n",
            r"s.yaml: model: 'resnet' is not a model; allowed: seed-tiny, keras-cifar10-cnn",
        ),
        (
            "name: t\nspace: {lr: 0.1}\nresources: {cpu: 0}\n",
            r"s.yaml: resources.cpu: Input should be greater than 0",
        ),
        (
            "name: t\nspace: {lr: 0.1}\nscheduler: {asha: {grace: 1}}\n",
            r"s.yaml: scheduler.asha.grace: unknown key; allowed here: grace_period, reduction_factor, brackets",
        ),
        (
            "name: t\nspace: {lr: 0.1}\nscheduler: {asha: {}, pbt: {}}\n",
            r"scheduler: give exactly one scheduler",
        ),
        (
            "name: t\nspace: {lr: {uniform: [0.01, 0.1]}}\nsearch: grid\n",
            r"space.0.lr: search: grid needs fixed, grid or choice values",
        ),
        ("name: t\nepochs: 0\nspace: {lr: 0.1}\n", r"s.yaml: epochs: Input should be greater than 0"),
        ("name: t\nepochs: '3'\nspace: {lr: 0.1}\n", r"s.yaml: epochs: Input should be a valid integer"),
        ("name: ../evil\nspace: {lr: 0.1}\n", r"s.yaml: name: String should match pattern"),
        ("name: t\n", r"s.yaml: space: is required"),
        ("- a\n- b\n", r"s.yaml: expected a mapping of settings"),
        ("name: t\nspace: {lr: !!python/object/apply:os.system [echo]}\n", r"s.yaml: not valid YAML"),
    ],
)
def test_invalid_files_name_the_key_and_what_is_allowed(text, message, tmp_path):
    assert re.search(message, error_of(text, tmp_path)), error_of(text, tmp_path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SweepFileError, match=r"nope.yaml: no such sweep file"):
        load_spec(tmp_path / "nope.yaml")


def test_set_overrides_nested_fields(tmp_path):
    spec = spec_of(BASE, tmp_path, "epochs=1", "space.lr.grid=[0.1, 0.01]", "space.momentum=0.9")
    assert spec.epochs == 1
    assert spec.space[0].params["lr"].kind == "grid" and spec.space[0].params["lr"].args == (0.1, 0.01)
    assert spec.space[0].params["momentum"].args == (0.9,)


def test_set_reaches_into_an_arm_by_index():
    raw = {"name": "t", "space": [{"lr": 0.1}, {"optimizer": "adam", "lr": 0.001}]}
    assert apply_overrides(raw, ["space.1.lr=1e-4"], "x")["space"][1]["lr"] == 1e-4


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epoch=3", r"--set epoch: no such setting; allowed: name, data, model, epochs"),
        ("epochs", r"--set 'epochs': expected KEY=VALUE"),
        ("space.lr=-1", r"s.yaml: space.lr: -1 is not in"),
        ("scheduler.asha.bogus=1", r"scheduler.asha.bogus: unknown key"),
    ],
)
def test_bad_overrides_are_named(override, message, tmp_path):
    assert re.search(message, error_of(BASE, tmp_path, override))


def test_piecewise_lists_are_fixed_values_not_distributions(tmp_path):
    text = "name: pw\nspace: {optimizer: sgd, schedule: piecewise, boundaries: [2, 4], values: [0.1, 0.01, 0.001]}\n"
    arm = spec_of(text, tmp_path).space[0]
    assert arm.params["boundaries"].to_tune() == [2, 4]
    assert arm.params["values"].to_json() == [0.1, 0.01, 0.001]


@pytest.mark.parametrize(
    ("arm", "message"),
    [
        (
            "{schedule: piecewise, lr: 0.1, boundaries: [2], values: [0.1, 0.01]}",
            r"space.lr: schedule piecewise does not use lr \(it takes boundaries, values\); remove lr",
        ),
        (
            "{schedule: piecewise, boundaries: [2], values: [0.1, -1]}",
            r"space.values: -1 in \[0.1, -1\] is not in \(0, inf\)",
        ),
        (
            "{schedule: piecewise, boundaries: 2, values: [0.1, 0.01]}",
            r"space.boundaries: 2 is not a list of numbers in \(0, inf\)",
        ),
        ("{schedule: piecewise, values: [0.1]}", r"space: schedule piecewise needs boundaries"),
    ],
)
def test_piecewise_arms_are_checked(arm, message, tmp_path):
    assert re.search(message, error_of(f"name: pw\nspace: {arm}\n", tmp_path))


def test_warmup_goes_with_any_schedule_and_optimizer_and_names_the_arm(tmp_path):
    text = """
name: w
space:
  - {optimizer: sgd, schedule: step, lr: 0.1, drop: 0.5, epochs_drop: 2, warmup_epochs: 1}
  - {optimizer: lion, schedule: one_cycle, max_lr: 0.001, warmup_epochs: 0.5, warmup_start: 1e-5}
  - {optimizer: adamw, schedule: cosine, lr: 0.001, weight_decay: 0.05}
"""
    spec = spec_of(text, tmp_path)
    assert [a.label for a in spec.space] == ["sgd/warmup+step", "lion/warmup+one_cycle", "adamw/cosine"]


@pytest.mark.parametrize(
    ("arm", "message"),
    [
        (
            "{optimizer: rmsprop, weight_decay: 0.01}",
            r"space.weight_decay: optimizer rmsprop does not use weight_decay \(only sgd, adam, adamw, nadam, lion, schedule_free_adamw, muon does\)",
        ),
        ("{schedule: one_cycle, lr: 0.1, max_lr: 0.1}", r"space.lr: schedule one_cycle does not use lr"),
        (
            "{schedule: cyclic, lr: 0.01, max_lr: 0.1, step_size_epochs: 2, cycle_mode: triangle}",
            r"space.cycle_mode: 'triangle' is not one of: triangular, triangular2, exp_range",
        ),
        ("{schedule: cyclic, lr: 0.01, max_lr: 0.1}", r"space: schedule cyclic needs step_size_epochs"),
        ("{schedule: cosine, lr: 0.1, warmup_epochs: 0}", r"space.warmup_epochs: 0 is not in \(0, inf\)"),
        ("{schedule: plateau, lr: 0.1, factor: 1.5}", r"space.factor: 1.5 is not in \(0, 1\)"),
        (
            "{optimizer: {grid: [adam, lion]}, lr: 0.001, beta_1: {grid: [0, 0.9]}}",
            r"space.beta_1: optimizer lion needs beta_1 in \(0, 1\) \(Keras refuses 0\)",
        ),
        (
            "{schedule: step, lr: 0.1, drop: 0.5, epochs_drop: 2, lr_min: 0.01}",
            r"space.lr_min: schedule step does not use lr_min \(only cosine, cosine_restarts, wsd does\)",
        ),
    ],
)
def test_modern_arms_are_checked(arm, message, tmp_path):
    assert re.search(message, error_of(f"name: m\nspace: {arm}\n", tmp_path))


def test_a_span_may_be_left_to_the_trial(tmp_path):
    arm = spec_of("name: c\nspace: {schedule: one_cycle, max_lr: 0.1}\n", tmp_path).space[0]
    assert set(arm.params) == {"schedule", "max_lr"}


@pytest.mark.parametrize(
    ("arm", "message"),
    [
        (
            "{schedule: cosine, lr: 0.1, lr_min: 0.2}",
            r"s.yaml: space: Argument `lr_min` must be <= lr. Received: lr_min=0.2, lr=0.1",
        ),
        (
            "{schedule: cosine, lr: 0.1, warmup_epochs: 3}",
            r"s.yaml: space: warmup_epochs=3 leaves no epoch of the trial's 3 for schedule 'cosine'",
        ),
        (
            "{schedule: piecewise, boundaries: [1, 2], values: [0.1, 0.01]}",
            r"s.yaml: space: Argument `values` must have one more entry than `boundaries`",
        ),
    ],
)
def test_rules_between_fixed_parameters_are_checked_before_anything_runs(arm, message, tmp_path):
    assert re.search(message, error_of(f"name: m\nepochs: 3\nspace: {arm}\n", tmp_path))


# --- issue 13: what validates must train ------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("name: t\nspace: {optimizer: sgd, lr: 0.05, momentum: 0}\n", "momentum", 0.0),
        ("name: t\nspace: {lr: 1}\n", "lr", 1.0),
        ("name: t\nspace: {schedule: time, lr: 1, decay: 0}\n", "decay", 0.0),
        ("name: t\nspace: {schedule: step, lr: 1, drop: 1, epochs_drop: 2}\n", "drop", 1.0),
        ("name: t\nspace: {optimizer: rmsprop, rho: {choice: [0.5, 0.9]}, epsilon: 1}\n", "epsilon", 1.0),
        ("name: t\nspace: {optimizer: adam, beta_1: 0}\n", "beta_1", 0.0),
    ],
)
def test_whole_numbers_of_float_hyperparameters_become_floats(text, key, value, tmp_path):
    dist = spec_of(text, tmp_path).space[0].params[key]
    assert dist.args == (value,) and all(type(v) is float for v in dist.args)


def test_whole_numbers_in_choice_grid_and_bounds_become_floats(tmp_path):
    text = "name: t\nspace: {lr: {uniform: [1, 2]}, momentum: {grid: [0, 0.5]}}\n"
    params = spec_of(text, tmp_path).space[0].params
    assert [type(v) for v in params["lr"].args + params["momentum"].args] == [float] * 4
    choice = spec_of(BASE, tmp_path, "space.momentum.choice=[0, 0.9]").space[0].params["momentum"]
    assert choice.args == (0.0, 0.9) and type(choice.args[0]) is float


def test_set_with_a_whole_number_becomes_a_float(tmp_path):
    spec = spec_of(BASE, tmp_path, "space.momentum=0", "space.lr=1")
    assert type(spec.space[0].params["momentum"].args[0]) is float
    assert type(spec.space[0].params["lr"].args[0]) is float


def test_epochs_drop_stays_as_written(tmp_path):
    assert spec_of(BASE, tmp_path).space[0].params["epochs_drop"].args == (5, 10)


def test_class_subset_by_name_and_index(tmp_path):
    spec = spec_of("name: t\ndata: {classes: [cat, 5]}\nspace: {lr: 0.1}\n", tmp_path)
    assert spec.data.classes == ["cat", 5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: t\ndata: {classes: [cat]}\nspace: {lr: 0.1}\n",
            r"s.yaml: data.classes: a classifier needs at least 2 classes, got \['cat'\]",
        ),
        (
            "name: t\ndata: {classes: [cat, kat]}\nspace: {lr: 0.1}\n",
            r"s.yaml: data.classes: unknown class 'kat'; valid classes are airplane, automobile",
        ),
        (
            "name: t\ndata: {classes: [3, 10]}\nspace: {lr: 0.1}\n",
            r"s.yaml: data.classes: index 10 is out of range",
        ),
        (
            "name: t\ndata: {classes: [cat, 3]}\nspace: {lr: 0.1}\n",
            r"s.yaml: data.classes: 'cat' \(index 3\) is listed twice",
        ),
        (
            "name: t\nspace: {lr: {qloguniform: [1.0e-4, 0.1, 1.0e-3]}}\n",
            r"s.yaml: space.lr.qloguniform: `low` must be a multiple of q \(Ray Tune draws multiples of q "
            r"between the bounds\), but got low=0.0001, q=0.001; e.g. \[0.001, 0.1, 0.001\]",
        ),
        (
            "name: t\nspace: {schedule: step, lr: 0.1, epochs_drop: 2, drop: {quniform: [0.25, 0.9, 0.5]}}\n",
            r"s.yaml: space.drop.quniform: `low` must be a multiple of q",
        ),
        (
            "name: t\nspace: {lr: {randint: [1, 3]}}\n",
            r"s.yaml: space.lr.randint: lr takes a float and randint draws integers: use uniform",
        ),
        (
            "name: t\nspace: {lr: {grid: [0.1, 0.1]}}\n",
            r"s.yaml: space.lr.grid: 0.1 is listed twice; each grid value runs once",
        ),
        (
            "name: t\nspace: {lr: 0.1}\nscheduler: {pbt: {mutations: {lr: {uniform: [0, 0.9]}}}}\n",
            r"s.yaml: scheduler.pbt.mutations.lr.uniform: 0 is not in \(0, inf\)",
        ),
    ],
)
def test_files_that_would_fail_in_every_trial_are_refused(text, message, tmp_path):
    # (PBT's rules are pinned with the PBT tests above.)
    assert re.search(message, error_of(text, tmp_path)), error_of(text, tmp_path)


# --- population-based training ------------------------------------------------

PBT = """
name: p
epochs: 4
space: {optimizer: sgd, lr: {loguniform: [1.0e-3, 0.3]}, momentum: 0.9}
scheduler: {pbt: {perturbation_interval: 1}}
"""


def test_pbt_perturbs_the_sampled_lr_and_momentum_by_default(tmp_path):
    spec = spec_of(PBT, tmp_path, "space.momentum.uniform=[0.5, 0.95]")
    assert {k: (d.kind, d.args) for k, d in spec.pbt_mutations().items()} == {
        "lr": ("loguniform", (1e-3, 0.3)),
        "momentum": ("uniform", (0.5, 0.95)),
    }
    assert spec_of(PBT, tmp_path).pbt_mutations().keys() == {"lr"}  # a fixed momentum stays fixed


def test_pbt_mutations_may_perturb_a_fixed_value_of_the_arm(tmp_path):
    spec = spec_of(PBT, tmp_path, "scheduler.pbt.mutations={momentum: {choice: [0.5, 0.9, 0.99]}}")
    assert {k: d.args for k, d in spec.pbt_mutations().items()} == {"momentum": (0.5, 0.9, 0.99)}


def test_pbt_over_several_arms_perturbs_keys_every_arm_sets(tmp_path):
    text = PBT.replace(
        "space: {optimizer: sgd, lr: {loguniform: [1.0e-3, 0.3]}, momentum: 0.9}",
        "space:\n  - {optimizer: sgd, lr: {loguniform: [1.0e-3, 0.3]}, momentum: 0.9}\n"
        "  - {optimizer: adam, lr: {loguniform: [1.0e-4, 1.0e-2]}}",
    )
    spec = spec_of(text, tmp_path, "scheduler.pbt.mutations={lr: {loguniform: [1.0e-4, 0.3]}}")
    assert spec.pbt_mutations().keys() == {"lr"} and spec.trial_count() == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["scheduler.pbt.mutations={weight_decay: {loguniform: [1.0e-5, 1.0e-3]}}"],
            r"s.yaml: scheduler.pbt.mutations.weight_decay: space \(sgd/constant\) does not set weight_decay; "
            r"PBT perturbs a value every trial runs with, so each arm must set it: add weight_decay to space "
            r"or remove it from mutations \(space sets optimizer, lr, momentum\)",
        ),
        (
            ["scheduler.pbt.mutations={learning_rate: {uniform: [0.1, 0.2]}}"],
            r"s.yaml: scheduler.pbt.mutations.learning_rate: unknown hyperparameter; allowed: optimizer, schedule, lr",
        ),
        (
            ["scheduler.pbt.mutations={optimizer: {choice: [sgd, adam]}}"],
            r"scheduler.pbt.mutations.optimizer: PBT cannot change the optimizer of a trained model",
        ),
        (
            ["scheduler.pbt.mutations={nesterov: {uniform: [0, 1]}}", "space.nesterov=false"],
            r"scheduler.pbt.mutations.nesterov.uniform: nesterov is not numeric: use choice or grid",
        ),
        (
            ["scheduler.pbt.mutations={momentum: {uniform: [0.5, 1.2]}}"],
            r"s.yaml: scheduler.pbt.mutations.momentum.uniform: 1.2 is not in \[0, 1\)",
        ),
        (
            ["scheduler.pbt.mutations={lr: {loguniform: [0, 0.3]}}"],
            r"scheduler.pbt.mutations.lr.loguniform: `low > 0` must hold for a log scale, but got low=0",
        ),
        (
            ["scheduler.pbt.mutations={lr: {loguniform: 0.3}}"],
            r"scheduler.pbt.mutations.lr.loguniform: expected \[low, high\], 0 < low, got 0.3",
        ),
        (
            ["scheduler.pbt.mutations={lr: {between: [0.1, 0.2]}}"],
            r"scheduler.pbt.mutations.lr: a mapping must have exactly one key, a distribution: choice, grid",
        ),
        (
            ["scheduler.pbt.mutations={lr: 0.1}"],
            r"scheduler.pbt.mutations.lr: 0.1 is a single value, nothing to perturb within; give a "
            r"distribution: \{choice: ...\}",
        ),
        (
            ["scheduler.pbt.mutations={}"],
            r"s.yaml: scheduler.pbt.mutations: is empty: name at least one hyperparameter to perturb",
        ),
        (
            ["scheduler.pbt.mutations=[lr]"],
            r"s.yaml: scheduler.pbt.mutations: Input should be a valid dictionary",
        ),
        (
            ["space.lr=0.1"],
            r"s.yaml: scheduler.pbt: nothing to perturb: the space samples neither lr nor momentum and "
            r"there are no mutations",
        ),
        (
            ["search=tpe"],
            r"s.yaml: search: tpe cannot run with scheduler pbt .*use search: random or grid",
        ),
    ],
)
def test_pbt_settings_that_cannot_run_are_refused_before_anything_starts(overrides, message, tmp_path):
    assert re.search(message, error_of(PBT, tmp_path, *overrides)), error_of(PBT, tmp_path, *overrides)


def test_pbt_over_several_arms_needs_mutations_every_arm_sets(tmp_path):
    text = PBT.replace(
        "space: {optimizer: sgd, lr: {loguniform: [1.0e-3, 0.3]}, momentum: 0.9}",
        "space:\n  - {optimizer: sgd, lr: {loguniform: [1.0e-3, 0.3]}, momentum: 0.9}\n"
        "  - {optimizer: adam, lr: 0.001}",
    )
    assert re.search(r"s.yaml: scheduler.pbt: with several arms give mutations", error_of(text, tmp_path))
    message = error_of(text, tmp_path, "scheduler.pbt.mutations={momentum: {uniform: [0.5, 0.95]}}")
    assert re.search(r"scheduler.pbt.mutations.momentum: space.1 \(adam\) does not set momentum", message)


# --- data: one source, its keys -------------------------------------------------


@pytest.mark.parametrize(
    ("data", "source"),
    [
        ("{}", {"dataset": "cifar10", "validation": "test"}),
        ("{dataset: cifar10, path: c.tar.gz, classes: [cat, dog], limit: 50}", {"path": "c.tar.gz"}),
        ("{dataset: cifar100, labels: coarse, classes: [fish, trees]}", {"dataset": "cifar100"}),
        ("{folder: imgs, validation: 0.2, image_size: [24, 24], color_mode: grayscale}", {"folder": "imgs"}),
        ("{folder: imgs, validation_folder: val, classes: [b, a]}", {"validation_folder": "val"}),
        ("{arrays: d.npz, classes: [ant, bee]}", {"arrays": "d.npz"}),
    ],
)
def test_each_data_source_is_accepted_and_survives_a_round_trip(tmp_path, data, source):
    spec = spec_of(f"name: t\ndata: {data}\nspace: {{lr: 0.1}}\n", tmp_path)
    saved = spec.to_yaml_dict()
    assert source.items() <= saved["data"].items()
    from lrtune.spec import parse_spec

    assert parse_spec(saved, "sweep.yaml").to_yaml_dict() == saved


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            "{dataset: cifar10, folder: imgs}",
            r"s.yaml: data: names 2 sources \(dataset, folder\); give exactly one: `dataset: cifar10`, "
            r"`dataset: cifar100`, `folder: \(an image folder\)`, `arrays: \(an .npz\)`",
        ),
        ("{folder: imgs, arrays: d.npz, validation: 0.2}", r"data: names 2 sources \(folder, arrays\)"),
        (
            "{labels: fine}",
            r"s.yaml: data.labels: applies to dataset: cifar100, not to dataset: cifar10; "
            r"dataset: cifar10 takes dataset, path, classes, validation, limit",
        ),
        (
            "{folder: imgs, path: x, validation: 0.2}",
            r"data.path: applies to dataset: cifar10 or dataset: cifar100, not to folder: \(an image folder\)",
        ),
        (
            "{arrays: d.npz, image_size: [8, 8]}",
            r"data.image_size: applies to folder: \(an image folder\), not to arrays",
        ),
        ("{dataset: cifar10, color_mode: rgb}", r"data.color_mode: applies to folder: \(an image folder\)"),
        (
            "{folder: imgs}",
            r"s.yaml: data.folder: needs validation images: add validation_folder: PATH .* or validation: FRACTION",
        ),
        ("{folder: imgs, validation_folder: v, validation: 0.2}", r"data.validation: .*not both"),
        ("{folder: imgs, validation: 0.2, image_size: [32]}", r"data.image_size: must be \[height, width\]"),
        (
            "{folder: imgs, validation: 0.2, image_size: [0, 3]}",
            r"data.image_size: must be \[height, width\]",
        ),
        (
            "{folder: imgs, validation: 0.2, color_mode: hsv}",
            r"data.color_mode: Input should be 'rgb', 'grayscale'",
        ),
        ("{folder: imgs, validation: 0.2, classes: [a, a]}", r"data.classes: lists a class twice"),
        (
            "{folder: imgs, validation: 0.2, classes: [a]}",
            r"data.classes: a classifier needs at least 2 classes",
        ),
        (
            "{arrays: d.npz, classes: [0, 1]}",
            r"data.classes: for arrays:, classes names labels 0, 1, ... in order",
        ),
        (
            "{dataset: cifar100, classes: [cat, apple]}",
            r"data.classes: unknown class 'cat'; valid classes are apple",
        ),
        (
            "{dataset: cifar100, labels: coarse, classes: [apple, fish]}",
            r"unknown class 'apple'; valid classes are aquatic",
        ),
        ("{dataset: mnist}", r"data.dataset: Input should be 'cifar10' or 'cifar100'"),
        ("{dataset: cifar100, labels: medium}", r"data.labels: Input should be 'fine' or 'coarse'"),
    ],
)
def test_data_errors_name_the_key_and_what_is_allowed(tmp_path, data, message):
    assert re.search(message, error_of(f"name: t\ndata: {data}\nspace: {{lr: 0.1}}\n", tmp_path))
