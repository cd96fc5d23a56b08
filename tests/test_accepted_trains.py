"""The contract: every sweep file that ``lrtune validate`` accepts, trains.

Hypothesis draws valid sweep files over every key: each schedule and
optimizer, every distribution kind, whole-number and float spellings (in
the file and through ``--set``), class subsets by name and by index, each
scheduler and search. Each drawn file is validated as ``lrtune validate``
does, its data loaded as ``lrtune sweep`` does, Tune's space, scheduler
and searcher built, and trial configs drawn as Tune (or Optuna) draws them;
then the sweep's epochs (1-3) of each through the real :func:`lrtune.training.trial.run_trial`
on a tiny fixture, outside Ray to stay fast. A PBT file also continues a
trial from its checkpoint with a perturbed config, as PBT does. No trial
may raise: it ends ``done`` or ``diverged``. A handful of files then run end
to end through Ray (:func:`test_a_handful_run_end_to_end_through_ray`).
"""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lrtune.data import CLASS_NAMES, load_cifar10
from lrtune.spec import SweepFileError, apply_overrides, parse_spec, parse_yaml
from lrtune.training.optimizers import DEFAULTS as OPTIMIZER_SETTINGS
from lrtune.training.optimizers import schedule_conflict
from lrtune.training.schedules import SCHEDULES, schedule_params

#: Per hyperparameter: values to draw (whole numbers where the range allows one,
#: so the int spelling is exercised) and quantisation steps.
VALUES = {
    "lr": ([1, 0.001, 0.01, 0.05, 0.1, 0.3], [0.001, 0.01]),
    "decay": ([0, 0.0001, 0.001, 0.01], [0.001]),
    "drop": ([1, 0.25, 0.5, 0.75], [0.25]),
    "epochs_drop": ([1, 2, 3, 0.5, 1.5], [1, 0.5]),
    "k": ([0, 0.05, 0.1, 0.5], [0.05]),
    "momentum": ([0, 0.5, 0.9, 0.95], [0.05]),
    "rho": ([0.5, 0.9, 0.95], [0.05]),
    "beta_1": ([0, 0.5, 0.9], [0.1]),
    "beta_2": ([0, 0.9, 0.999], [0.001]),
    "epsilon": ([1, 1e-8, 1e-7, 1e-3], [0.001]),
    "weight_decay": ([0, 0.01, 0.1], [0.01]),
    "lr_min": ([0, 0.0001, 0.001], [0.0001]),
    "decay_epochs": ([1, 2, 3, 1.5], [0.5]),
    "period_epochs": ([1, 2, 0.5], [0.5]),
    "period_mult": ([1, 2, 1.5], [0.5]),
    "restart_decay": ([1, 0.5, 0.75], [0.25]),
    "max_lr": ([0.1, 0.3, 1], [0.1]),
    "cycle_epochs": ([1, 2, 3], [1]),
    "pct_start": ([0.25, 0.3, 0.5], [0.05]),
    "div_factor": ([1, 10, 25], [1]),
    "final_div_factor": ([1, 100, 10000], [1]),
    "step_size_epochs": ([0.5, 1, 1.5], [0.5]),
    "gamma": ([1, 0.9, 0.99], [0.01]),
    "end_lr": ([0, 0.0001, 0.001], [0.0001]),
    "power": ([1, 2, 0.5], [0.5]),
    "factor": ([0.1, 0.5], [0.1]),
    "patience": ([0, 1, 2], [1]),
    "min_lr": ([0, 0.0001], [0.0001]),
    "cooldown": ([0, 1], [1]),
    "warmup_epochs": ([1, 0.5], [0.5]),
    "warmup_start": ([0, 0.001], [0.001]),
    "decay_fraction": ([1, 0.2, 0.5], [0.1]),
}
CATEGORIES = {
    "nesterov": [True, False],
    "amsgrad": [True, False],
    "anneal": ["cos", "linear"],
    "cycle_mode": ["triangular", "triangular2", "exp_range"],
    "decay_shape": ["linear", "cosine", "1-sqrt"],
}
#: (lowest multiple of q allowed, highest) per key, as multiples: inside the key's range.
UPPER = {"drop": 1, "momentum": 0.95, "rho": 0.95, "beta_1": 0.9, "beta_2": 0.999, "pct_start": 0.95,
         "restart_decay": 1, "gamma": 1, "factor": 0.9, "decay_fraction": 1}  # fmt: skip
