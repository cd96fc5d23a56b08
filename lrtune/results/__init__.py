"""A sweep's results: the Parquet tables, the pick (``best``), and the report's figures.

The reading functions are re-exported here, so ``lrtune.results.load(DIR)``
returns the per-epoch rows and ``lrtune.results.load_trials(DIR)`` the trials
(see :mod:`lrtune.results.tables`).
"""

from lrtune.results.sql import query
from lrtune.results.summary import summarize
from lrtune.results.tables import load, load_trials

__all__ = ["load", "load_trials", "query", "summarize"]
