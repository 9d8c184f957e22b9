"""Interpolation from the visible voxels (normalised Gaussian smoothing) and the MAE option
that predicts a correction to it: hidden voxels never enter the interpolation, it agrees with
SciPy's Gaussian filter, and with a silent decoder the MAE's prediction *is* the interpolation."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from medmae.models.interpolation import interpolate_from_visible
from medmae.models.mae import MaskedAutoencoder3D
from medmae.tokens import patchify, unpatchify

PATCH = (8, 8, 8)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 1, 32, 32, 32, generator=g)
    visible = torch.rand(2, 64, generator=g) < 0.4
    return x, visible


def _voxels(tokens):
    return unpatchify(tokens[..., None].float().expand(-1, -1, 512), PATCH, (4, 4, 4), 1)


def test_hidden_voxels_never_enter_and_scipy_agrees():
    x, visible = _inputs()
    a = interpolate_from_visible(x, visible, PATCH)
    y = torch.where(_voxels(visible) > 0.5, x, torch.full_like(x, 100.0))  # change every hidden voxel
    assert torch.allclose(interpolate_from_visible(y, visible, PATCH), a, atol=1e-5)
    w = _voxels(visible)[0, 0].numpy().astype(np.float64)
    num = gaussian_filter(x[0, 0].numpy() * w, 4.0, mode="constant", truncate=3.0)
    den = gaussian_filter(w, 4.0, mode="constant", truncate=3.0)
    np.testing.assert_allclose(a[0, 0].numpy(), num / den, atol=2e-3)
    assert torch.allclose(interpolate_from_visible(torch.full_like(x, 3.0), visible, PATCH), torch.full_like(x, 3.0))


@pytest.mark.parametrize("norm_crop", [True, False])
def test_silent_decoder_predicts_the_interpolation(norm_crop):
    torch.manual_seed(0)
    x, visible = _inputs(1)
    m = MaskedAutoencoder3D(32, 8, 1, 48, 1, 3, 32, 1, 2, norm_pix_loss=False, norm_crop_loss=norm_crop,
                            interp_residual=True)
    torch.nn.init.zeros_(m.decoder.pred.weight)
    torch.nn.init.zeros_(m.decoder.pred.bias)
    out = m(x, ~visible)
    interp = patchify(interpolate_from_visible(x, visible, PATCH), PATCH)
    if norm_crop:  # in the crop frame of the visible voxels
        for b in range(2):
            seen = x[b][_voxels(visible)[b] > 0.5]
            interp[b] = (interp[b] - seen.mean()) / seen.std(unbiased=False)
    assert torch.allclose(out.pred, interp, atol=1e-4)
    # reconstruct() maps it back to voxels: the interpolation, visible patches pasted
    recon = m.reconstruct(out.pred, x, ~visible)
    smooth = interpolate_from_visible(x, visible, PATCH)
    assert torch.allclose(recon, torch.where(_voxels(visible) > 0.5, x, smooth), atol=1e-4)


def test_norm_pix_is_refused():
    with pytest.raises(ValueError, match="norm_pix_loss"):
        MaskedAutoencoder3D(32, 8, 1, 48, 1, 3, 32, 1, 2, norm_pix_loss=True, interp_residual=True)
