"""Shared harness of the fine-tuning benchmarks: medmae's SegmentationViT vs MONAI's UNETR
with the same encoder dimensions, the same data, batch and loss (DiceCE, 3 classes)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mae import activation_bytes, timed_steps  # noqa: E402,F401  (re-exported)

from medmae.heads.segmentation.model import SegmentationViT  # noqa: E402
from medmae.models.encoder import ViTEncoder3D  # noqa: E402

CLASSES = 3


@dataclass(frozen=True)
class SegCase:
    name: str
    img: int
    patch: int
    batch: int
    dim: int = 768
    depth: int = 12
    heads: int = 12
    feature: int = 16

    def describe(self) -> str:
        return (f"{self.name}: {self.img}^3 crops, patch {self.patch}, batch {self.batch}, width {self.dim}, "
                f"{self.depth} blocks, {self.heads} heads, decoder feature size {self.feature}")


def build_ours(c: SegCase) -> SegmentationViT:
    enc = ViTEncoder3D(c.img, c.patch, 1, c.dim, c.depth, c.heads)
    return SegmentationViT(enc, CLASSES, c.feature)


def build_monai(c: SegCase):
    """MONAI UNETR as users build it (conv patch embedding, qkv bias like ours; patch 16 fixed)."""
    from monai.networks.nets import UNETR

    if c.patch != 16 or c.depth != 12:
        raise ValueError("MONAI UNETR fixes patch 16 and 12 blocks")
    return UNETR(1, CLASSES, (c.img,) * 3, feature_size=c.feature, hidden_size=c.dim, mlp_dim=4 * c.dim,
                 num_heads=c.heads, proj_type="conv", qkv_bias=True, norm_name="instance", res_block=True)


def make_data(c: SegCase, device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(c.batch, 1, c.img, c.img, c.img, generator=g)
    y = torch.randint(0, CLASSES, (c.batch, 1, c.img, c.img, c.img), generator=g)
    return x.to(device), y.to(device)


def loss_fn():
    from monai.losses import DiceCELoss

    return DiceCELoss(to_onehot_y=True, softmax=True)


def step_forward(model, x, y, loss, dtype=None):
    """Forward + loss closure: logits under autocast(dtype) (None = fp32), loss in fp32."""
    def run():
        if dtype is None:
            return loss(model(x), y)
        with torch.autocast(x.device.type, dtype=dtype):
            logits = model(x)
        return loss(logits.float(), y)
    return run


def print_rows(rows: list[tuple[str, str, float, int, float]], mem_label: str, baseline: str) -> None:
    """rows: (case, variant, sec/step, batch, memory) -> a table plus ratios against ``baseline``."""
    print(f"\n{'config':<10} {'model':<24} {'crops/s':>9} {'ms/step':>9} {mem_label:>14}")
    for case, variant, sec, batch, mem in rows:
        print(f"{case:<10} {variant:<24} {batch / sec:9.2f} {1000 * sec:9.1f} {mem:14.1f}")
    base = {case: (sec, mem) for case, variant, sec, _, mem in rows if variant == baseline}
    print(f"\nratios against {baseline} (throughput: higher is better; memory: lower is better)")
    for case, variant, sec, _, mem in rows:
        ref = base.get(case) or next(iter(base.values()), None)
        if ref is not None and variant != baseline:
            memory = f"memory x{mem / ref[1]:5.2f}" if ref[1] > 0 else "memory n/a"
            print(f"  {case:<10} {variant:<24} throughput x{ref[0] / sec:5.2f}   {memory}")
