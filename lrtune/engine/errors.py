"""The errors every driver command raises: what cannot start or finish, and why."""

from __future__ import annotations

__all__ = ["StorageError", "SweepError"]


class SweepError(RuntimeError):
    """The sweep cannot start or finish; the message says why and what to do."""


class StorageError(SweepError):
    """The results storage cannot be read or written (``lrtune sweep`` exits 3)."""
