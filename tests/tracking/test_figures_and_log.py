"""Reconstruction montages and the local metrics log."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from medmae.models import ModelConfig, build_mae
from medmae.tokens import patchify
from medmae.tracking.figures import save_reconstruction_figure, token_map
from medmae.tracking.metrics_log import MetricsLog, read_metrics


def test_token_map_paints_each_token_over_its_patch():
    tokens = torch.arange(8, dtype=torch.float32)[None]  # grid (2, 2, 2), patch (2, 3, 4)
    vol = token_map(tokens, (2, 3, 4), (2, 2, 2))
    assert vol.shape == (1, 4, 6, 8)
    assert torch.equal(patchify(vol[:, None], (2, 3, 4))[0], tokens[0, :, None].expand(8, 24))
    assert vol[0, 3, 0, 7] == 5  # voxel (3, 0, 7) is in grid cell (1, 0, 1) = token (1*2+0)*2+1


def test_montage_of_a_real_reconstruction(tmp_path):
    model = build_mae(ModelConfig(size="custom", patch_size=(8, 8, 8), embed_dim=24, depth=1, num_heads=2,
                                  decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2), (32, 32, 32))
    x = torch.randn(3, 1, 32, 32, 32)
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(3, 64, generator=gen).argsort(1).argsort(1) < 48  # 48 of 64 hidden
    valid = torch.ones(3, 64, dtype=torch.bool)
    valid[:, :4] = False
    mask &= valid
    with torch.no_grad():
        out = model(x, mask, valid)
    recon = model.reconstruct(out.pred, x, mask)
    tokens = patchify(recon, (8, 8, 8))
    assert torch.equal(tokens[~mask], patchify(x, (8, 8, 8))[~mask])  # visible patches pasted back

    path = save_reconstruction_figure(tmp_path / "figs" / "step_0000010.png", x, recon, mask, valid, (8, 8, 8),
                                      titles=["case_a", "case_b", "case_c"], max_samples=2, suptitle="step 10")
    with Image.open(path) as im:
        assert im.format == "PNG"
        rgb = np.asarray(im.convert("RGB")).astype(int)
    h, w, _ = rgb.shape
    assert h == pytest.approx(2 * w, rel=0.05)  # 2 samples x 3 planes = 6 rows of 3 panels
    red = (rgb[..., 0] - rgb[..., 1] > 60) & (rgb[..., 0] - rgb[..., 2] > 60)
    assert red.mean() > 0.05  # hidden tokens shaded (75% of each mask panel)
    assert [p.name for p in (tmp_path / "figs").iterdir()] == ["step_0000010.png"]  # no temporary left


def test_metrics_log_truncates_to_a_checkpoint_and_skips_torn_lines(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write([{"step": s, "loss": 1.0 / s} for s in range(1, 6)])
    log.write([{"step": 6, "loss": float("nan"), "inf": float("inf")}])
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "lo')  # the process died mid-line
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[5]["loss"] is None and records[5]["inf"] == "inf"  # still valid JSON
    assert MetricsLog(tmp_path / "metrics.jsonl").truncate_after(3) == 3
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    assert json.loads(lines[1])["loss"] == pytest.approx(0.5)
    assert np.isclose(read_metrics(tmp_path / "metrics.jsonl")[2]["loss"], 1 / 3)
