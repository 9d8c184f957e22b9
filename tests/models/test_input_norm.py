"""``model.input_norm``: the encoder normalises its input per crop over the tokens it sees.

Mechanism: an affine change of a crop's intensities (a scanner gain and offset) leaves the
encoding unchanged, and under a mask the hidden voxels do not leak into it through the
statistics. Effect on real scans: tests/training/test_input_norm_real.py."""

import pytest
import torch

from medmae.models.encoder import ViTEncoder3D
from medmae.models.mae import MaskedAutoencoder3D


def encoder(input_norm: bool) -> ViTEncoder3D:
    torch.manual_seed(0)
    return ViTEncoder3D((16, 16, 16), 8, 2, embed_dim=24, depth=1, num_heads=2, input_norm=input_norm).eval()


@pytest.mark.parametrize("input_norm", [True, False])
def test_gain_and_offset_change_the_encoding_only_without_input_norm(input_norm):
    enc = encoder(input_norm)
    x = torch.randn(2, 2, 16, 16, 16)
    gain = torch.tensor([3.0, 0.2]).reshape(1, 2, 1, 1, 1)
    offset = torch.tensor([5.0, -1.0]).reshape(1, 2, 1, 1, 1)
    with torch.no_grad():
        same = torch.allclose(enc(x), enc(gain * x + offset), atol=1e-4)
    assert same == input_norm
    assert enc.architecture()["input_norm"] == input_norm


def test_statistics_come_from_the_visible_tokens_only():
    enc = encoder(True)
    x = torch.randn(1, 2, 16, 16, 16)
    ids = torch.tensor([[0, 3, 5]])  # 3 of the 8 tokens visible
    y = x.clone()
    y[:, :, 8:, 8:, 8:] += 100.0  # token 7 (last grid cell), hidden
    with torch.no_grad():
        assert torch.allclose(enc.forward_visible(x, ids), enc.forward_visible(y, ids), atol=1e-5)
        y[:, :, :8, :8, :8] += 1.0  # token 0, visible
        assert not torch.allclose(enc.forward_visible(x, ids), enc.forward_visible(y, ids), atol=1e-3)


def test_mae_passes_input_norm_to_its_encoder():
    mae = MaskedAutoencoder3D(16, 8, 1, 24, 1, 2, 16, 1, 2, norm_pix_loss=False, input_norm=True)
    assert mae.encoder.input_norm
    x = torch.randn(2, 1, 16, 16, 16)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, :4] = True
    assert torch.isfinite(mae(x, mask).loss)