LOWER = {"period_mult": 1, "div_factor": 1, "final_div_factor": 1}
#: Keys whose range excludes 0.
POSITIVE = {"lr", "drop", "epochs_drop", "rho", "epsilon", "decay_epochs", "period_epochs", "restart_decay",
            "max_lr", "cycle_epochs", "pct_start", "step_size_epochs", "gamma", "power", "factor", "warmup_epochs",
            "decay_fraction"}  # fmt: skip
DISCRETE = ("fixed", "choice", "grid")


@st.composite
def dist(draw, key: str, discrete_only: bool):
    """One hyperparameter in any spelling the sweep file allows."""
    if key in CATEGORIES:
        options = CATEGORIES[key]
        return draw(st.sampled_from([*options, {"choice": options}, {"grid": options[::-1]}]))
    values, steps = VALUES[key]
    kinds = (
        list(DISCRETE) if discrete_only else [*DISCRETE, "uniform", "loguniform", "quniform", "qloguniform"]
    )
    if key == "epochs_drop" and not discrete_only:
        kinds.append("randint")
    kind = draw(st.sampled_from(kinds))
    if kind == "fixed":
        return draw(st.sampled_from(values))
    if kind in ("choice", "grid"):
        return {kind: draw(st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True))}
    if kind == "randint":
        low = draw(st.integers(1, 3))
        return {"randint": [low, low + draw(st.integers(1, 3))]}
    positive = [v for v in values if v > 0] if "log" in kind else values
    if len(positive) < 2:  # e.g. min_lr: one positive value to draw from
        positive = [*positive, positive[0] * 10]
    if kind in ("uniform", "loguniform"):
        low, high = sorted(draw(st.lists(st.sampled_from(positive), min_size=2, max_size=2, unique=True)))
        return {kind: [low, high]}
    q = draw(st.sampled_from(steps))
    top = math.floor(round(UPPER.get(key, max(values) + 1) / q, 9))
    bottom = max(1 if "log" in kind or key in POSITIVE else 0, math.ceil(round(LOWER.get(key, 0) / q, 9)))
    low = draw(st.integers(bottom, max(bottom, min(top - 1, bottom + 5))))
    high = draw(st.integers(low + 1, max(low + 1, min(top, low + 20))))
    return {kind: [round(low * q, 10), round(high * q, 10)] + [q]}


@st.composite
def arm(draw, discrete_only: bool):
    """One arm: an optimizer (or a choice of them), a schedule and their settings."""
    schedule = draw(st.sampled_from(list(SCHEDULES)))
    # Schedule-free AdamW runs with a constant rate only (validate refuses the rest).
    suited = [o for o in OPTIMIZER_SETTINGS if schedule_conflict(o, schedule) is None]
    if draw(st.integers(0, 5)) == 0:
        optimizers = sorted(draw(st.lists(st.sampled_from(suited), min_size=2, max_size=3, unique=True)))
        space = {"optimizer": {"choice": optimizers}}
        own: list[str] = []  # a setting must suit every optimizer of the arm: lr only
    else:
        optimizer = draw(st.sampled_from(suited))
        space = {"optimizer": optimizer}
        own = [k for k in OPTIMIZER_SETTINGS[optimizer] if k != "lr"]
        own = draw(st.lists(st.sampled_from(own), unique=True)) if own else []
    if schedule != "constant" or draw(st.booleans()):
        space["schedule"] = schedule
    keys = [*schedule_params(schedule)] if draw(st.booleans()) or schedule != "constant" else []
    if schedule == "piecewise":  # plain lists, one more value than boundaries
        boundaries = draw(st.sampled_from([[1], [1, 2], [0.5, 2]]))
        space["boundaries"] = boundaries
        space["values"] = draw(st.lists(st.sampled_from([1, 0.1, 0.05, 0.01]), min_size=len(boundaries) + 1,
                                        max_size=len(boundaries) + 1))  # fmt: skip
        keys = []
    if draw(st.integers(0, 3)) == 0:
        keys += ["warmup_epochs"] + (["warmup_start"] if draw(st.booleans()) else [])
    for key in keys + own:
        space[key] = draw(dist(key, discrete_only))
    return space


