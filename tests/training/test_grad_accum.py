"""Gradient accumulation is exact: grad_accum=2 x batch 2 == grad_accum=1 x batch 4 (fixed masks),
and an EMA teacher moves once per optimizer step whatever grad_accum is."""

from __future__ import annotations

import pytest
import torch

from medmae.config.schema import PretrainConfig
from medmae.masking.base import MaskingStrategy
from medmae.models import MaskedAutoencoder3D
from medmae.training.distributed import DistInfo
from medmae.training.engine import _train_step, pretrain
from medmae.training.state import TrainParts
from training_helpers import make_phantom_cache, tiny_config

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


def _grads(images: torch.Tensor, masks: torch.Tensor, batch: int, accum: int) -> list[torch.Tensor]:
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
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    _train_step(cfg, parts, model, info, "fp32", 0)
    return opt.grads


def test_two_micro_batches_of_two_give_the_gradient_of_one_batch_of_four():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 1, *CROP, generator=g)
    n = (CROP[0] // PATCH[0]) ** 3
    masks = torch.zeros(4, n, dtype=torch.bool)
    for b in range(4):  # the same number hidden per sample: the per-batch means then agree
        masks[b, torch.randperm(n, generator=g)[: n * 3 // 4]] = True
    whole = _grads(images, masks, batch=4, accum=1)
    accumulated = _grads(images, masks, batch=2, accum=2)
    assert len(whole) == len(accumulated) > 10
    for a, b in zip(whole, accumulated):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    # the defects this guards against give other gradients
    only_last = _grads(images[2:], masks[2:], batch=2, accum=1)
    assert not all(torch.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(whole, only_last))


@pytest.mark.parametrize("accum", [1, 2])
def test_ema_teacher_moves_once_per_optimizer_step(tmp_path, accum):
    cache = make_phantom_cache(tmp_path / "cache", n=2, shape=(40, 40, 40))
    cfg = tiny_config(cache, tmp_path / "run", "masking.strategy=loss_guided",
                      "masking.loss_guided.ema_decay=0.9", "masking.loss_guided.schedule_steps=3",
                      "train.steps=3", f"train.grad_accum={accum}", "data.batch_size=2", "tracking.enabled=false")
    res = pretrain(cfg)
    assert int(res.masking._ema.n_averaged) == 1 + 3  # a copy at the first scoring, then one update per step
