"""One training run (pretraining or fine-tuning) per ``train.out_dir``: rank 0 holds
``OUT/.medmae-train.lock``.

Two runs writing the same folder would interleave their metrics logs and overwrite each
other's checkpoints; the second one stops before writing anything, naming the folder and
the process holding it. A lock left by a killed run (its process is gone) is taken over.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from medmae.config.base import ConfigError
from medmae.pidlock import FolderBusyError, folder_lock
from medmae.training.distributed import DistInfo

LOCK = ".medmae-train.lock"


class OutDirBusyError(ConfigError):
    """``train.out_dir`` is in use by another live training run."""


@contextlib.contextmanager
def out_dir_lock(out_dir: Path, info: DistInfo, what: str = "pretraining run") -> Iterator[None]:
    """Hold the run lock on rank 0 (other ranks write nothing there) while the block runs;
    ``what`` names the holder in the error."""
    if not info.is_main:
        yield
        return
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(out_dir, LOCK, what))
        except FolderBusyError as e:
            raise OutDirBusyError(f"train.out_dir: {e}") from None
        yield
