"""Map kind and baseline sign follow the MR sequence; robust scaling of one-sided maps (issue 20, item 1)."""

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from medmae.heads.anomaly.calibration import Calibration, contrast_mismatch
from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.contrast import resolve
from medmae.heads.anomaly.maps import MAD_TO_SD, combined_map, intensity_baseline, robust_scale
from medmae.heads.inputs import cases_from_inputs
from medmae.io.manifest import Case

BRAIN = Path(__file__).resolve().parents[4] / "shared" / "data" / "brain"  # ../shared beside the repository


def _model(sequences=None, channels=1):
    return SimpleNamespace(data={"sequences": sequences} if sequences is not None else None, in_channels=channels)


def _case(sequence, modality="MR"):
    return Case(case_id="c", image=["x.nii.gz"], modality=modality, sequence=sequence)


@pytest.mark.parametrize("seq,kind,sign", [("flair", "brighter", "brighter"), ("t2", "brighter", "brighter"),
                                           ("T1", "squared", "absolute"), ("t1c", "squared", "absolute"),
                                           ("swi", "darker", "darker"), ("", "squared", "absolute")])
def test_auto_follows_the_models_sequence(seq, kind, sign):
    c = resolve(AnomalyConfig(), _model([seq] if seq else []), _case(""))
    assert (c.map, c.baseline_sign, c.source) == (kind, sign, "model" if seq else "none")


def test_auto_falls_back_to_the_case_and_explicit_settings_win():
    cfg = AnomalyConfig()
    assert cfg.score.map == "auto" and cfg.baseline.sign == "auto"
    c = resolve(cfg, _model(None), _case("flair"))
    assert (c.map, c.baseline_sign, c.source) == ("brighter", "brighter", "case")
    assert resolve(cfg, _model(None), _case("", "CT")).map == "squared"
    two = AnomalyConfig.model_validate({"score": {"map": "squared"}})
    assert (resolve(two, _model(["flair"]), _case("flair")).map,
            resolve(two, _model(["flair"]), _case("flair")).baseline_sign) == ("squared", "absolute")
    mixed = resolve(cfg, _model(["flair,t1"], channels=2), None)
    assert mixed.map == "squared" and mixed.baseline_sign == "brighter"  # baseline channel 0 is FLAIR
    on_t1 = AnomalyConfig.model_validate({"baseline": {"channel": 1}, "score": {"channel": 0}})
    c = resolve(on_t1, _model(["flair,t1"], channels=2), None)
    assert (c.map, c.baseline_sign) == ("brighter", "absolute")


def test_a_case_scored_with_another_contrast_than_the_calibration_is_named():
    cal = Calibration("m", "s", {}, {}, 1, 1, 0.0, {"contrast": {"map": "brighter", "baseline_sign": "brighter"}})
    assert contrast_mismatch(cal, {"map": "brighter", "baseline_sign": "brighter"}) is None
    why = contrast_mismatch(cal, {"map": "squared", "baseline_sign": "absolute"})
    assert why and "map squared (calibrated: brighter)" in why
    old = Calibration("m", "s", {}, {}, 1, 1, 0.0, {})
    assert contrast_mismatch(old, {"map": "squared", "baseline_sign": "absolute"}) is None


def test_robust_scale_of_a_half_rectified_map_is_the_residuals_scale():
    rng = np.random.default_rng(0)
    body = np.ones((40, 40, 40), bool)
    e = rng.normal(-0.05, 0.3, body.shape).astype(np.float32)  # slightly more than half below 0
    half = np.maximum(e, 0)
    assert np.median(half) == 0  # what made the old scale collapse
    two_sided = MAD_TO_SD * np.median(np.abs(e))
    assert robust_scale(half, body) == pytest.approx(two_sided, rel=0.15)
    assert robust_scale(np.abs(e), body) == pytest.approx(two_sided, rel=1e-6)
    assert robust_scale(np.zeros_like(half), body) == 1.0
    comb = combined_map(half, np.maximum(rng.normal(0, 1, body.shape), 0).astype(np.float32), body)
    assert comb.max() < 10, comb.max()


def test_real_flair_sequence_gives_the_bright_baseline_and_a_bounded_combined_map():
    """Glioma FLAIR (pseudo-label): sequence from the file name -> brighter; it beats |z|, and the
    combined map of two one-sided maps stays in typical-deviation units."""
    path = BRAIN / "glioma_TCGA-DU-7294" / "flair.nii.gz"
    if not path.is_file():
        pytest.skip("development brains not present")
    cases, bad = cases_from_inputs([str(path)])
    assert not bad and cases[0].sequence == "flair"
    c = resolve(AnomalyConfig(), _model(None), cases[0])
    assert (c.map, c.baseline_sign) == ("brighter", "brighter")
    img = np.asarray(nib.load(path).dataobj, np.float32)[None, ::2, ::2, ::2]
    lesion = (np.asarray(nib.load(path.parent / "tumour_pseudolabel.nii.gz").dataobj) > 0)[::2, ::2, ::2]
    body = img[0] > 0
    auto = intensity_baseline(img, body, 0, c.baseline_sign)
    both = intensity_baseline(img, body, 0, "absolute")
    ap_auto, ap_both = (average_precision_score(lesion[body], m[body]) for m in (auto, both))
    print(f"FLAIR baseline AUPRC brighter {ap_auto:.3f} vs |z| {ap_both:.3f}")
    assert roc_auc_score(lesion[body], auto[body]) > 0.95 and ap_auto > ap_both + 0.2
    comb = combined_map(auto, auto, body)
    assert comb.max() < 50 and np.isfinite(comb).all(), comb.max()
