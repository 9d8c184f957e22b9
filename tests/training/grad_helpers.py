"""Fixed masks and a gradient-recording optimizer around the engine's ``_train_step``: the
gradient one optimizer step applies, for given images, masks, batch size and grad_accum."""

from __future__ import annotations

import torch

from medmae.training.pretrain_config import PretrainConfig
from medmae.masking.base import MaskingStrategy
from medmae.models import MaskedAutoencoder3D
from medmae.training.distributed import DistInfo, wrap_ddp
from medmae.training.engine import _train_step
from medmae.training.state import TrainParts

CROP, PATCH = (32, 32, 32), (8, 8, 8)


class FixedMasks(MaskingStrategy):
    """Hands out the rows of a fixed (B_total, N) mask, in order, whatever the micro-batch size."""

    def __init__(self, masks: torch.Tensor):
        super().__init__(0.5)
        self.masks, self.at = masks, 0

    def forward(self, ctx, step, generator):
        b = ctx.batch_size
        out = self.masks[self.at:self.at + b]
        self.at += b
        return out


class RecordingSGD(torch.optim.SGD):
    """lr 0 SGD that keeps a copy of every gradient it is asked to apply."""

    def __init__(self, params):
        self.params_list = list(params)
        super().__init__(self.params_list, lr=0.0)
        self.grads: list[torch.Tensor] = []

    def step(self, closure=None):
        self.grads = [p.grad.detach().clone() for p in self.params_list]
        return super().step(closure)


class _Schedule:
    peak_lr = 0.0


def fixed_data(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, *CROP) images and (n, N) masks hiding the same number of tokens per sample (so
    per-batch means over hidden tokens agree however the samples are split)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, *CROP, generator=g)
    tokens = (CROP[0] // PATCH[0]) ** 3
    masks = torch.zeros(n, tokens, dtype=torch.bool)
    for b in range(n):
        masks[b, torch.randperm(tokens, generator=g)[: tokens * 3 // 4]] = True
    return images, masks


def step_grads(images: torch.Tensor, masks: torch.Tensor, batch: int, accum: int,
               info: DistInfo | None = None) -> list[torch.Tensor]:
    """Gradients of one engine step over ``images`` in micro-batches of ``batch`` (DDP-wrapped
    when ``info`` has several ranks); the same initial model every call."""
    torch.manual_seed(0)
    model = MaskedAutoencoder3D(CROP, PATCH, 1, embed_dim=48, depth=2, num_heads=3, decoder_embed_dim=32,
                                decoder_depth=1, decoder_num_heads=2)
    cfg = PretrainConfig.model_validate({
        "data": {"crop_size": list(CROP), "batch_size": batch}, "model": {"patch_size": list(PATCH)},
        "masking": {"foreground_only": False}, "train": {"grad_accum": accum, "grad_clip": None}})
    loader = iter([{"image": images[i:i + batch]} for i in range(0, len(images), batch)])
    opt = RecordingSGD(model.parameters())
    parts = TrainParts(model=model, strategy=FixedMasks(masks), optimizer=opt, scaler=None, schedule=_Schedule(),
                       loader=loader, mask_rng=torch.Generator().manual_seed(0))
    info = info or DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    _train_step(cfg, parts, wrap_ddp(model, info), info, "fp32", 0)
    return opt.grads
