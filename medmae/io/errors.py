"""The one error type for bad input: it always names the file and the problem."""

from __future__ import annotations

import errno
import os
import shutil


class ScanError(ValueError):
    """A scan (file or DICOM folder) that cannot be used, with the reason.

    ``str(err)`` reads ``"<path>: <problem>"``; batch jobs record both parts in their report.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # picklable across worker processes
        return (ScanError, (self.path, self.problem))


FULL_BELOW = 1 << 20
"""A write failing while the output folder has less free space than this is a full disk."""


def write_problem(folder: str | os.PathLike, e: OSError) -> str:
    """Why writing into ``folder`` failed, in words: 'no space left on device', 'read-only
    file system', 'permission denied'... A short write without an errno (numpy's
    "N requested and M written") on a nearly full disk counts as no space left."""
    if e.errno == errno.EDQUOT:
        return "disk quota exceeded (no space left for this user)"
    full = e.errno == errno.ENOSPC
    if not full and e.errno is None:
        try:
            full = shutil.disk_usage(folder).free < FULL_BELOW
        except OSError:
            pass
    if full:
        return "no space left on device"
    if e.errno == errno.EROFS:
        return "read-only file system"
    if isinstance(e, PermissionError):
        return "permission denied (this user cannot write there)"
    return f"cannot write ({e.strerror or ' '.join(str(e).split())})"
