"""The one place a device name becomes a ``torch.device`` (training, fine-tuning, scoring, segmenting)."""

from __future__ import annotations

import torch


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    """"auto" | "cpu" | "cuda" -> this process's device.

    ``auto`` is CUDA when there is one, else the CPU. On CUDA, rank ``local_rank`` of a
    torchrun job takes GPU ``local_rank % device_count`` (0 outside torchrun).
    """
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA device is available (use auto or cpu)")
    if choice in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if choice == "auto":
        return torch.device("cpu")
    raise ValueError(f"unknown device {choice!r} (auto, cpu or cuda)")
