"""What ``lrtune results DIR`` prints: the trials by status and the ranking ``lrtune best`` uses."""

from __future__ import annotations

from lrtune.results.choice import rank
from lrtune.results.choice_text import ranking_lines
from lrtune.results.tables import load, load_trials
from lrtune.results.trials import read_results

__all__ = ["summarize"]


def summarize(sweep_dir: str) -> str:
    """Trials by status and the best configuration of each family, as text.

    The configurations are ranked by :func:`lrtune.results.choice.rank`, as
    ``lrtune best`` ranks them (mean over seeds at each trial's final
    epoch), so the first one is the configuration ``lrtune best`` picks.
    When no trial has run every epoch the summary says so instead of
    ranking. Reads ``trials.parquet`` when present (else the metrics alone).
    """
    import pyarrow.compute as pc

    metrics = load(sweep_dir)
    try:
        trials = load_trials(sweep_dir)
    except FileNotFoundError:
        trials = None
    lines = [f"{sweep_dir}: {metrics.num_rows} epoch rows from {len(pc.unique(metrics['trial_id']))} trials"]
    if trials is not None and trials.num_rows:
        counts: dict[str, int] = {}
        for status in trials["status"].to_pylist():
            counts[status] = counts.get(status, 0) + 1
        lines.append("trials: " + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(counts.items())))
    try:
        lines += ranking_lines(rank(read_results(sweep_dir)))
    except ValueError as e:  # no epoch yet, or no trial with a finite metric
        lines.append(f"no ranking: {e}")
    if trials is not None:
        errors = [r for r in trials.to_pylist() if r["status"] == "error"]
        for r in errors[:5]:
            lines.append(f"  error {r['trial_id']}: {r['error']}")
    return "\n".join(lines)
