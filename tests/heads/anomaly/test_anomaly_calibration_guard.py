"""Calibration refuses scans of unknown sequence for a model of known sequence; few healthy scans warn (issue 20, item 7)."""

import json

import pytest
from pydantic import ValidationError

from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.report import write_report
from medmae.heads.anomaly.run import calibrate_inputs, score_inputs
from medmae.io.manifest import read_manifest, write_manifest


def _unnamed(manifest, out):
    """The same healthy scans with their sequence column emptied (as a file name without a hint)."""
    cases = read_manifest(manifest)[:2]
    for c in cases:
        c.sequence = ""
    return write_manifest(cases, out)


def test_unknown_sequence_is_refused_unless_named_and_few_healthy_scans_warn(pretrained, tmp_path):
    unnamed = _unnamed(pretrained.healthy_calib, tmp_path / "unnamed.csv")
    with pytest.raises(ValueError, match="no healthy scan could be scored"):
        calibrate_inputs([str(unnamed)], pretrained.run, AnomalyConfig(), out=tmp_path / "c0.json", progress=False)
    # the refusal names the scan and the cause (bad list), and a user can name the sequence
    cfg = AnomalyConfig.model_validate({"calibration": {"sequence": "T1", "min_healthy": 3}})
    cal, path, res = calibrate_inputs([str(unnamed)], pretrained.run, cfg, out=tmp_path / "c1.json", progress=False)
    assert cal.cases == 2 and not res.bad
    assert any("fewer than calibration.min_healthy=3" in w for w in res.warnings), res.warnings
    enough = AnomalyConfig.model_validate({"calibration": {"sequence": "t1", "min_healthy": 2}})
    _, _, res2 = calibrate_inputs([str(unnamed)], pretrained.run, enough, out=tmp_path / "c2.json", progress=False)
    assert not res2.warnings
    # the warning reaches score's settings.json and the report
    case = read_manifest(pretrained.healthy_test)[0].image[0]
    score_inputs([case], pretrained.run, tmp_path / "out", cfg, calibration=path, progress=False)
    settings = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert any("2 healthy scan(s), fewer than" in w for w in settings["warnings"]), settings["warnings"]
    html = write_report(tmp_path / "out", tmp_path / "report.html", viewer=False).read_text()
    assert "fewer than calibration.min_healthy=3" in html and "insufficient: calibrated on 2 healthy scans" in html


def test_the_refusal_names_the_scan(pretrained, tmp_path):
    from medmae.heads.anomaly.compat import require_sequence
    from medmae.heads.anomaly.run import open_model
    from medmae.io.errors import ScanError

    model, _ = open_model(pretrained.run)
    case = read_manifest(_unnamed(pretrained.healthy_calib, tmp_path / "u.csv"))[0]
    with pytest.raises(ScanError, match="sequence unknown.*calibrate --sequence") as e:
        require_sequence(case, model, None)
    assert e.value.path == case.image[0]
    require_sequence(case, model, "t1")
    assert case.sequence == "t1"


def test_a_sequence_keyword_is_validated():
    with pytest.raises(ValidationError, match="must be one of"):
        AnomalyConfig.model_validate({"calibration": {"sequence": "flare"}})
    assert AnomalyConfig.model_validate({"calibration": {"sequence": "FLAIR, t1"}}).calibration.sequence == "flair,t1"
