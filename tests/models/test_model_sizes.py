"""Size presets, config resolution and build_mae."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from medmae.config import ConfigError, load_config
from medmae.training.pretrain_config import PretrainConfig
from medmae.models import PRESETS, MaskedAutoencoder3D, ModelConfig, build_encoder, build_mae, resolve_dims
from medmae.models.flops import mae_forward_flops, mae_train_step_flops, train_flops


def test_presets_resolve_and_overrides_win():
    assert resolve_dims(ModelConfig(size="base")) == PRESETS["base"]
    assert (PRESETS["base"].embed_dim, PRESETS["base"].depth, PRESETS["base"].num_heads) == (768, 12, 12)
    assert (PRESETS["base"].decoder_embed_dim, PRESETS["base"].decoder_depth) == (384, 4)
    d = resolve_dims(ModelConfig(size="small", depth=6, decoder_embed_dim=128, decoder_num_heads=4))
    assert (d.embed_dim, d.depth, d.decoder_embed_dim, d.decoder_num_heads) == (384, 6, 128, 4)


def test_custom_needs_encoder_numbers_and_gets_light_decoder():
    with pytest.raises(ConfigError, match="model.depth, model.num_heads"):
        resolve_dims(ModelConfig(size="custom", embed_dim=192))
    d = resolve_dims(ModelConfig(size="custom", embed_dim=192, depth=4, num_heads=3))
    assert (d.decoder_embed_dim, d.decoder_depth, d.decoder_num_heads) == (96, 4, 3)


def test_indivisible_heads_rejected():
    with pytest.raises(ConfigError, match="not divisible by 5 heads"):
        resolve_dims(ModelConfig(size="tiny", num_heads=5))


def test_config_from_overrides_builds_matching_model():
    cfg = load_config(PretrainConfig, None, ["model.patch_size=8", "model.in_channels=2", "data.crop_size=[32,32,16]"])
    assert cfg.model.patch_size == (8, 8, 8)
    model = build_mae(cfg.model, cfg.data.crop_size)
    assert model.grid == (4, 4, 2) and model.patch_dim == 512 * 2
    assert model.encoder.embed_dim == 96 and len(model.encoder.blocks) == 4 and len(model.decoder.blocks) == 2
    enc = build_encoder(cfg.model, cfg.data.crop_size)
    assert set(enc.state_dict()) == {k[len("encoder."):] for k in model.state_dict() if k.startswith("encoder.")}
    with pytest.raises(ValueError, match="not divisible"):
        build_mae(cfg.model, (32, 32, 20))


def _measured(model, x, mask, valid=None, backward=False) -> int:
    """FLOPs torch counts for a forward (and backward), attention in its counted math form."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = model(x, mask, valid)
        if backward:
            out.loss.backward()
    return counter.get_total_flops()


def test_flop_counts_match_torch_flop_counter():
    torch.manual_seed(0)
    model = MaskedAutoencoder3D((32, 32, 16), (8, 8, 8), 2, embed_dim=48, depth=2, num_heads=3,
                                decoder_embed_dim=36, decoder_depth=1, decoder_num_heads=2)
    b, n = 3, model.num_tokens
    hidden = round(0.75 * n)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i in range(b):
        mask[i, torch.randperm(n)[:hidden]] = True
    x = torch.randn(b, 2, 32, 32, 16)
    assert _measured(model, x, mask) == b * mae_forward_flops(model, n - hidden)
    assert _measured(model, x, mask, backward=True) == mae_train_step_flops(model, b, 0.75)
    # foreground-only: the decoder runs on the valid tokens only
    valid = torch.ones(b, n, dtype=torch.bool)
    valid[:, : n // 4] = False
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i in range(b):
        ids = n // 4 + torch.randperm(n - n // 4)[: round(0.75 * (n - n // 4))]
        mask[i, ids] = True
    vis, dec = n - n // 4 - int(mask[0].sum()), n - n // 4
    assert _measured(model, x, mask, valid, backward=True) == b * train_flops(model, vis, dec)
