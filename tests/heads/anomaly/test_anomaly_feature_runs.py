"""The feature map as a fourth map (issue 20, item 4) through score -> calibrate -> evaluate -> report,
beside an unchanged reconstruction map; calibrations and runs with and without it are not mixed."""

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medmae.cli.main import main
from medmae.io.manifest import Case, read_manifest, write_manifest

DATA = Path(__file__).resolve().parents[2] / "data"
FOUR = ["model", "features", "baseline", "combined"]
LABEL = "MAE feature map (nearest bank token)"


@pytest.fixture(scope="module")
def runs(pretrained, tmp_path_factory):
    """Phantoms: calibration with a bank of the training scans, lesion and held-out healthy runs
    scored with it, and the lesion run scored without a bank (uncalibrated)."""
    root = tmp_path_factory.mktemp("feature_runs")
    bank = [f"score.feature_bank={pretrained.healthy_train}", "calibration.fprs=[0.05]"]
    model = str(pretrained.run)
    cal = root / "cal_bank.json"
    assert main(["anomaly", "calibrate", "--model", model, str(pretrained.healthy_calib), "--out", str(cal),
                 "--no-progress", *bank]) == 0
    for name, manifest in (("lesions", pretrained.lesions), ("healthy", pretrained.healthy_test)):
        assert main(["anomaly", "score", "--model", model, str(manifest), "--out", str(root / name),
                     "--calibration", str(cal), "--no-progress", *bank]) == 0
    assert main(["anomaly", "score", "--model", model, str(pretrained.lesions), "--out", str(root / "plain"),
                 "--no-progress", "calibration.fprs=[0.05]"]) == 0
    return root, bank


