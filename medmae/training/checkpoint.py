"""Checkpoints: written atomically, ``latest.pt`` + the last K step files.

    OUT/checkpoints/
      step_0000200.pt     one per ``checkpoint_every`` steps (only the last ``keep_last`` kept)
      latest.pt           hard link to (or copy of) the newest step file

A checkpoint is one ``torch.save`` dict (see :func:`medmae.training.engine` for its keys)
holding only tensors, lists, dicts, strings and numbers, so it loads with
``torch.load(..., weights_only=True)``. Each file is written to a temporary name in the
same folder and renamed, so a run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from medmae.atomic import atomic_write

LATEST = "latest.pt"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read (truncated, corrupt, or not a medmae checkpoint)."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """``torch.save(state)`` to ``path`` through a temporary file and a rename."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; :class:`CheckpointError` names the file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/EOFError on bad files
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CheckpointError(f"{path}: not a medmae training checkpoint (no 'step'/'model')")
    return state


class CheckpointDir:
    """The checkpoints folder of one run."""

    def __init__(self, root: str | os.PathLike, keep_last: int = 3):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.root = Path(root)
        self.keep_last = int(keep_last)

    @property
    def latest(self) -> Path:
        return self.root / LATEST

    def step_files(self) -> list[Path]:
        """Step checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _STEP_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write ``step_<step>.pt``, point ``latest.pt`` at it, delete all but the last K."""
        path = save_checkpoint(self.root / f"step_{step:07d}.pt", state)
        self._link_latest(path)
        for old in self.step_files()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def _link_latest(self, path: Path) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{LATEST}.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
        try:
            os.link(path, tmp)
        except OSError:  # no hard links on this filesystem
            shutil.copyfile(path, tmp)
        try:
            os.replace(tmp, self.latest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
