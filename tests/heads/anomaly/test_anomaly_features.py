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


def test_score_feature_bank_makes_the_mae_map_the_feature_map(pretrained):
    """score.feature_bank (a manifest of reference scans): the case's MAE map is the feature map,
    the bank is built once per model, the baseline stays the same."""
    from medmae.heads.anomaly.case import analyse_case, feature_bank
    from medmae.heads.anomaly.config import AnomalyConfig

    model, _ = open_model(pretrained.run)
    case = read_manifest(pretrained.lesions)[0]
    cfg = AnomalyConfig.model_validate({"score": {"feature_bank": str(pretrained.healthy_calib)}})
    cm = analyse_case(case, model, cfg)
    bank = feature_bank(model, str(pretrained.healthy_calib))
    assert feature_bank(model, str(pretrained.healthy_calib)) is bank
    image, body, floors, _ = _prepared(pretrained.lesions, model)[0]
    assert np.allclose(cm.maps["model"], feature_map(image, body, floors, model, bank))
    plain = analyse_case(case, model, AnomalyConfig())
    assert np.array_equal(cm.maps["baseline"], plain.maps["baseline"])
    assert not np.allclose(cm.maps["model"], plain.maps["model"])
