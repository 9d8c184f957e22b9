"""Encoder export: files, round trip, loading into MONAI's UNETR with a key report."""

import json

import pytest
import torch

from export_helpers import UNETR_FIT, unetr_for, write_checkpoint
from medmae.export import ExportError, LoadError, export_encoder, load_encoder, load_into_unetr, read_export
from medmae.export.load import encoder_from_export
from medmae.export.verify import hidden_state_gap
from medmae.models.pos_embed import interpolate_pos_embed, sincos_pos_embed_3d
from medmae.training.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    ckpt, mae = write_checkpoint(d / "ckpt.pt")
    export_encoder(ckpt, d / "enc")
    return d / "enc", mae


def test_files_and_metadata(exported):
    out, mae = exported
    meta = json.loads((out / "encoder.json").read_text())
    a = meta["architecture"]
    assert (a["embed_dim"], a["depth"], a["num_heads"], a["mlp_ratio"]) == (48, 12, 4, 2.0)
    assert a["patch_size"] == [16, 16, 16] and a["grid"] == [2, 2, 2] and a["in_channels"] == 1
    assert meta["crop_size"] == [32, 32, 32] and meta["spacing"] == [1.5, 1.5, 3.0]
    assert meta["normalisation"]["ct"]["window"] == [-1000.0, 1000.0]
    assert meta["source"] == {"checkpoint": "ckpt.pt", "step": 123}
    state = torch.load(out / "encoder.pt", weights_only=True)
    assert set(state) == set(mae.encoder.state_dict()) and meta["weights"]["tensors"] == len(state)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_round_trip_gives_the_same_encoder(exported):
    out, mae = exported
    encoder, report = load_encoder(out)
    assert report.ok and not report.resized and len(report.loaded) == len(mae.encoder.state_dict())
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(encoder.eval()(x), mae.encoder.eval()(x))


def test_unetr_same_size_matches_our_hidden_states(exported):
    out, mae = exported
    unetr = unetr_for(32)
    report = load_into_unetr(unetr, out)
    assert report.ok and report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert len(report.loaded) == len(mae.encoder.state_dict())
    assert len(report.unused) == 24 and all("norm_cross_attn" in k for k in report.unused)
    assert "OK" in report.format() and "untouched" in report.format()
    x = torch.randn(2, 1, 32, 32, 32)
    assert hidden_state_gap(mae.encoder, unetr.vit, x) < 1e-4
    with torch.no_grad():
        ours, hidden = mae.encoder(x, return_hidden=True)
        theirs, theirs_hidden = unetr.vit(x)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(theirs_hidden[9], hidden[9], atol=1e-5, rtol=1e-4)


def test_unetr_other_size_regenerates_sincos_by_default_and_says_so(exported):
    out, mae = exported
    unetr = unetr_for(48)
    report = load_into_unetr(unetr, out)
    assert report.ok and not report.hints
    assert report.resized == [("patch_embedding.position_embeddings", (2, 2, 2), (3, 3, 3), "sincos")]
    text = report.format()
    assert "grid (2, 2, 2) -> (3, 3, 3) (sincos)" in text and "field of view changes" in text
    got = unetr.vit.patch_embedding.position_embeddings.data
    torch.testing.assert_close(got, sincos_pos_embed_3d((3, 3, 3), 48))
    # the 2^3 cells pretraining saw keep exactly their code (same spacing per token)
    idx = torch.arange(27).view(3, 3, 3)[:2, :2, :2].reshape(-1)
    torch.testing.assert_close(got[0, idx], mae.encoder.pos_embed[0])
    with torch.no_grad():
        assert unetr(torch.randn(1, 1, 48, 48, 48)).shape == (1, 2, 48, 48, 48)


def test_unetr_other_size_interpolation_on_request(exported):
    out, mae = exported
    unetr = unetr_for(48)
    report = load_into_unetr(unetr, out, resize="trilinear")
    assert report.resized == [("patch_embedding.position_embeddings", (2, 2, 2), (3, 3, 3), "trilinear")]
    assert "(trilinear)" in report.format() and "field of view is kept" in report.format()
    want = interpolate_pos_embed(mae.encoder.pos_embed, (2, 2, 2), (3, 3, 3))
    torch.testing.assert_close(unetr.vit.patch_embedding.position_embeddings.data, want)


