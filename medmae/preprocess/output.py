"""A failure to write into the output folder (full disk, read-only, quota) stops the batch.

Every later case would fail the same way, so a batch does not go on case after case: it
stops, keeps what it finished, leaves the previous index files in place, and the command
exits non-zero with one line naming the output folder and the cause.
"""

from __future__ import annotations

import os
from pathlib import Path

from medmae.io.errors import write_problem


class OutputError(RuntimeError):
    """Writing under ``folder`` failed; ``str(err)`` reads '<folder>: <cause> (...)'."""

    def __init__(self, folder: str | os.PathLike, problem: str):
        self.folder = str(folder)
        self.problem = problem
        super().__init__(f"{self.folder}: {problem}")

    def __reduce__(self):  # crosses worker processes
        return (OutputError, (self.folder, self.problem))


def write_failure(folder: str | os.PathLike, e: OSError, what: str) -> OutputError:
    """The OutputError for ``e`` raised while writing ``what`` under ``folder``."""
    folder = Path(folder)
    return OutputError(folder, f"{write_problem(folder, e)} while writing {what} in the output folder")
