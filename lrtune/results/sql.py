"""SQL over a sweep's results: ``lrtune results DIR --sql "..."`` (DuckDB, an optional extra)."""

from __future__ import annotations

import pyarrow as pa

from lrtune.results.lr_range import LR_RANGE_SCHEMA, load_lr_range
from lrtune.results.tables import METRICS_SCHEMA, load, load_trials

__all__ = ["query"]


def query(sweep_dir: str, sql: str) -> pa.Table:
    """Run DuckDB ``sql`` with views ``metrics`` and ``trials`` of the sweep,
    and ``lr_range`` of a range test (``lrtune find``).

    >>> # lrtune results DIR --sql "select family, max(val_accuracy) from metrics group by 1"
    """
    try:
        import duckdb
    except ImportError:
        raise ImportError("--sql needs DuckDB: pip install 'lrtune[duckdb]'") from None
    try:
        lr_range = load_lr_range(sweep_dir)
    except FileNotFoundError:
        lr_range = None
    try:
        metrics = load(sweep_dir)
    except FileNotFoundError:
        if lr_range is None:
            raise
        metrics = METRICS_SCHEMA.empty_table()  # a range test's folder has no metrics/
    try:
        trials = load_trials(sweep_dir)
    except FileNotFoundError:
        trials = pa.table({"trial_id": pa.array([], pa.string())})
    connection = duckdb.connect()
    connection.register("metrics", metrics)
    connection.register("trials", trials)
    connection.register("lr_range", lr_range if lr_range is not None else LR_RANGE_SCHEMA.empty_table())
    try:
        return connection.sql(sql).to_arrow_table()
    except duckdb.Error as e:
        raise ValueError(f"--sql: {e}") from None
