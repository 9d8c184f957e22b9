"""Whole-volume prediction by sliding window (MONAI), with the training precision."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from medmae.training.precision import autocast


@torch.no_grad()
def predict_volume(model: nn.Module, image: np.ndarray | torch.Tensor, roi: Sequence[int], device: torch.device,
                   precision: str = "fp32", overlap: float = 0.25, sw_batch_size: int = 2,
                   mode: str = "gaussian", progress: bool = False) -> torch.Tensor:
    """(C, X, Y, Z) image -> (X, Y, Z) int64 class indices on the CPU (argmax of the blended
    softmax). Volumes smaller than ``roi`` are padded by MONAI and cropped back. ``progress``:
    MONAI's bar over the window batches."""
    x = torch.from_numpy(np.array(image, dtype=np.float32))[None].to(device)
    was_training = model.training
    model.eval()
    try:
        with autocast(precision, device):
            logits = sliding_window_inference(x, tuple(roi), sw_batch_size, model, overlap=overlap, mode=mode,
                                            progress=progress)
    finally:
        model.train(was_training)
    return logits.float().softmax(1)[0].argmax(0).cpu()
