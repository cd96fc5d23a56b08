"""The HTML report: every figure embedded, PNGs beside it, skips explained."""

from __future__ import annotations

import base64
import math
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_results import everything, population, rising, run, sgd, write_sweep  # noqa: E402

from lrtune.results.report import write_report  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ["lr", "curves", "families", "step_heatmap", "early_stopping", "importance"]


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def read_png(path):
    import matplotlib.image

    return matplotlib.image.imread(path)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    sweep_dir = everything(tmp_path_factory.mktemp("sweep"))
    files = write_report(sweep_dir)
    return sweep_dir, files, Path(files.html).read_text()


def test_report_defaults_to_report_html_with_one_png_per_figure_beside_it(full_report):
    sweep_dir, files, _ = full_report
    assert files.html == str(Path(sweep_dir) / "report" / "report.html")
    assert [Path(p).name for p in files.pngs] == [f"{name}.png" for name in FIGURES]
    assert all(Path(p).parent == Path(files.html).parent for p in files.pngs)


def test_every_png_is_a_real_image_of_a_readable_size(full_report):
    _, files, _ = full_report
    for path in files.pngs:
        assert Path(path).read_bytes()[:8] == PNG_MAGIC
        height, width, _ = read_png(path).shape
        assert width >= 500 and height >= 300, path


def test_the_page_embeds_every_figure_as_base64_png(full_report):
    _, files, page = full_report
    images = embedded_pngs(page)
    assert len(images) == len(FIGURES)
    assert images == [Path(p).read_bytes() for p in files.pngs]
    assert "Skipped" not in page


def test_the_page_starts_with_the_best_pick(full_report):
    _, _, page = full_report
    best = page.index("<h2>Best configuration</h2>")
    assert best < page.index("<img")
    assert "space:\n  optimizer: sgd\n  schedule: step\n  lr: 0.05" in page


def test_the_trial_table_lists_every_trial_with_diverged_and_failed_ones(full_report):
    _, _, page = full_report
    table = page[page.index("<h2>All trials</h2>") :]
    assert table.count("<tr class=") == 29  # 13 configurations x 2 repeats + 3
    assert "<tr class='diverged'><td>everything_00026</td><td>constant</td><td>diverged</td>" in table
    assert "<td>error</td>" in table and "ValueError: out of memory on GPU 0" in table
    assert "stopped early" in table


def test_a_sweep_without_a_step_family_skips_the_heat_map_and_says_why(tmp_path):
    runs = [
        run(config, rising(0.3, 0.7, 4, wobble), repeat=i)
        for config in (sgd("time", lr=0.05, decay=0.001), {"optimizer": "adam", "lr": 0.001})
        for i, wobble in enumerate((-0.01, 0.01))
    ]
    files = write_report(write_sweep(tmp_path, runs, epochs=4))
    page = Path(files.html).read_text()
    assert "step_heatmap.png" not in [Path(p).name for p in files.pngs]
    assert "Skipped: this sweep has no step-decay family (SGD with schedule: step)" in page
    # Two configurations are also too few for the importance section, which says so.
    assert "Skipped: 2 configurations with a val_accuracy to compare: too few to say" in page
    assert len(embedded_pngs(page)) == len(FIGURES) - 2


def test_a_running_sweep_without_trials_parquet_or_sweep_yaml_still_reports(tmp_path):
    runs = [
        run(sgd("step", lr=0.05, drop=0.5, epochs_drop=2), rising(0.3, 0.6, 3), status="running"),
        run({"optimizer": "adam", "lr": 0.001}, rising(0.3, 0.5, 2), status="running"),
    ]
    d = write_sweep(tmp_path, runs, epochs=10, trials_file=False, sweep_file=False)
    files = write_report(d, str(tmp_path / "out" / "r.html"), figures_dir=str(tmp_path / "figs"))
    page = Path(files.html).read_text()
    assert files.html == str(tmp_path / "out" / "r.html")
    assert all(Path(p).parent == tmp_path / "figs" for p in files.pngs)
    assert "No trials.parquet yet" in page
    assert "No trial has run every epoch yet" in page  # the pick warns: unfinished trials compared
    assert "Skipped: no sweep.yaml: the epochs each trial was meant to run are unknown" in page
    assert page.count("<td>running</td>") == 2


