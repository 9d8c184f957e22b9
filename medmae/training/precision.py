"""Mixed precision: which autocast dtype, and a GradScaler only where fp16 needs one."""

from __future__ import annotations

import contextlib

import torch


def resolve_precision(choice: str, device: torch.device) -> str:
    """"auto" -> "bf16" on CUDA, "fp32" on CPU; checks that the choice fits the device."""
    if choice == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if choice == "fp16" and device.type != "cuda":
        raise ValueError("train.precision 'fp16' needs CUDA (use 'bf16' or 'fp32' on the CPU)")
    if choice not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {choice!r} (auto, fp32, bf16 or fp16)")
    return choice


def autocast(precision: str, device: torch.device):
    """Context manager for the forward pass (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
