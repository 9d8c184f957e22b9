"""A folder lock held by one live process: ``FOLDER/<name>`` holds the holder's pid and host.

The lock file is created whole (written under a temporary name, then hard-linked onto
the lock name, which fails if it exists), so another process never reads a half-written
lock. A lock whose holder is dead (same host, pid gone or reused by a younger process) is
taken over; a lock held from another host is never taken over (its pid means nothing here).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil


class FolderBusyError(RuntimeError):
    """Another live process holds the folder's lock."""

    def __init__(self, message: str, pid: int | None = None, host: str | None = None):
        super().__init__(message)
        self.pid, self.host = pid, host


def _holder_alive(info: dict) -> bool:
    """Whether the process named in a lock file still runs (unknown hosts count as alive)."""
    if info.get("host") != socket.gethostname():
        return True
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        started = info.get("started")
        # a pid reused by a process that started after the lock was written is not the holder
        return not (isinstance(started, (int, float)) and proc.create_time() > started + 1.0)
    except psutil.Error:
        return False


def _read(lock: Path) -> dict | None:
    try:
        info = json.loads(lock.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable or foreign content: treated as stale
    return info if isinstance(info, dict) else {}


def _try_create(lock: Path, info: dict) -> bool:
    fd, tmp = tempfile.mkstemp(dir=lock.parent, prefix=f".{lock.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        try:
            os.link(tmp, lock)
            return True
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)


@contextmanager
def folder_lock(folder: str | os.PathLike, name: str, what: str) -> Iterator[Path]:
    """Hold ``folder/name`` while the block runs; ``what`` names the holder in the error.

    Raises :class:`FolderBusyError` naming the folder, the holder's pid and host, and the
    lock file to delete if the holder is known to be gone.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / name
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": psutil.Process().create_time()}
    for _ in range(3):
        if _try_create(lock, me):
            break
        held = _read(lock)
        if held is None:
            continue  # released meanwhile
        if _holder_alive(held):
            pid, host = held.get("pid"), held.get("host")
            if pid == me["pid"] and host == me["host"]:
                raise FolderBusyError(f"{folder}: this process already holds {lock}", pid, host)
            raise FolderBusyError(
                f"{folder} is in use by another {what} (pid {pid} on {host}); wait for it to end, "
                f"or choose another folder. If that process is gone, delete {lock}", pid, host)
        lock.unlink(missing_ok=True)  # a dead holder's lock: take it over
    else:
        raise FolderBusyError(f"{folder}: cannot take {lock} (it keeps reappearing)")
    try:
        yield lock
    finally:
        if (_read(lock) or {}).get("pid") == me["pid"]:
            lock.unlink(missing_ok=True)
