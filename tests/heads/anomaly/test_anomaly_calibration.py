"""Healthy-only calibration: requested FPR met on held-out healthy phantoms; bound to its model."""

import json

import nibabel as nib
import numpy as np
import pytest

from medmae.heads.anomaly.calibration import CalibrationError
from medmae.heads.anomaly.case import analyse_case
from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.run import calibrate_inputs, open_model, score_inputs
from medmae.io.manifest import read_manifest


def test_calibration_meets_the_fpr_on_held_out_healthy_scans(pretrained, tmp_path):
    cfg = AnomalyConfig()
    cal, path, result = calibrate_inputs([str(pretrained.healthy_calib)], pretrained.run, cfg, progress=False)
    assert not result.bad and cal.cases == 4 and path.parent == pretrained.run
    model, _ = open_model(pretrained.run)
    assert cal.model_digest == model.digest and path.name.startswith(f"anomaly_calibration_{model.digest}")
    held_out = [analyse_case(c, model, cfg) for c in read_manifest(pretrained.healthy_test)]
    for fpr in cfg.calibration.fprs:
        thr = cal.threshold("model", fpr)
        above = np.concatenate([cm.maps["model"][cm.body] > thr for cm in held_out]).mean()
        print(f"requested FPR {fpr:.2f}: held-out healthy {above:.4f}")
        assert 0.4 * fpr <= above <= 2.0 * fpr, (fpr, above)
    # score finds the calibration beside the model: binary maps and healthy percentiles
    out = score_inputs([str(pretrained.lesions)], pretrained.run, tmp_path / "out", cfg, progress=False)
    rec = out.records[0]
    folder = tmp_path / "out" / "cases" / rec["case_id"]
    binary = nib.load(folder / "binary.nii.gz")
    assert binary.shape == nib.load(folder / "anomaly.nii.gz").shape and rec["binary_fpr"] == 0.01
    assert set(np.unique(binary.get_fdata())) <= {0.0, 1.0}
    assert 0 <= rec["percentiles"]["model"] <= 100
    settings = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert settings["calibration"]["thresholds"]["model"]["0.01"] == cal.threshold("model", 0.01)


def test_a_calibration_of_another_model_or_setting_is_refused(pretrained, tmp_path):
    cfg = AnomalyConfig()
    _, path, _ = calibrate_inputs([str(pretrained.healthy_calib)], pretrained.run, cfg,
                                  out=tmp_path / "cal.json", progress=False)
    data = json.loads(path.read_text())
    data["model_digest"] = "0123456789abcdef"
    other = tmp_path / "other_model_cal.json"
    other.write_text(json.dumps(data))
    case = read_manifest(pretrained.healthy_test)[0].image[0]
    with pytest.raises(CalibrationError, match="other_model_cal.json.*model weights 0123456789abcdef"):
        score_inputs([case], pretrained.run, tmp_path / "out", cfg, calibration=other, progress=False)
    brighter = AnomalyConfig.model_validate({"score": {"map": "brighter"}})
    with pytest.raises(CalibrationError, match="cal.json.*other scoring settings"):
        score_inputs([case], pretrained.run, tmp_path / "out", brighter, calibration=path, progress=False)
