"""End a tracked run by how the block that logs to it stopped (FINISHED, KILLED, FAILED)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

from medmae.tracking.mlflow_run import Tracker


@dataclass
class RunEnd:
    """How :func:`ending` ended a run: its status and whether every call reached the store."""

    status: str = "RUNNING"
    ok: bool = False


@contextlib.contextmanager
def ending(tracker: Tracker) -> Iterator[RunEnd]:
    """``with ending(tracker) as end:`` a block that logs to a started run, then ends it:
    FINISHED when the block completes, KILLED on Ctrl-C or SIGTERM, FAILED on an error (which
    is re-raised), so no run is left RUNNING by a command that stopped while logging."""
    end = RunEnd("FAILED")
    try:
        yield end
        end.status = "FINISHED"
    except KeyboardInterrupt:
        end.status = "KILLED"
        raise
    finally:
        end.ok = tracker.finish(end.status)
