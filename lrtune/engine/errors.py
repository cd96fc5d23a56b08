"""The errors every driver command raises: what cannot start or finish, and why."""

from __future__ import annotations

__all__ = ["Interrupted", "StorageError", "SweepError"]


class SweepError(RuntimeError):
    """The sweep cannot start or finish; the message says why and what to do."""


class StorageError(SweepError):
    """The results storage cannot be read or written (``lrtune sweep`` exits 3)."""


class Interrupted(SweepError):
    """Ctrl-C stopped the command before its trials ended; the message says what was kept (exit 130)."""
