"""``lrtune find``: the learning-rate range test, from its formulas to a real run on a local Ray."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from lrtune.engine.find import range_arms
from lrtune.engine.sweep import SweepError
from lrtune.results.lr_range import (
    NOISE_SIGMAS,
    Suggestion,
    load_lr_range,
    lr_bounds,
    space_fragment,
    suggest,
)
from lrtune.spec import load_spec, parse_spec, parse_yaml
from lrtune.training.lr_range import RangeSettings, SmoothedLoss, range_schedule, run_range_test, smoothed

sys.path.insert(0, str(Path(__file__).parent))
from sweep_runs import ROOT, lrtune  # noqa: E402

STEPS = 30
#: Ramps of 30, 60 and 120 steps: a curve that cannot be read at 30 runs again.
MAX_STEPS = 120


def make_spec(text: str):
    return parse_spec(parse_yaml(text, "x.yaml"), "x.yaml")


# --- the formulas -----------------------------------------------------------------


def test_range_schedule_rises_by_equal_factors_from_min_to_max_lr():
    lr = range_schedule(1e-6, 1.0, 7)(np.arange(7))
    np.testing.assert_allclose(lr, [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], rtol=1e-12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.0, 1.0, 10), r"Argument `min_lr` must be > 0. Received: min_lr=0.0"),
        ((0.1, 0.1, 10), r"Argument `max_lr` must be > min_lr. Received: min_lr=0.1, max_lr=0.1"),
        ((1e-7, 1.0, 1), r"Argument `steps` must be >= 2. Received: steps=1"),
    ],
)
def test_range_schedule_refuses_a_ramp_that_does_not_rise(args, message):
    with pytest.raises(ValueError, match=message):
        range_schedule(*args)


def test_smoothed_loss_is_the_bias_corrected_moving_average():
    losses = [2.3, 2.1, 2.6, 1.9, 1.5]
    avg, expected = 0.0, []
    for n, loss in enumerate(losses, start=1):
        avg = 0.98 * avg + 0.02 * loss
        expected.append(avg / (1 - 0.98**n))
    np.testing.assert_allclose(smoothed(losses), expected, rtol=1e-12)
    assert smoothed([1.7])[0] == pytest.approx(1.7)  # bias correction: the first value is the loss itself


def test_smoothed_loss_diverges_once_it_passes_four_times_its_minimum():
    s = SmoothedLoss()
    values = []
    for loss in [1.0] * 5 + [1e3] * 5:
        values.append(s.update(loss))
        if s.diverged:
            break
    assert len(values) < 10
    assert values[-1] > 4 * min(values[:-1]) and all(
        v <= 4 * min(values[:i]) for i, v in enumerate(values[:-1]) if i
    )


def test_a_nan_loss_is_divergence():
    s = SmoothedLoss()
    s.update(1.0)
    s.update(float("nan"))
    assert s.diverged


def test_suggestions_on_a_curve_with_a_known_answer():
    lrs = np.logspace(-6, 0, 61)  # ten steps a decade
    logs = np.log10(lrs)
    loss = np.where(logs <= -4, 3.0, 3.0 - 0.5 * (logs + 4))  # a gentle fall from 1e-4 ...
    loss = loss - np.where(logs >= -2.45, 1.0, 0.0)  # ... one step that falls by 1 after 10^-2.5 ...
    loss = np.where(
        logs >= -1, loss[np.argmin(np.abs(logs + 1))] + 5 * (logs + 1), loss
    )  # ... rising after 0.1
    s = suggest(lrs, loss)
    assert s.steepest == pytest.approx(10**-2.5)
    assert s.lr_at_minimum == pytest.approx(0.1)
    assert s.minimum_tenth == pytest.approx(0.01)


def test_suggestions_skip_the_first_tenth_and_the_last_five_steps():
    lrs = np.logspace(-6, 0, 61)
    loss = np.full(61, 2.0)
    loss[2] = 0.0  # a deep early dip inside the first tenth: ignored
    loss[-2] = -1.0  # and one in the last five: ignored
    loss[30] = 1.0
    s = suggest(lrs, loss)
    assert s.lr_at_minimum == pytest.approx(lrs[30])
    assert s.steepest == pytest.approx(lrs[29])


def test_bounds_span_the_suggestions_or_a_decade_around_them_capped_at_the_minimum():
    spread = [Suggestion(1e-3, 2e-2, 0.2, False, 100), Suggestion(2e-3, 3e-2, 0.3, False, 100)]
    assert lr_bounds(spread) == (0.001, 0.03)
    narrow = [Suggestion(0.01, 0.04, 0.4, False, 100)]  # 4x apart: widened to a decade around 0.02
    assert lr_bounds(narrow) == (float(f"{0.02 / math.sqrt(10):.3g}"), float(f"{0.02 * math.sqrt(10):.3g}"))
    past_minimum = [Suggestion(0.5, 0.01, 0.1, False, 100)]  # a steep fall after the minimum at 0.1
    assert lr_bounds(past_minimum) == (0.01, 0.1)


def test_the_steepest_descent_is_searched_on_the_descent_not_on_a_wiggle_of_the_flat_start():
    # A long ramp (200 steps a decade): a dip of 0.005 at 1e-6, inside the noise, falls faster per
    # log(lr) than the real descent of 0.3 over two decades (1e-3 to 1e-1).
    rng = np.random.default_rng(2)
    lrs = np.logspace(-7, 1, 1601)
    loss = 0.69 - 0.3 * np.clip(np.log10(lrs / 1e-3) / 2, 0, 1)
    dip = np.argmin(abs(np.log10(lrs) + 6))
    loss[dip : dip + 3] -= [0.005, 0.005, 0.0]
    raw = loss + 0.05 * rng.standard_normal(len(lrs))
    s = suggest(lrs, loss, raw)
    assert 1e-3 <= s.steepest <= 1e-1, s
    assert s.fall > NOISE_SIGMAS * s.noise


def test_a_curve_that_falls_less_than_its_noise_gives_no_range():
    import pyarrow as pa

    from lrtune.results.lr_range import NOISE_SIGMAS, suggest_arms

    rng = np.random.default_rng(0)
    lrs = np.logspace(-5, 1, 200)
    flat_raw = 0.69 + 0.05 * rng.standard_normal(200)  # batch noise, no descent
    falling_raw = 0.69 - 0.3 * (np.log10(lrs) > -2) + 0.05 * rng.standard_normal(200)
    rows = [
        {"trial_id": t, "arm": t, "lr": lr, "loss": raw, "smoothed_loss": s, "status": "running"}
        for t, curve in (("flat", flat_raw), ("falls", falling_raw))
        for lr, raw, s in zip(lrs, curve, smoothed(curve), strict=True)
    ]
    arms = {a.arm: a for a in suggest_arms(pa.Table.from_pylist(rows))}
    flat, falls = arms["flat"].repeats[0], arms["falls"].repeats[0]
    # The fall's sd under N(0, 0.05**2) batch noise: the first value read averages 21 losses.
    assert flat.noise == pytest.approx(
        0.05 * math.sqrt(0.0101 * (1 + 0.98**21) / (1 - 0.98**21) + 0.0101), rel=0.3
    )
    assert arms["flat"].flat and flat.fall < NOISE_SIGMAS * flat.noise
    assert not arms["falls"].flat and falls.fall > 0.25


# --- arms -----------------------------------------------------------------------------


def test_arms_that_differ_only_in_their_schedule_share_one_test():
    spec = load_spec(ROOT / "sweeps/seed-article.yaml")
    arms = range_arms(spec)
    assert [a.label for a in arms] == [
        "sgd momentum=0",
        "sgd momentum=0.5",
        "sgd momentum=0.8",
        "adagrad",
        "adadelta",
        "rmsprop",
        "adam",
    ]
    assert arms[1].arms == (1, 2)  # the time-based and the step arm, both momentum 0.5


def test_a_grid_of_optimizer_settings_gives_one_test_per_value_and_piecewise_none():
    spec = make_spec(
        """