def test_a_feature_bank_gives_four_maps_scored_calibrated_evaluated_and_reported(runs):
    root, _ = runs
    settings = json.loads((root / "lesions" / "settings.json").read_text())
    assert list(settings["calibration"]["thresholds"]) == FOUR
    with open(root / "lesions" / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["case_id", "score", "percentile", "features_score", "baseline_score",
                             "combined_score", "has_label"]
    for row in rows:
        folder = root / "lesions" / "cases" / row["case_id"]
        rec = json.loads((folder / "case.json").read_text())
        assert float(row["features_score"]) == rec["scores"]["features"]
        assert set(rec["percentiles"]) == set(rec["false_alarm"]) == set(FOUR) and rec["in_feature_bank"] is False
        feat, anomaly = nib.load(folder / "features.nii.gz"), nib.load(folder / "anomaly.nii.gz")
        assert feat.shape == anomaly.shape and np.allclose(feat.affine, anomaly.affine)
        with np.load(folder / "grid.npz") as z, np.load(root / "plain" / "cases" / row["case_id"] / "grid.npz") as p:
            assert not np.allclose(z["map_features"], z["map_model"])
            assert "map_features" not in p.files
            for name in ("model", "baseline", "combined"):  # the reconstruction map, unchanged by the bank
                assert np.array_equal(z[f"map_{name}"], p[f"map_{name}"]), name
    assert main(["anomaly", "evaluate", str(root / "lesions"), "--healthy", str(root / "healthy"), "--out",
                 str(root / "eval"), "--no-mlflow", "evaluation.bootstrap=20"]) == 0
    result = json.loads((root / "eval" / "evaluation.json").read_text())
    assert list(result["maps"]) == FOUR
    feats, plain_model = result["maps"]["features"], result["maps"]["model"]
    for key in ("voxel_auroc", "voxel_auprc", "auprc_per_volume", "oracle_dice", "dice_at_fpr", "sensitivity",
                "fp_per_scan", "f1", "fp_ml_healthy", "healthy_fpr", "case_auroc"):
        assert feats["metrics"][key] is not None and np.isfinite(feats["metrics"][key]), key
    assert feats["detection"]["lesions"] >= 1 and set(feats["fpr_check"]) == {"0.05"}
    print({n: {k: round(m["metrics"][k], 3) for k in ("voxel_auroc", "voxel_auprc", "oracle_dice", "dice_at_fpr",
                                                        "healthy_fpr")} for n, m in result["maps"].items()})
    assert feats["metrics"]["voxel_auroc"] != plain_model["metrics"]["voxel_auroc"]
    assert LABEL in (root / "eval" / "evaluation.md").read_text(encoding="utf-8").splitlines()[0]
    html = (root / "eval" / "report.html").read_text(encoding="utf-8")
    results = html[html.index("<table id='results'>"):]
    assert [h for h in ("MAE map", LABEL, "intensity baseline", "MAE + baseline") if h in results[:600]] == [
        "MAE map", LABEL, "intensity baseline", "MAE + baseline"]
    worklist = html[html.index("<table id='worklist'>"):html.index("<h2>Evaluation")]
    assert f"<th>{LABEL} score</th>" in worklist


def test_calibrations_and_runs_with_and_without_features_are_not_mixed(runs, pretrained, tmp_path):
    from medmae.heads.anomaly.calibration import CalibrationError
    from medmae.heads.anomaly.config import AnomalyConfig
    from medmae.heads.anomaly.run import score_inputs
    from medmae.heads.anomaly.scored import read_runs
    from medmae.io.errors import ScanError

    root, bank = runs
    case = [str(pretrained.healthy_test)]
    # a bank's calibration for settings without the bank: the file and the setting named
    with pytest.raises(CalibrationError, match=r"cal_bank\.json: .*score\.feature_bank '.*' \(these settings: None\)"):
        score_inputs(case, pretrained.run, tmp_path / "out", AnomalyConfig(), calibration=root / "cal_bank.json",
                     progress=False)
    # a calibration without the features map (an older medmae's) for settings with the bank
    data = json.loads((root / "cal_bank.json").read_text())
    del data["thresholds"]["features"], data["case_scores"]["features"]
    old = tmp_path / "cal_old.json"
    old.write_text(json.dumps(data))
    cfg = AnomalyConfig.model_validate({"score": {"feature_bank": str(pretrained.healthy_train)},
                                        "calibration": {"fprs": [0.05]}})
    with pytest.raises(CalibrationError, match=r"cal_old\.json: has thresholds for the maps baseline, combined, "
                                               r"model, but these settings make model, features"):
        score_inputs(case, pretrained.run, tmp_path / "out", cfg, calibration=old, progress=False)
    # a run whose settings.json records a calibration without the features map
    run = tmp_path / "run"
    shutil.copytree(root / "lesions", run)
    settings = json.loads((run / "settings.json").read_text())
    del settings["calibration"]["thresholds"]["features"]
    (run / "settings.json").write_text(json.dumps(settings))
    with pytest.raises(ScanError, match=r"run/settings\.json: its calibration has thresholds for the maps baseline, "
                                        r"combined, model, but these settings make model, features"):
        read_runs([run], [])
    assert main(["anomaly", "evaluate", str(run), "--out", str(tmp_path / "eval"), "--no-mlflow"]) == 2
    # a case folder without its features map: skipped, grid.npz named
    first = sorted((root / "lesions" / "cases").iterdir())[0].name
    with np.load(root / "lesions" / "cases" / first / "grid.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "map_features"}
    run2 = tmp_path / "run2"
    shutil.copytree(root / "lesions", run2)
    np.savez_compressed(run2 / "cases" / first / "grid.npz", **arrays)
    cases, skipped, _ = read_runs([run2], [])
    assert first not in {c.case_id for c in cases} and len(cases) >= 1
    (where, why), = skipped
    assert where.endswith(f"{first}/grid.npz") and why.startswith("holds no features map"), (where, why)


def test_bank_scans_scored_or_calibrated_are_flagged_in_sample(runs, pretrained, tmp_path):
    """A scan of the bank itself: case.json in_feature_bank, a warning in settings.json (the
    report shows it), in calibrate's warnings and in the evaluation's notes."""
    from medmae.heads.anomaly.config import AnomalyConfig
    from medmae.heads.anomaly.evaluate import evaluate_cases
    from medmae.heads.anomaly.results import write_results
    from medmae.heads.anomaly.run import calibrate_inputs, score_inputs
    from medmae.heads.anomaly.scored import read_runs

    root, _ = runs
    banked = read_manifest(pretrained.healthy_train)[0]
    cfg = AnomalyConfig.model_validate({"score": {"feature_bank": str(pretrained.healthy_train)},
                                        "calibration": {"fprs": [0.05]}, "evaluation": {"bootstrap": 0}})
    one = str(write_manifest([banked], tmp_path / "banked.csv"))
    res = score_inputs([one], pretrained.run, tmp_path / "banked", cfg, progress=False)
    (rec,) = res.records
    assert rec["in_feature_bank"] is True
    warning = f"1 scored scan(s) are among score.feature_bank's scans ({rec['case_id']})"
    assert any(w.startswith(warning) for w in json.loads((tmp_path / "banked" / "settings.json").read_text())["warnings"])
    _, _, cal = calibrate_inputs([one], pretrained.run, cfg, tmp_path / "cal.json", progress=False)
    assert any(w.startswith("1 calibration scan(s) are among score.feature_bank's") for w in cal.warnings)
    cases, skipped, settings = read_runs([root / "lesions"], [tmp_path / "banked"])
    assert not skipped and [c.in_feature_bank for c in cases].count(True) == 1
    data = write_results(evaluate_cases(cases, settings, cfg.evaluation), settings, len(cases), skipped, tmp_path)
    assert any(n.startswith(f"1 case(s) are feature-bank scans ({rec['case_id']})") for n in data["notes"])


def test_real_tumour_scan_gets_a_calibrated_feature_map(pretrained, tmp_path, monkeypatch):
    """brain1 (real T1c, tumour mask) scored with a bank of the model's training scans and a
    calibration on the MNI152 template: features.nii.gz on the scan's own grid, calibrated."""
    from nilearn.datasets import load_mni152_template

    from medmae.io.read import read_volume

    monkeypatch.chdir(tmp_path)
    mni = tmp_path / "mni152_t1.nii.gz"
    nib.save(load_mni152_template(resolution=2), mni)
    tumour = write_manifest([Case("brain1", [str(DATA / "brain1_t1c.nrrd")], "MR", sequence="t1c",
                                  label=str(DATA / "brain1_tumour.nrrd"))], tmp_path / "tumour.csv")
    over = ["score.check_sequence=false", "score.max_spacing_ratio=3", "calibration.fprs=[0.05]",
            f"score.feature_bank={pretrained.healthy_train}", "score.normalise=edge"]
    run = str(pretrained.run)
    assert main(["anomaly", "calibrate", "--model", run, str(mni), "--out", "cal.json", "--no-progress", *over]) == 0
    cal = json.loads((tmp_path / "cal.json").read_text())
    assert list(cal["thresholds"]) == FOUR and cal["thresholds"]["features"]["0.05"] > 0
    assert main(["anomaly", "score", "--model", run, str(tumour), "--out", "scores", "--calibration", "cal.json",
                 "--no-progress", *over]) == 0
    ref = read_volume(DATA / "brain1_t1c.nrrd")
    folder = tmp_path / "scores" / "cases" / "brain1"
    feat = nib.load(folder / "features.nii.gz")
    assert feat.shape == ref.array.shape and np.allclose(feat.affine, ref.affine, atol=1e-3)
    values = np.asarray(feat.dataobj)
    assert values.max() > 0 and values.min() >= 0
    rec = json.loads((folder / "case.json").read_text())
    assert 0 <= rec["percentiles"]["features"] <= 100 and set(rec["false_alarm"]["features"]) == {
        "rim", "csf", "rim_or_csf"}
    assert main(["anomaly", "evaluate", "scores", "--out", "eval", "--no-mlflow", "evaluation.bootstrap=0"]) == 0
    maps = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["maps"]
    assert list(maps) == FOUR and maps["features"]["metrics"]["threshold"] == cal["thresholds"]["features"]["0.05"]
    print("brain1:", {n: {k: round(m["metrics"][k], 3) for k in ("voxel_auroc", "voxel_auprc", "oracle_dice")}
                      for n, m in maps.items()})
    assert 0 <= maps["features"]["metrics"]["voxel_auroc"] <= 1