CLASS_SPELLINGS = st.lists(
    st.integers(0, 9).flatmap(lambda i: st.sampled_from([i, CLASS_NAMES[i]])),
    min_size=2,
    max_size=3,
    unique_by=lambda c: c if isinstance(c, int) else CLASS_NAMES.index(c),
)

SCHEDULERS = st.one_of(
    st.just("fifo"),
    st.builds(
        lambda g, r, b: {"asha": {"grace_period": g, "reduction_factor": r, "brackets": b}},
        st.integers(1, 2),
        st.sampled_from([2, 3, 4]),
        st.integers(1, 2),
    ),
    st.builds(
        lambda g, r: {"sha": {"grace_period": g, "reduction_factor": r}},
        st.integers(1, 2),
        st.sampled_from([2, 3]),
    ),
    st.builds(lambda r: {"hyperband": {"reduction_factor": r}}, st.sampled_from([2, 3])),
    st.builds(
        lambda g, m: {"median": {"grace_period": g, "min_samples_required": m}},
        st.integers(1, 2),
        st.integers(1, 3),
    ),
    st.just("pbt"),
)


@st.composite
def sweep_file(draw):
    """(sweep-file text, --set overrides): valid by construction."""
    search = draw(st.sampled_from(["random", "grid", "tpe"]))
    scheduler = draw(SCHEDULERS)
    pbt = scheduler == "pbt"
    if pbt and search == "tpe":
        search = "random"
    arms = draw(st.lists(arm(discrete_only=search == "grid"), min_size=1, max_size=1 if pbt else 2))
    if pbt:  # PBT needs something to perturb: lr sampled, or given as mutations
        if draw(st.booleans()):
            arms[0]["lr"] = {"grid": [0.01, 0.1]} if search == "grid" else {"loguniform": [0.001, 0.1]}
        else:
            scheduler = {
                "pbt": {"perturbation_interval": 1, "mutations": {"lr": {"loguniform": [0.001, 0.1]}}}
            }
            arms[0].setdefault("lr", 0.05)
    document = {
        "name": "drawn",
        "data": {"classes": draw(st.none() | CLASS_SPELLINGS)},
        "model": draw(st.sampled_from(["seed-tiny"] * 5 + ["keras-cifar10-cnn"])),
        "epochs": draw(st.integers(1, 3)),
        "batch_size": draw(st.sampled_from([1, 7, 16, 64])),
        "repeats": draw(st.integers(1, 2)),
        "seed": draw(st.integers(0, 3)),
        "space": arms if len(arms) > 1 or draw(st.booleans()) else arms[0],
        "scheduler": scheduler,
        "search": search,
        "num_samples": draw(st.integers(1, 2)),
    }
    if draw(st.booleans()):
        document["data"]["validation"] = draw(st.sampled_from([0.2, 0.5]))
    if draw(st.booleans()):
        document["data"]["limit"] = draw(st.integers(8, 40))
    document["mixed_precision"] = draw(st.sampled_from([False] * 7 + [True]))
    overrides = []
    if isinstance(document["space"], dict):  # a whole number through --set, as a user types it
        fixed = [
            k for k, v in document["space"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        if fixed and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(fixed)))
            overrides.append(f"space.{key}={document['space'].pop(key)}")
    return yaml.safe_dump(document, sort_keys=False), overrides


def configs_as_tune_draws_them(spec, limit: int = 2):
    """Up to ``limit`` trial configs, one per arm, drawn by Tune's variant generator or Optuna."""
    from lrtune.engine.translation import ArmSpace, param_space

    if spec.search == "tpe":
        import optuna

        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=spec.seed))
        return [ArmSpace(spec.space)(study.ask()) for _ in range(limit)]
    from ray.tune.search.variant_generator import generate_variants

    configs, labels = [], set()
    for _, resolved in generate_variants(
        {"config": param_space(spec)}, constant_grid_search=True, random_state=spec.seed
    ):
        label = resolved["config"]["arm"]["label"]
        if label not in labels:
            labels.add(label)
            configs.append(resolved["config"])
        if len(configs) == limit:
            break
    return configs