name: x
space:
  - {optimizer: sgd, schedule: step, lr: 0.1, drop: 0.5, epochs_drop: 3, momentum: {grid: [0.5, 0.9]}}
  - {optimizer: sgd, schedule: piecewise, boundaries: [3], values: [0.1, 0.01]}
"""
    )
    assert [(a.label, a.arms) for a in range_arms(spec)] == [
        ("sgd momentum=0.5", (0,)),
        ("sgd momentum=0.9", (0,)),
    ]


def test_a_sampled_optimizer_setting_is_refused_with_the_fix():
    spec = make_spec("name: x\nspace: {optimizer: sgd, lr: 0.1, momentum: {uniform: [0.5, 0.9]}}\n")
    with pytest.raises(
        SweepError,
        match=r"x.yaml: space.0.momentum: the range test needs fixed values .* --set space.0.momentum=VALUE",
    ):
        range_arms(spec, "x.yaml")


def test_the_fragment_keeps_each_arm_and_replaces_its_lr():
    spec = load_spec(ROOT / "sweeps/seed-article.yaml")
    text = space_fragment(spec.to_yaml_dict()["space"], {0: (0.01, 0.3), 4: (0.001, 0.05)})
    arms = parse_yaml(text, "fragment")["space"]
    assert arms[0] == {
        "optimizer": "sgd",
        "schedule": "constant",
        "lr": {"loguniform": [0.01, 0.3]},
        "momentum": 0.0,
    }
    assert arms[4] == {"optimizer": "adagrad", "lr": {"loguniform": [0.001, 0.05]}}
    assert arms[1]["lr"] == 0.1  # no range given: unchanged, and marked
    assert "# unchanged" in text.splitlines()[2]


def test_the_fragment_says_why_an_arm_left_out_of_the_test_is_unchanged():
    # article-2026's one-cycle and schedule-free arms are not tested: "found no range" misled.
    spec = load_spec(ROOT / "sweeps/article-2026.yaml")
    space = spec.to_yaml_dict()["space"]
    lines = space_fragment(space, {}).splitlines()[1:]
    by_arm = {(a["optimizer"], a.get("schedule")): line for a, line in zip(space, lines, strict=True)}
    assert "sets its own rates (no lr)" in by_arm[("sgd", "one_cycle")]
    assert "schedule_free_adamw is left out of the range test" in by_arm[("schedule_free_adamw", "constant")]
    assert "found no range" in by_arm[("adam", None)] or "found no range" in by_arm[("adam", "constant")]


# --- one trial, without Ray -----------------------------------------------------------


def test_a_test_that_does_not_diverge_runs_every_step(tiny_dataset):
    rows = []
    settings = RangeSettings(batch_size=16, steps=12, min_lr=1e-6, max_lr=1e-5, threads=1, report_every=5)
    status = run_range_test({"optimizer": "sgd", "seed": 3}, tiny_dataset, settings, rows.append)
    assert status == "done"
    assert [len(chunk) for chunk in rows] == [5, 5, 2]
    flat = [r for chunk in rows for r in chunk]
    assert [r["step"] for r in flat] == list(range(1, 13))
    np.testing.assert_allclose([r["lr"] for r in flat], np.logspace(-6, -5, 12), rtol=1e-5)
    np.testing.assert_allclose(
        [r["smoothed_loss"] for r in flat], smoothed([r["loss"] for r in flat]), rtol=1e-9
    )
    assert [r["status"] for r in flat][-2:] == ["running", "done"]


def test_a_curve_that_cannot_be_read_runs_again_twice_as_long_from_the_same_start(tiny_dataset):
    # 1e-6 to 1e-5 in a dozen steps: nothing is learned, no ramp can be read.
    rows = []
    settings = RangeSettings(
        batch_size=16, steps=12, max_steps=40, min_lr=1e-6, max_lr=1e-5, threads=1, report_every=5
    )
    assert settings.ramps() == [12, 24, 40]
    status = run_range_test({"optimizer": "sgd", "seed": 3}, tiny_dataset, settings, rows.append)
    assert status == "done"
    flat = [r for chunk in rows for r in chunk]
    ramps = {n: [r for r in flat if r["length"] == n] for n in (12, 24, 40)}
    assert [len(ramp) for ramp in ramps.values()] == [12, 24, 40]
    for n, ramp in ramps.items():
        assert [r["step"] for r in ramp] == list(range(1, n + 1))
        np.testing.assert_allclose([r["lr"] for r in ramp], np.logspace(-6, -5, n), rtol=1e-5)
        assert {r["status"] for r in ramp[:-1]} == {"running"}
    assert [ramp[-1]["status"] for ramp in ramps.values()] == ["lengthened", "lengthened", "done"]
    # Each ramp starts from the same model and batches: its first step's loss is the same.
    assert ramps[24][0]["loss"] == pytest.approx(ramps[12][0]["loss"]) == pytest.approx(ramps[40][0]["loss"])
    # Each ramp's last chunk is sent when it ends, so the driver sees a ramp whole before the next.
    assert all(
        chunk[-1]["status"] == "running" or chunk[-1] is flat[-1] or chunk[-1]["status"] == "lengthened"
        for chunk in rows
    )


def test_a_readable_curve_is_not_lengthened(tiny_dataset, monkeypatch):
    from lrtune.training import lr_range

    monkeypatch.setattr(lr_range, "_reads", lambda curve: True)
    rows = []
    settings = RangeSettings(batch_size=16, steps=12, max_steps=48, min_lr=1e-6, max_lr=1e-5, threads=1)
    assert run_range_test({"optimizer": "sgd", "seed": 3}, tiny_dataset, settings, rows.append) == "done"
    assert {r["length"] for chunk in rows for r in chunk} == {12}


def test_suggestions_read_each_trials_last_ramp_and_the_sink_keeps_every_ramp_once(tmp_path):
    import pyarrow as pa
    from ray.tune.experiment import Trial

    from lrtune.engine.find import RangeSink
    from lrtune.results.lr_range import last_ramps, load_lr_range, suggest_arms

    rng = np.random.default_rng(1)

    def ramp(n: int, falls: bool) -> list[dict]:
        lrs = np.logspace(-5, 1, n)
        raw = 0.69 - (0.3 * (np.log10(lrs) > -2) if falls else 0) + 0.05 * rng.standard_normal(n)
        out = [
            {"length": n, "step": i + 1, "lr": lr, "loss": x, "smoothed_loss": s, "status": "running",
             "timestamp": 1.0e9 + i}
            for i, (lr, x, s) in enumerate(zip(lrs, raw, smoothed(raw), strict=True))
        ]  # fmt: skip
        out[-1]["status"] = "done" if falls else "lengthened"
        return out

    sink = RangeSink(str(tmp_path), name="t")
    sink.setup()
    config = {"arm": {"optimizer": "sgd", "label": "sgd", "momentum": 0.0}, "repeat": 0}
    trial = Trial("lrtune_find", config=config, trial_id="t_0", stub=True)  # Tune's own, as in test_sink
    first, second = ramp(100, falls=False), ramp(200, falls=True)
    for rows in (first, second, second[-20:]):  # the last report delivered twice
        sink.on_trial_result(0, [trial], trial, {"rows": rows, "seed": 0, "node": "n"})
    sink.on_experiment_end([])
    table = load_lr_range(str(tmp_path))
    assert table.num_rows == 300
    assert last_ramps(table)["length"].to_pylist() == [200] * 200
    (arm,) = suggest_arms(table)
    assert arm.ramps == ((100, 200),) and not arm.flat
    # A table written before ramps were lengthened (no length column) reads as one ramp.
    old = pa.Table.from_pylist(
        [{k: v for k, v in r.items() if k != "length"} | {"trial_id": "t_0", "arm": "sgd"} for r in first]
    )
    (arm,) = suggest_arms(old.append_column("length", pa.nulls(old.num_rows, pa.int32())))
    assert arm.flat and arm.ramps == ((0,),)


# --- the command, on a real local Ray ---------------------------------------------------


@pytest.fixture(scope="module")
def find_run(cifar_archive, tmp_path_factory):
    """``lrtune find`` on two arms x 2 repeats; the rate ramps to 1e3, so SGD diverges.

    Each range test takes 3 s to return after its last report, as a big
    model's teardown can: past Tune's default 2 s, a reused worker would fail
    the next test ("Trainable runner reuse requires reset_config()").
    """
    folder = tmp_path_factory.mktemp("find")
    sweep = folder / "tiny.yaml"
    sweep.write_text(
        """
