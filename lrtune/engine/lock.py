"""One driver per sweep: the lock a running ``lrtune sweep`` holds on its folder.

Two drivers writing one ``<storage>/<name>`` would each resume the other's
trials and interleave their rows. On a local or network filesystem the
lock is an OS file lock (``filelock``): the kernel releases it when the
driver exits, however it exits, so a killed driver never leaves it stuck.
Object stores have no locks: there the driver keeps a *lease* object
fresh (rewritten every ``LEASE_SECONDS / 3``); a lease not renewed for
``LEASE_SECONDS`` is stale and may be taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

from pyarrow import fs

__all__ = ["SweepLock", "SweepLocked", "LEASE_SECONDS"]

LEASE_SECONDS = 90.0


class SweepLocked(RuntimeError):
    """Another driver is running this sweep."""


class SweepLock:
    """Hold ``<sweep_dir>/.lrtune.engine.lock`` while a driver runs the sweep.

    Raises:
        SweepLocked: (from :meth:`acquire`) another live driver holds it;
            the message names the sweep folder and, where known, the
            holder's host and process id.
    """

    def __init__(self, sweep_dir: str):
        from lrtune.folder import SweepFolder

        folder = SweepFolder(sweep_dir)
        self.sweep_dir = sweep_dir
        self._fs, self._path = folder.fs, folder.lock_path
        self._local = isinstance(self._fs, fs.LocalFileSystem)
        self._file_lock = None
        self._token = uuid.uuid4().hex
        self._renewed = 0.0

    def acquire(self) -> None:
        self._fs.create_dir(self._path.rsplit("/", 1)[0], recursive=True)
        if self._local:
            self._acquire_file_lock()
        else:
            self._acquire_lease()

    def _acquire_file_lock(self) -> None:
        import filelock

        lock = filelock.FileLock(self._path, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise SweepLocked(
                f"{self.sweep_dir} is in use by another lrtune sweep ({_holder(self._path)}); "
                "wait for it to end, or stop it, then run again"
            ) from None
        self._file_lock = lock
        with open(self._path + ".info", "w") as f:
            json.dump(_me(), f)

    def _acquire_lease(self) -> None:
        lease = self._read_lease()
        if lease is not None and time.time() - float(lease.get("renewed", 0)) < LEASE_SECONDS:
            raise SweepLocked(
                f"{self.sweep_dir} is in use by another lrtune sweep (host {lease.get('host')}, "
                f"pid {lease.get('pid')}, lease renewed {time.time() - float(lease['renewed']):.0f} s ago); "
                f"wait for it to end; a lease not renewed for {LEASE_SECONDS:.0f} s may be taken over"
            )
        self.renew(force=True)
        time.sleep(1.0)  # no compare-and-swap on an object store: whoever wrote last owns it
        lease = self._read_lease()
        if lease is None or lease.get("token") != self._token:
            raise SweepLocked(f"{self.sweep_dir}: another lrtune sweep took the lease at the same moment")

    def _read_lease(self) -> dict | None:
        try:
            with self._fs.open_input_stream(self._path) as f:
                return json.loads(f.read().decode())
        except (FileNotFoundError, ValueError):
            return None

    def renew(self, force: bool = False) -> None:
        """Refresh an object-store lease (a no-op for a file lock)."""
        if self._local or (not force and time.monotonic() - self._renewed < LEASE_SECONDS / 3):
            return
        with self._fs.open_output_stream(self._path) as f:
            f.write(json.dumps({**_me(), "token": self._token, "renewed": time.time()}).encode())
        self._renewed = time.monotonic()

    def release(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None
        elif not self._local and self._renewed:
            lease = self._read_lease()
            if lease is not None and lease.get("token") == self._token:
                self._fs.delete_file(self._path)
            self._renewed = 0.0

    def __enter__(self) -> SweepLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _holder(path: str) -> str:
    try:
        with open(path + ".info") as f:
            info = json.load(f)
        return f"host {info['host']}, pid {info['pid']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"
