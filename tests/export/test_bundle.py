"""`medmae export` writes a MONAI bundle MONAI's own tooling loads: ConfigParser builds the
network from inference.json and loads models/model.pt; its outputs are our encoder's."""

from __future__ import annotations

import json

import pytest
import torch

from export_helpers import UNETR_FIT, write_checkpoint
from medmae.cli.main import main
from medmae.export import load_encoder
from medmae.export.verify import hidden_state_gap

SMALL = {"size": "custom", "embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": [8, 8, 8]}


def _load_with_monai(bundle):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    parser["device"] = "$torch.device('cpu')"
    net = parser.get_parsed_content("network")
    assert "weights_only=True" in parser["load_weights"]  # the bundle never unpickles code
    for expr in parser.get_parsed_content("initialize"):  # loads models/model.pt, weights only
        assert not expr.missing_keys and not expr.unexpected_keys
    return net, parser


@pytest.mark.parametrize("model,unetr", [(UNETR_FIT, True), (SMALL, False)])
def test_monai_bundle_loads_with_monai_tooling(tmp_path, capsys, model, unetr):
    ckpt, _ = write_checkpoint(tmp_path / "ckpt.pt", model=model)
    out = tmp_path / "encoder"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    assert "MONAI bundle:" in capsys.readouterr().out
    bundle = out / "monai_bundle"
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["medmae"]["unetr_compatible"] is unetr and meta["network_data_format"]["inputs"]["image"]["num_channels"] == 1
    net, parser = _load_with_monai(bundle)
    from monai.networks.nets import ViT

    assert type(net) is ViT
    ours, _ = load_encoder(out)
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    assert hidden_state_gap(ours, net, x) < 1e-4  # MONAI's network computes our encoder
    fresh = ViT(**{k: v for k, v in parser["network_def"].items() if k != "_target_"})
    assert hidden_state_gap(ours, fresh.eval(), x) > 1e-2  # ...because the weights were loaded


def test_input_norm_encoder_gets_no_bundle(tmp_path, capsys):
    ckpt, _ = write_checkpoint(tmp_path / "ckpt.pt", model={**SMALL, "input_norm": True})
    out = tmp_path / "encoder"
    assert main(["export", str(ckpt), "--out", str(out), "--no-verify"]) == 0
    printed = capsys.readouterr().out
    assert "no MONAI bundle" in printed and "model.input_norm" in printed and "medmae's heads only" in printed
    assert not (out / "monai_bundle").exists()