def test_a_random_search_step_family_gets_a_heat_map_over_lr_bins(tmp_path):
    lrs = [0.0011, 0.002, 0.004, 0.007, 0.012, 0.02, 0.04, 0.07, 0.12, 0.2]  # > 8 values: binned
    runs = [
        run(sgd("step", lr=lr, drop=0.5, epochs_drop=2), rising(0.3, 0.5 + lr, 3), repeat=i)
        for i, lr in enumerate(lrs)
    ]
    files = write_report(write_sweep(tmp_path, runs, epochs=3))
    assert str(tmp_path / "report" / "step_heatmap.png") in files.pngs
    assert (
        read_png(files.pngs[files.pngs.index(str(tmp_path / "report" / "step_heatmap.png"))]).shape[1] >= 400
    )


def test_a_single_epoch_skips_the_curves(tmp_path):
    runs = [run(sgd("constant", lr=0.05), [0.5], repeat=0), run(sgd("constant", lr=0.05), [0.52], repeat=1)]
    files = write_report(write_sweep(tmp_path, runs, epochs=1))
    page = Path(files.html).read_text()
    assert page.count("Skipped: only one epoch recorded so far: no curve to draw") == 2
    assert "Skipped: each trial runs one epoch: there is nothing to stop early" in page
    assert [Path(p).name for p in files.pngs] == ["families.png"]


def test_a_sweep_where_everything_diverged_reports_it_without_a_pick(tmp_path):
    runs = [run(sgd("constant", lr=5.0), [0.1, math.nan], status="diverged")]
    page = Path(write_report(write_sweep(tmp_path, runs, epochs=3)).html).read_text()
    assert "No pick:" in page and "no trial to choose from" in page
    assert "<tr class='diverged'>" in page


def test_an_empty_directory_names_the_missing_metrics(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path}: no metrics/ dataset here")):
        write_report(str(tmp_path))


def test_a_uri_needs_a_local_output(tmp_path):
    with pytest.raises(ValueError, match=r"s3://bucket/sweep is a URI: give a local file for the report"):
        write_report("s3://bucket/sweep")


# --- PBT ----------------------------------------------------------------------------


def test_a_pbt_report_draws_each_members_rate_first_and_picks_the_learned_schedule(tmp_path):
    files = write_report(population(tmp_path))
    assert [Path(p).name for p in files.pngs][0] == "pbt.png"
    height, width, _ = read_png(files.pngs[0]).shape
    assert width >= 500 and height >= 300
    page = Path(files.html).read_text()
    assert "PBT: the rate each member trained with" in page
    assert "Winner (bold): synthetic_00002. 1 exploit drawn" in page
    pick = page[page.index("<h2>Best configuration") : page.index("</pre>")]
    assert "schedule: piecewise" in pick and "values: [0.05, 0.06]" in pick
    assert "lineage (trained_by): epochs 1-3 by synthetic_00001, 4-6 by synthetic_00002" in pick


def test_a_donors_exploit_is_drawn_once_however_many_members_descend_from_it(tmp_path):
    # Member 2's rows: 0 trained 1-2, 1 copied 0 and trained 3-4, 2 copied 1 and trained 5-6.
    files = write_report(population(tmp_path, winner_trained_by=(0, 0, 1, 1, None, None)))
    assert "2 exploits drawn" in Path(files.html).read_text()


def test_exploits_parquet_when_present_is_counted_beside_the_ones_drawn(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    sweep_dir = population(tmp_path)
    exploits = {
        "trial_id": ["synthetic_00002", "synthetic_00000"],
        "epoch": [3, 3],
        "donor_trial_id": ["synthetic_00001", "synthetic_00001"],
        "donor_epoch": [3, 3],
    }
    pq.write_table(pa.table(exploits), Path(sweep_dir) / "exploits.parquet")
    page = Path(write_report(sweep_dir).html).read_text()
    assert "1 exploit drawn" in page and "exploits.parquet records 2" in page


def test_a_sweep_without_pbt_has_no_population_figure(full_report):
    _, files, page = full_report
    assert "pbt.png" not in [Path(p).name for p in files.pngs] and "PBT: the rate" not in page