def test_load_encoder_at_other_size_both_resize_modes(exported):
    out, _ = exported
    rebuilt, report = load_encoder(out, img_size=(64, 64, 32))
    assert rebuilt.grid == (4, 4, 2) and report.resized[0][1:] == ((2, 2, 2), (4, 4, 2), "sincos")
    torch.testing.assert_close(rebuilt.pos_embed, sincos_pos_embed_3d((4, 4, 2), 48))
    enc, report = load_encoder(out, img_size=(64, 64, 32), resize="trilinear")
    assert report.resized[0][1:] == ((2, 2, 2), (4, 4, 2), "trilinear")
    assert not torch.allclose(rebuilt.pos_embed, enc.pos_embed)


def test_regenerating_a_learned_embedding_is_flagged(exported):
    out, _ = exported
    state, meta = read_export(out)
    state = {**state, "pos_embed": state["pos_embed"] + 0.1}  # e.g. fine-tuned, no longer the fixed code
    _, report = encoder_from_export(state, meta, img_size=(64, 64, 32))
    assert report.ok and any("not the fixed sin-cos code" in h for h in report.hints)


def test_qkv_bias_mismatch_is_reported_and_target_untouched(exported):
    out, _ = exported
    unetr = unetr_for(32, qkv_bias=False)
    before = unetr.vit.blocks[0].attn.qkv.weight.clone()
    with pytest.raises(LoadError) as e:
        load_into_unetr(unetr, out)
    assert "DOES NOT FIT" in str(e.value) and "blocks.[0-11].attn.qkv.bias" in str(e.value)
    assert "qkv_bias=True" in str(e.value)
    assert torch.equal(unetr.vit.blocks[0].attn.qkv.weight, before)
    report = load_into_unetr(unetr, out, strict=False)  # the rest loads when asked to
    assert len(report.unexpected) == 12 and not torch.equal(unetr.vit.blocks[0].attn.qkv.weight, before)


def test_width_and_depth_mismatch_hints(tmp_path):
    ckpt, _ = write_checkpoint(tmp_path / "c.pt", {**UNETR_FIT, "depth": 2})
    export_encoder(ckpt, tmp_path / "enc")
    with pytest.raises(LoadError, match="depth differs: the export has 2 blocks, the target 12"):
        load_into_unetr(unetr_for(32), tmp_path / "enc")
    with pytest.raises(LoadError, match="widths differ: the export has hidden size 48"):
        load_into_unetr(unetr_for(32, hidden=96, mlp=192), tmp_path / "enc")
    with pytest.raises(LoadError, match='proj_type="conv"'):
        load_into_unetr(unetr_for(32, proj_type="perceptron"), tmp_path / "enc")


def test_wrapped_checkpoint_keys_and_bad_checkpoints(tmp_path):
    ckpt, mae = write_checkpoint(tmp_path / "c.pt", prefix="_orig_mod.")
    export_encoder(ckpt, tmp_path / "enc")
    state, _ = read_export(tmp_path / "enc")
    assert torch.equal(state["blocks.3.attn.qkv.weight"], mae.encoder.blocks[3].attn.qkv.weight)

    bad = torch.load(ckpt, weights_only=True)
    bad["config"]["model"]["embed_dim"] = 96
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt: encoder weights do not match"):
        export_encoder(tmp_path / "bad.pt", tmp_path / "enc2")
    (tmp_path / "trunc.pt").write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        export_encoder(tmp_path / "trunc.pt", tmp_path / "enc3")
    assert not (tmp_path / "enc2").exists() and not (tmp_path / "enc3").exists()


def test_inconsistent_or_partial_export_detected(tmp_path):
    ckpt, _ = write_checkpoint(tmp_path / "c.pt")
    export_encoder(ckpt, tmp_path / "enc")
    weights = tmp_path / "enc" / "encoder.pt"
    data = bytearray(weights.read_bytes())
    data[-20] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="sha256"):
        load_encoder(tmp_path / "enc")
    (tmp_path / "enc" / "encoder.json").unlink()
    with pytest.raises(ExportError, match="no encoder.json"):
        load_encoder(tmp_path / "enc")
