"""``lrtune best``: the configuration a sweep picks, and where each part of that lives.

Choosing is split by job; this module gathers the public names so that
``from lrtune.results.best import choose, format_choice`` keeps working:

- :mod:`lrtune.results.trials`: the results model and reading
  (:class:`Trial`, :class:`SweepResults`, :func:`read_results`).
- :mod:`lrtune.results.choice`: the one ranking (:func:`rank`, configuration
  means over seeds at each trial's final epoch, Welch's t-test against the
  best) and the choice made from it (:func:`choose`, :func:`choose_from`,
  :class:`Choice` with its note on what was compared and left out).
- :mod:`lrtune.results.lineage`: PBT members' learned schedules
  (:class:`Segment`, :func:`segments`, :func:`learned_schedule`).
- :mod:`lrtune.results.choice_text`: a choice as a YAML fragment or JSON
  (:func:`format_choice`), a ranking as text.
"""

from __future__ import annotations

from lrtune.results.choice import Candidate, Choice, Ranking, choose, choose_from, rank
from lrtune.results.choice_text import format_choice
from lrtune.results.lineage import LearnedSchedule, Segment, learned_schedule, segments
from lrtune.results.trials import (
    METRIC_RANGE,
    METRICS,
    SweepResults,
    Trial,
    default_mode,
    family_order,
    read_results,
)

__all__ = [
    "METRICS",
    "METRIC_RANGE",
    "Candidate",
    "Choice",
    "LearnedSchedule",
    "Ranking",
    "Segment",
    "SweepResults",
    "Trial",
    "choose",
    "choose_from",
    "default_mode",
    "family_order",
    "format_choice",
    "learned_schedule",
    "rank",
    "read_results",
    "segments",
]
