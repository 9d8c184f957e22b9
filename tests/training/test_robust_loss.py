"""The trimmed reconstruction loss (issue 20, item 3): each crop's worst voxels get no pull."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medmae.config.base import ConfigError

from medmae.models import build_mae
from medmae.training.engine import pretrain
from medmae.training.robust_loss import trimmed_loss
from training_helpers import make_phantom_cache, tiny_config

GLIOMA = Path(__file__).resolve().parents[3] / "shared" / "data" / "brain" / "glioma_TCGA-DU-7294"


def test_no_trim_is_the_models_own_loss(tmp_path):
    cfg = tiny_config(tmp_path / "cache", tmp_path / "run", "model.norm_pix_loss=false")
    torch.manual_seed(0)
    model = build_mae(cfg.model, (32, 32, 32))
    x = torch.randn(2, 1, 32, 32, 32)
    n = model.num_tokens
    mask = torch.rand(2, n) < 0.75
    valid = torch.rand(2, n) < 0.9
    out = model(x, mask, valid)
    assert torch.allclose(trimmed_loss(out.pred, out.target, mask, valid, 0.0), out.loss, rtol=1e-5)
    assert trimmed_loss(out.pred, out.target, mask, valid, 0.1) < out.loss


def test_on_a_real_glioma_crop_the_trimmed_voxels_are_the_tumour_and_get_no_gradient():
    """FLAIR crop through the tumour; prediction = the crop's mean (what an untrained MAE
    gives): the tumour is over-represented among the 5 % trimmed voxels (0.44 of them against
    0.14 of the brain; dark CSF is the rest), and their gradient is exactly 0."""
    if not GLIOMA.is_dir():
        pytest.skip("development brains not present")
    flair = np.asarray(nib.load(GLIOMA / "flair.nii.gz").dataobj, np.float32)
    tumour = np.asarray(nib.load(GLIOMA / "tumour_pseudolabel.nii.gz").dataobj) > 0
    c = np.round(np.argwhere(tumour).mean(0)).astype(int)
    box = tuple(slice(v - 32, v + 32) for v in c)
    crop, les = flair[box], tumour[box]
    brain = crop > 0
    crop = (crop - crop[brain].mean()) / crop[brain].std()
    target = torch.from_numpy(crop.reshape(1, -1, 1).copy())  # one token per voxel row: B N V
    pred = torch.full_like(target, float(crop[brain].mean()), requires_grad=True)
    hidden = torch.from_numpy(brain.reshape(1, -1))
    loss = trimmed_loss(pred, target, hidden, None, 0.05)
    loss.backward()
    trimmed = (pred.grad[0, :, 0] == 0).numpy() & brain.ravel()
    share = les.ravel()[trimmed].mean()
    print(f"tumour share of the crop's brain {les[brain].mean():.2f}, of the trimmed voxels {share:.2f}")
    assert trimmed.sum() == pytest.approx(0.05 * brain.sum(), rel=0.05)
    assert share > 2.5 * les[brain].mean()


def test_trim_fraction_is_validated_and_trains(tmp_path):
    with pytest.raises(ConfigError, match="train.trim_fraction.*less than or equal to 0.5"):
        tiny_config(tmp_path / "c", tmp_path / "r", "train.trim_fraction=0.7")
    cache = make_phantom_cache(tmp_path / "cache", n=2, shape=(40, 40, 40))
    cfg = tiny_config(cache, tmp_path / "run", "train.trim_fraction=0.05", "train.steps=3", "tracking.enabled=false",
                      "model.norm_pix_loss=false")
    res = pretrain(cfg)
    assert len(res.losses) == 3 and all(np.isfinite(res.losses))
    with pytest.raises(ValueError, match="trim_fraction"):
        trimmed_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.ones(1, 2, dtype=torch.bool), None, 1.0)