class Counter:
    refused = 0
    examples = 0
    trials = 0
    seen: set[str] = set()  # what the drawn files covered, for the summary line


def covered(spec, text: str, overrides: list[str]) -> set[str]:
    """Tags for what one drawn file exercises: search, scheduler, optimizers, schedules, kinds."""
    tags = {f"search={spec.search}", f"scheduler={spec.scheduler.name}", f"model={spec.model}"}
    for a in spec.space:
        tags |= {f"optimizer={o}" for o in a.optimizers} | {f"schedule={s}" for s in a.schedules}
        tags |= {f"dist={d.kind}" for d in a.params.values()}
    if spec.data.classes:
        tags |= {"classes=by-index" for c in spec.data.classes if isinstance(c, int)}
        tags |= {"classes=by-name" for c in spec.data.classes if isinstance(c, str)}
    if spec.mixed_precision:
        tags.add("mixed_precision")
    if overrides:
        tags.add("--set")
    if any(f": {n}\n" in text or f"- {n}\n" in text for n in range(10)):
        tags.add("whole-number")
    return tags


@pytest.fixture(scope="module")
def fixture_archive(tmp_path_factory, make_cifar_archive, request):
    """All ten classes, 100 training and 40 test images."""
    path = make_cifar_archive(
        tmp_path_factory.mktemp("cifar10") / "cifar-10-python.tar.gz",
        train_per_batch=20,
        test=40,
        num_classes=10,
    )
    yield path
    if Counter.examples:
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():  # shown in CI's log, also without -s
            print(
                f"\ntest_accepted_trains: {Counter.examples} drawn sweep files accepted "
                f"({Counter.refused} refused by validate), {Counter.trials} trials run, "
                f"none errored; covered: {', '.join(sorted(Counter.seen))}"
            )


def run_one(config, spec, data, checkpoint_dirs=None, restore_from=None, epochs=None):
    """Train ``config`` for ``epochs`` (default: the sweep's, as validated) through the real run_trial."""
    from lrtune.training.trial import TrainSettings, run_trial, trial_config, trial_seed

    hyper = trial_config(config)
    hyper.setdefault(
        "seed", trial_seed(spec.seed, int(hyper.get("sample", 0)), int(hyper.get("repeat", 0)), spec.repeats)
    )
    settings = TrainSettings(
        model=spec.model,
        epochs=spec.epochs if epochs is None else epochs,
        batch_size=spec.batch_size,
        threads=1,
        mixed_precision=spec.mixed_precision,
        seed=spec.seed,
        repeats=spec.repeats,
    )

    def report(row, checkpoint_dir):
        if checkpoint_dir and checkpoint_dirs is not None:
            import shutil
            import tempfile

            keep = tempfile.mkdtemp(prefix="lrtune-test-")
            shutil.copytree(checkpoint_dir, keep, dirs_exist_ok=True)
            checkpoint_dirs.append(keep)

    Counter.trials += 1
    return run_trial(hyper, data, settings, report, restore_from=restore_from)


#: Spellings the draws may miss within the budget, always run: quniform, randint,
#: a whole number through --set, mixed precision, a class subset by index.
ALWAYS = (
    """
name: always
data: {classes: [0, 9], limit: 16}
epochs: 2
batch_size: 4
mixed_precision: true
space:
  optimizer: sgd
  schedule: step
  lr: {quniform: [0.01, 0.1, 0.01]}
  drop: {quniform: [0.25, 1, 0.25]}
  epochs_drop: {randint: [1, 2]}
""",
    ["space.momentum=0", "space.nesterov=true"],
)


