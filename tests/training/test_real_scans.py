"""The studies' real-scan metric keeps scans seen in pretraining apart from held-out ones."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from medmae.config.base import load_config
from medmae.io.manifest import write_manifest
from medmae.io.scan import scan_folder
from medmae.models import build_mae
from medmae.models.config import ModelConfig
from medmae.preprocess.batch import preprocess_manifest
from medmae.preprocess.config import PreprocessConfig
from medmae.training.real_scans import real_scan_scores

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Two real scans cached at 6 mm: the CT in the train split, the MR in val."""
    tmp = tmp_path_factory.mktemp("real_scans")
    (tmp / "scans").mkdir()
    for name in ("ct_abdomen_3mm.nii.gz", "mr_abdomen_3mm.nii.gz"):
        shutil.copy(DATA / name, tmp / "scans" / name)
    cases, bad = scan_folder(tmp / "scans", progress=False)
    assert len(cases) == 2 and not bad
    for c in cases:
        c.split = "train" if c.modality == "CT" else "val"
    pcfg = load_config(PreprocessConfig, None, ["spacing=[6,6,6]", "priors.supervoxels=0"])
    preprocess_manifest(write_manifest(cases, tmp / "manifest.csv"), tmp / "cache", pcfg, workers=0, progress=False)
    return tmp / "cache", {c.modality: c.case_id for c in cases}


def test_seen_and_held_out_real_scans_are_reported_apart(cache, tmp_path):
    root, ids = cache
    torch.manual_seed(0)
    model = build_mae(ModelConfig(patch_size=(8, 8, 8), embed_dim=24, depth=1, num_heads=2, decoder_embed_dim=24,
                                  decoder_depth=1, decoder_num_heads=2, size="custom"), (32, 32, 32)).eval()
    ids_in = [ids["CT"], ids["MR"], "not_cached"]
    metrics, figure = real_scan_scores(model, (8, 8, 8), 0.75, 0.1, root, ids_in, "train", tmp_path)
    per_case = json.loads((tmp_path / "real_scans.json").read_text())
    assert per_case["group"] == {ids["CT"]: "seen", ids["MR"]: "heldout"}
    assert per_case["split"] == {ids["CT"]: "train", ids["MR"]: "val"}
    assert metrics["hidden_corr_real_seen"] == pytest.approx(per_case["hidden_corr"][ids["CT"]])
    assert metrics["interp_edge_r_real_heldout"] == pytest.approx(per_case["interp_edge_r"][ids["MR"]])
    assert metrics["real_scans_seen"] == 1 and metrics["real_scans_heldout"] == 1
    assert figure.stat().st_size > 5000
    # a model pretrained on every split has seen every scan: no held-out column at all
    everything, _ = real_scan_scores(model, (8, 8, 8), 0.75, 0.1, root, ids_in, None, tmp_path / "all")
    assert not any(k.endswith("_heldout") for k in everything) and everything["real_scans_seen"] == 2
    assert real_scan_scores(model, (8, 8, 8), 0.75, 0.1, root, ["not_cached"], "train", tmp_path / "n") == ({}, None)
