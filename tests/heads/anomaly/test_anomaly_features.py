"""The feature-space map (issue 20, item 4): nearest healthy-token distance of encoder features."""

import numpy as np
import pytest
import torch

from medmae.heads.anomaly.case import prepare
from medmae.heads.anomaly.features import bank_features, feature_map, nearest_distance
from medmae.heads.anomaly.metrics import voxel_auc
from medmae.heads.anomaly.run import open_model
from medmae.io.manifest import read_manifest


def test_nearest_distance_is_the_minimum_over_the_bank_in_chunks():
    g = torch.Generator().manual_seed(0)
    feats, bank = torch.randn(10, 4, generator=g), torch.randn(7, 4, generator=g)
    want = torch.tensor([min(float((f - b).norm()) for b in bank) for f in feats])
    assert torch.allclose(nearest_distance(feats, bank, chunk=3), want, atol=1e-5)
    assert torch.allclose(nearest_distance(bank, bank), torch.zeros(7), atol=1e-3)


def _prepared(manifest, model):
    out = []
    for case in read_manifest(manifest):
        image, maps, meta = prepare(case, model)
        out.append((image, maps["body"].astype(bool), [p["floor"] for p in meta["normalisation"]],
                    maps.get("label")))
    return out


def test_feature_map_ranks_phantom_lesions_above_healthy_tissue(pretrained):
    """Bank: held-out healthy phantoms; map: lesion phantoms. Lesion voxels lie farther from
    every healthy token than the rest of the brain does."""
    model, _ = open_model(pretrained.run)
    healthy = _prepared(pretrained.healthy_calib, model)
    bank = bank_features([h[:3] for h in healthy], model, max_tokens=4000)
    t = bank.tokens
    assert t.shape[0] <= 4000 and torch.allclose(t.norm(dim=1), torch.ones(t.shape[0]), atol=1e-4)
    labels, scores = [], []
    for image, body, floors, label in _prepared(pretrained.lesions, model):
        m = feature_map(image, body, floors, model, bank)
        assert m.shape == body.shape and not m[~body].any() and (m[body] >= 0).all()
        labels.append(label[body] > 0)
        scores.append(m[body])
    auroc, _ = voxel_auc(np.concatenate(labels), np.concatenate(scores))
    print(f"phantoms: feature-map voxel AUROC {auroc:.3f}")
    assert auroc > 0.6
    with pytest.raises(ValueError, match="bank would be empty"):
        bank_features([(healthy[0][0], np.zeros_like(healthy[0][1]), healthy[0][2])], model)


def test_score_feature_bank_adds_the_feature_map_beside_the_reconstruction_map(pretrained):
    """score.feature_bank (a manifest of reference scans): a fourth map, ``features``, the feature
    map (edge-normalised with score.normalise=edge, as the model map is); the model, baseline
    and combined maps stay those of a run without a bank; the bank is built once per model."""
    from medmae.heads.anomaly.case import analyse_case, derive_maps, feature_bank
    from medmae.heads.anomaly.config import AnomalyConfig
    from medmae.heads.anomaly.maps import edge_distance_mm, edge_normalised

    model, _ = open_model(pretrained.run)
    case = read_manifest(pretrained.lesions)[0]
    bank_cfg = {"feature_bank": str(pretrained.healthy_train)}
    cfg = AnomalyConfig.model_validate({"score": bank_cfg})
    cm = analyse_case(case, model, cfg)
    assert tuple(cm.maps) == ("model", "features", "baseline", "combined") and set(cm.scores) == set(cm.maps)
    bank = feature_bank(model, str(pretrained.healthy_train))
    assert feature_bank(model, str(pretrained.healthy_train)) is bank
    image, body, floors, _ = _prepared(pretrained.lesions, model)[0]
    raw = feature_map(image, body, floors, model, bank)
    assert np.allclose(cm.maps["features"], raw)
    plain = analyse_case(case, model, AnomalyConfig())
    assert tuple(plain.maps) == ("model", "baseline", "combined")
    for name in plain.maps:
        assert np.array_equal(cm.maps[name], plain.maps[name]), name
    assert not np.allclose(cm.maps["features"], cm.maps["model"])
    spacing = tuple(model.preprocess.spacing)
    edge = AnomalyConfig.model_validate({"score": {**bank_cfg, "normalise": "edge"}})
    maps = derive_maps(cm.stats, cm.image, cm.body, cm.contrast, edge, spacing, raw)
    assert np.allclose(maps["features"], edge_normalised(raw, body, spacing))
    assert not np.allclose(maps["features"], raw)
    rim = AnomalyConfig.model_validate({"score": {**bank_cfg, "rim_mm": 6.0}})
    maps = derive_maps(cm.stats, cm.image, cm.body, cm.contrast, rim, spacing, raw)
    inner = edge_distance_mm(body, spacing) > 6.0
    assert np.array_equal(maps["features"], np.where(inner, raw, 0.0)) and (raw[body & ~inner] > 0).any()
    with pytest.raises(ValueError, match="feature map is given exactly when"):
        derive_maps(cm.stats, cm.image, cm.body, cm.contrast, AnomalyConfig(), spacing, raw)
