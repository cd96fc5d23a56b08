"""``python -m lrtune``: the same as the ``lrtune`` command."""

from lrtune.cli import app

app(prog_name="lrtune")
