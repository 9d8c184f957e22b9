"""Check an export end to end: reload it, and load it into MONAI's UNETR and compare."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from medmae.export.files import read_export
from medmae.export.load import UNETR_TARGET, encoder_from_export, monai_vit_from_export, unetr_compatible, unetr_kwargs
from medmae.export.report import LoadReport
from medmae.models.encoder import ViTEncoder3D


@dataclass
class Verification:
    """encoder: reload report; unetr: UNETR report (None when skipped, see ``skipped``);
    max_abs_diff: largest |ours - UNETR| over the final and every hidden state."""

    encoder: LoadReport
    unetr: LoadReport | None
    skipped: str | None
    max_abs_diff: float | None


@torch.no_grad()
def hidden_state_gap(encoder: ViTEncoder3D, vit: torch.nn.Module, x: torch.Tensor) -> float:
    """Max |difference| between our encoder's (output, hidden states) and MONAI ViT's on x."""
    ours, ours_hidden = encoder.eval()(x, return_hidden=True)
    theirs, theirs_hidden = vit.eval()(x)
    pairs = [(ours, theirs), *zip(ours_hidden, theirs_hidden)]
    return max((a - b).abs().max().item() for a, b in pairs)


def verify_export(export_dir: str | os.PathLike, seed: int = 0) -> Verification:
    """Reload the export strictly; if UNETR can hold it, load it there and compare outputs
    on one random crop (should be float rounding only)."""
    from monai.networks.nets import UNETR

    state, meta = read_export(export_dir)  # read and hashed once for both loads
    encoder, report = encoder_from_export(state, meta)
    reason = unetr_compatible(meta)
    if reason:
        return Verification(report, None, reason, None)
    unetr = UNETR(out_channels=2, img_size=tuple(encoder.img_size), feature_size=16, **unetr_kwargs(meta))
    unetr_report = monai_vit_from_export(unetr.vit, state, meta, unetr.feat_size, target_name=UNETR_TARGET)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, encoder.in_channels, *encoder.img_size, generator=g)
    return Verification(report, unetr_report, None, hidden_state_gap(encoder, unetr.vit, x))