name: tiny
data: {classes: [airplane, automobile]}
model: seed-tiny
batch_size: 16
repeats: 2
space:
  - {optimizer: sgd, schedule: step, lr: 0.1, drop: 0.5, epochs_drop: 2, momentum: 0.9}
  - {optimizer: adam, lr: 0.001}
"""
    )
    result = lrtune(
        "find", sweep, "--data", cifar_archive, "--storage", folder / "results",
        "--steps", STEPS, "--max-steps", MAX_STEPS, "--min-lr", "1e-5", "--max-lr", "1e3",
        env={"LRTUNE_TEST_TEARDOWN_SECONDS": "3"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "# error" not in result.stdout, result.stdout
    return folder, result, folder / "results" / "tiny-lr-range"


def _spans(run_dir: Path) -> list[tuple[float, float]]:
    """(first step, last step) times of each range test, in start order."""
    table = load_lr_range(str(run_dir)).to_pylist()
    spans: dict[str, list[float]] = {}
    for row in table:
        spans.setdefault(row["trial_id"], []).append(row["timestamp"].timestamp())
    return sorted((min(t), max(t)) for t in spans.values())


@pytest.mark.ray
def test_max_concurrent_runs_one_range_test_at_a_time(find_run, cifar_archive):
    """--max-concurrent means trial slots in find as in sweep: 1 runs the tests one after another."""
    import itertools

    folder, _, _ = find_run
    result = lrtune(
        "find", folder / "tiny.yaml", "--data", cifar_archive, "--storage", folder / "results",
        "--name", "serial", "--steps", STEPS, "--max-steps", STEPS, "--min-lr", "1e-5", "--max-lr", "1e3",
        "--max-concurrent", 1,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    spans = _spans(folder / "results" / "serial")
    assert len(spans) == 4
    # Each test asks for 1 of the 2 CPUs; with --max-concurrent 1 each one's first step
    # comes after the previous one's last.
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans)), spans


@pytest.mark.ray
def test_every_trial_step_lands_once(find_run):
    _, _, run_dir = find_run
    table = load_lr_range(str(run_dir))
    trials = pc.unique(table["trial_id"]).to_pylist()
    assert len(trials) == 4  # 2 arms x 2 repeats
    for trial in trials:
        mine = table.filter(pc.equal(table["trial_id"], trial)).to_pylist()
        lengths = list(dict.fromkeys(r["length"] for r in mine))
        assert lengths == [STEPS, 2 * STEPS, 4 * STEPS][: len(lengths)]  # each ramp twice the last
        for length in lengths:
            ramp = [r for r in mine if r["length"] == length]
            assert [r["step"] for r in ramp] == list(range(1, len(ramp) + 1))
            assert ramp[-1]["status"] == ("lengthened" if length != lengths[-1] else ramp[-1]["status"])
    raw = __import__("pyarrow.dataset", fromlist=["dataset"]).dataset(run_dir / "lr_range").to_table()
    assert raw.num_rows == table.num_rows  # no duplicates on disk, not merely dropped when read


@pytest.mark.ray
def test_a_diverging_test_stops_early_and_says_so(find_run):
    from lrtune.results.lr_range import last_ramps

    _, _, run_dir = find_run
    table = last_ramps(load_lr_range(str(run_dir)))
    sgd = table.filter(pc.equal(table["optimizer"], "sgd")).to_pylist()
    by_trial: dict[str, list] = {}
    for r in sgd:
        by_trial.setdefault(r["trial_id"], []).append(r)
    for rows in by_trial.values():
        assert len(rows) < rows[0]["length"]
        assert rows[-1]["status"] == "diverged" and {r["status"] for r in rows[:-1]} == {"running"}
        last = rows[-1]["smoothed_loss"]
        assert not math.isfinite(last) or last > 4 * min(r["smoothed_loss"] for r in rows[:-1])


@pytest.mark.ray
def test_the_printed_fragment_passes_validate(find_run):
    folder, result, _ = find_run
    fragment = "\n".join(line for line in result.stdout.splitlines() if not line.startswith("#"))
    assert fragment.startswith("space:")
    sweep = folder / "from-find.yaml"
    sweep.write_text("name: from-find\ndata: {classes: [airplane, automobile]}\n" + fragment + "\n")
    spec = load_spec(sweep)
    lrs = {arm.label: arm.params["lr"] for arm in spec.space}
    assert lrs["adam"].kind == "loguniform"  # Adam learns the tiny data within the ramp
    for label, d in lrs.items():  # a flat curve leaves its arm's lr as it was
        assert (d.kind == "loguniform" and 0 < d.args[0] < d.args[1]) or (
            label == "sgd/step" and d.args == (0.1,)
        )
    checked = lrtune("validate", sweep)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.ray
def test_suggestions_are_printed_per_arm_and_the_figures_written(find_run):
    _, result, run_dir = find_run
    assert "# sgd momentum=0.9" in result.stdout and "# adam" in result.stdout
    assert (
        f"# ramps: {STEPS} steps first; a curve that cannot be read (its smoothed loss fell less than 5 times "
        f"its noise) runs again twice as long, up to {MAX_STEPS} steps (--max-steps;"
    ) in result.stdout
    assert (run_dir / "lr_range.png").stat().st_size > 10_000
    page = (run_dir / "lr_range.html").read_text()
    assert "data:image/png;base64," in page and "loguniform" in page


@pytest.mark.ray
def test_results_sql_reads_the_range_test(find_run):
    _, _, run_dir = find_run
    result = lrtune(
        "results",
        run_dir,
        "--sql",
        "select optimizer, count(distinct trial_id) as n from lr_range group by 1 order by 1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["optimizer", "n", "adam", "2", "sgd", "2"]


@pytest.mark.ray
def test_a_second_run_of_the_same_name_is_refused(find_run, cifar_archive):
    folder, _, run_dir = find_run
    result = lrtune("find", folder / "tiny.yaml", "--data", cifar_archive, "--storage", folder / "results")
    assert result.returncode == 2
    assert f"a range test 'tiny-lr-range' already exists in {run_dir}" in " ".join(result.stderr.split())


def test_bad_ramp_is_refused_before_anything_starts(tmp_path):
    result = lrtune(
        "find", "sweeps/quickstart.yaml", "--min-lr", "1", "--max-lr", "0.1", "--storage", tmp_path
    )
    assert result.returncode == 2
    assert "Argument `max_lr` must be > min_lr" in result.stderr
    assert not any(tmp_path.iterdir())


def test_the_sink_counts_the_range_tests_an_interrupt_left_unfinished(tmp_path):
    from ray.tune.experiment import Trial

    from lrtune.engine.find import RangeSink

    sink = RangeSink(str(tmp_path), name="t")
    sink.setup()
    done, cut, waiting = (Trial("lrtune_find", config={}, trial_id=f"t_{i}", stub=True) for i in range(3))
    sink.on_trial_complete(0, [done, cut, waiting], done)
    for trial in (done, cut, waiting):  # Tune's interrupt marks the rest TERMINATED without the hooks
        trial.set_status(Trial.TERMINATED)
    sink.on_experiment_end([done, cut, waiting])
    assert sink.unfinished == 2


@pytest.mark.ray
def test_ctrl_c_suggests_nothing_from_curves_cut_short(find_run, cifar_archive, kill_group):
    import os
    import signal
    import time

    from sweep_runs import start

    folder, _, _ = find_run
    run_dir = folder / "results" / "cut"
    process = start(
        "find", folder / "tiny.yaml", "--data", cifar_archive, "--storage", folder / "results", "--name", "cut",
        "--steps", 5000, "--max-steps", 5000, "--min-lr", "1e-6", "--max-lr", "1e-3",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "lr_range").is_dir() or not any((run_dir / "lr_range").glob("*.parquet")):
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        kill_group(process)
    assert process.returncode == 130, output
    assert "range tests did not finish" in output and "nothing is suggested" in output, output
    assert not (run_dir / "suggestions.yaml").exists()
