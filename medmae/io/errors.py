"""The one error type for bad input: it always names the file and the problem."""

from __future__ import annotations

import os


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
