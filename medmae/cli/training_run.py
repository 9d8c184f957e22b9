"""What `medmae pretrain` and `medmae finetune` share around their run: who prints, and the
graceful stop (SIGTERM / Ctrl-C) that leaves a checkpoint to resume from."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable


def is_main_rank() -> bool:
    """Rank 0 of a torchrun job, or the only process: the one that prints."""
    return os.environ.get("RANK", "0") == "0"


def train_or_stop(command: str, train: Callable[[Any], Any], cfg: Any) -> tuple[Any, int | None]:
    """``(train(cfg), None)``; after a graceful stop ``(None, its exit code)``, once rank 0
    printed where the checkpoint is and how to resume."""
    from medmae.training.signals import StopRequested

    try:
        return train(cfg), None
    except StopRequested as e:
        if is_main_rank():
            print(f"medmae {command}: {e}; checkpoint {e.checkpoint}. Run the same command to resume.",
                  file=sys.stderr)
        return None, e.exit_code