@example(drawn=ALWAYS)
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,  # the same files in every CI run: a bounded, repeatable budget
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(sweep_file())
def test_every_accepted_sweep_file_trains(fixture_archive, drawn):
    text, overrides = drawn
    raw = parse_yaml(text, "drawn.yaml")
    if overrides:
        raw = apply_overrides(raw, overrides, "drawn.yaml")
    try:
        spec = parse_spec(raw, "drawn.yaml")  # what `lrtune validate` runs
    except SweepFileError as e:  # refused, with the file named: the other half of the contract
        assert str(e).startswith("drawn.yaml: "), str(e)
        Counter.refused += 1
        return
    Counter.examples += 1
    Counter.seen |= covered(spec, text, overrides)
    from lrtune.engine.translation import param_space, tune_config

    param_space(spec), tune_config(spec, None)  # Tune's own checks of the space, scheduler, searcher
    data = load_cifar10(
        str(fixture_archive),
        classes=spec.data.classes,
        validation=spec.data.validation,
        seed=spec.seed,
        limit=spec.data.limit,
    )
    try:
        for config in configs_as_tune_draws_them(spec):
            checkpoints: list[str] = []
            reporter = run_one(config, spec, data, checkpoints)
            assert reporter.status in ("done", "diverged"), (text, overrides, config)
            if spec.scheduler.name == "pbt" and reporter.status == "done":
                continued = exploited(spec, config)
                again = run_one(continued, spec, data, restore_from=checkpoints[-1], epochs=spec.epochs + 1)
                assert again.status in ("done", "diverged"), (text, overrides, continued)
    finally:
        import keras

        keras.mixed_precision.set_global_policy("float32")


def exploited(spec, config):
    """``config`` after PBT's explore step: every perturbation pushed upwards (x1.2)."""
    from ray.tune.schedulers.pbt import _explore

    from lrtune.engine.translation import make_scheduler

    scheduler = make_scheduler(spec)
    new, _ = _explore(config, scheduler._hyperparam_mutations, 0.0, (1.2, 1.2), scheduler._custom_explore_fn)
    return new


HANDFUL = [
    # two arms, class indices and names, ASHA, whole numbers everywhere
    """
name: e2e-asha
data: {classes: [3, dog], limit: 24}
epochs: 2
batch_size: 8
repeats: 2
space:
  - {optimizer: sgd, schedule: step, lr: 1, drop: 1, epochs_drop: 1, momentum: 0}
  - {optimizer: adagrad, lr: {qloguniform: [0.001, 0.1, 0.001]}, epsilon: 1}
scheduler: {asha: {grace_period: 1, reduction_factor: 2}}
""",
    # TPE over two arms, median stopping, choices only
    """
name: e2e-tpe
data: {classes: [airplane, 1, bird], limit: 24}
epochs: 2
batch_size: 8
search: tpe
num_samples: 3
space:
  - {optimizer: rmsprop, schedule: time, lr: {choice: [0.001, 0.01]}, decay: 0, rho: 0.9}
  - {optimizer: adam, schedule: exponential, lr: 0.001, k: {choice: [0, 0.1]}, beta_1: 0}
scheduler: {median: {grace_period: 1, min_samples_required: 1}}
""",
    # PBT perturbing momentum at its upper bound (x1.2 would leave [0, 1)), grid search.
    # Two trials: every exploit restarts a trial from a checkpoint, seconds each.
    """
name: e2e-pbt
data: {limit: 24}
epochs: 2
batch_size: 8
search: grid
space: {optimizer: sgd, lr: {grid: [1.0e-5, 0.1]}, momentum: 0.95, nesterov: true}
scheduler: {pbt: {perturbation_interval: 1, quantile_fraction: 0.5, resample_probability: 0,
                  mutations: {momentum: {uniform: [0, 0.95]}}}}
""",
]


@pytest.mark.ray
def test_a_handful_run_end_to_end_through_ray(ray_running, fixture_archive, tmp_path):
    from lrtune.engine.sweep import run_sweep
    from lrtune.results.tables import load_trials

    for text in HANDFUL:
        spec = parse_spec(parse_yaml(text, "e2e.yaml"), "e2e.yaml")
        outcome = run_sweep(spec, storage=str(tmp_path), data=str(fixture_archive), quiet=True)
        trials = load_trials(outcome.sweep_dir).to_pylist()
        assert len(trials) == spec.trial_count(), spec.name
        assert not [t for t in trials if t["status"] == "error"], [t["error"] for t in trials]
        Counter.trials += len(trials)
