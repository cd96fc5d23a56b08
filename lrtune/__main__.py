"""The ``lrtune`` command's entry point, also run by ``python -m lrtune``.

A Ctrl-C at any moment, even while the command's modules are still being
imported, ends the command with exit status 130 (128 + SIGINT, as a shell
reports it) and one line on stderr, never a traceback. The commands that run
trials (``sweep``, ``find``, ``confirm``) handle Ctrl-C themselves once Tune
runs: they keep what was recorded and print the command that finishes it.
"""

from __future__ import annotations

import sys

#: Exit status after Ctrl-C: 128 + SIGINT, what a shell reports for it.
INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run the ``lrtune`` command line and return its exit status.

    Args:
        argv: the arguments after the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
        0 on success, the command's own status on an error (2 for bad input),
        :data:`INTERRUPTED` after Ctrl-C.
    """
    try:
        from lrtune.cli import app
    except KeyboardInterrupt:  # Ctrl-C during the imports
        print("\nlrtune: interrupted", file=sys.stderr)
        return INTERRUPTED
    # Typer ends a command on Ctrl-C with exit status 130 itself, and on bad input with 2.
    try:
        app(args=argv, prog_name="lrtune")
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)  # sys.exit("message"): Python prints it and exits 1
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
