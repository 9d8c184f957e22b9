"""Size presets, config resolution and build_mae."""

import pytest

from medmae.config import ConfigError, load_config
from medmae.config.schema import PretrainConfig
from medmae.models import PRESETS, ModelConfig, build_encoder, build_mae, resolve_dims


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


def test_flop_count_matches_hand_count_for_vit_base():
    from medmae.models.flops import mae_train_step_flops

    import torch

    with torch.device("meta"):  # shapes only
        model = build_mae(ModelConfig(size="base"), (96, 96, 96))  # N = 216, 54 visible at 0.75
    n, vis, p = 216, 54, 4096
    enc = 12 * (2 * vis * (4 * 768**2 + 2 * 768 * 3072) + 4 * vis**2 * 768)
    dec = 4 * (2 * n * (4 * 384**2 + 2 * 384 * 1536) + 4 * n**2 * 384)
    other = 2 * n * p * 768 + 2 * vis * 768 * 384 + 2 * n * 384 * p
    assert mae_train_step_flops(model, 2, 0.75) == 3 * 2 * (enc + dec + other)
