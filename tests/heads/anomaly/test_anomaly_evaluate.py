"""`evaluate` on lesion phantoms + healthy phantoms: its voxel numbers equal scikit-learn on the
written NIfTI maps, its threshold numbers equal direct counts of the binary map ``score`` wrote
(binary.nii.gz is that map on the source grid); the MAE, pretrained on lesion-free phantoms only,
ranks lesion voxels above healthy ones (voxel AUROC >= 0.8), beside the intensity baseline."""

import nibabel as nib
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from medmae.heads.anomaly.grid import GRID_FILE
from medmae.preprocess.inverse import to_source_grid

from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.evaluate import evaluate_cases
from medmae.heads.anomaly.run import calibrate_inputs, score_inputs
from medmae.heads.anomaly.scored import read_runs


def case_affine(folder):
    return nib.load(folder / "anomaly.nii.gz").affine


def test_evaluation_on_lesion_phantoms_is_exact(pretrained, tmp_path):
    cfg = AnomalyConfig.model_validate({"evaluation": {"bootstrap": 20}})
    calibrate_inputs([str(pretrained.healthy_calib)], pretrained.run, cfg, out=tmp_path / "cal.json", progress=False)
    score_inputs([str(pretrained.lesions)], pretrained.run, tmp_path / "les", cfg, tmp_path / "cal.json", progress=False)
    score_inputs([str(pretrained.healthy_test)], pretrained.run, tmp_path / "hea", cfg, tmp_path / "cal.json",
                 progress=False)
    cases, skipped, settings = read_runs([tmp_path / "les"], [tmp_path / "hea"])
    assert len(cases) == 7 and not skipped and sum(c.healthy for c in cases) == 3
    results = {r.name: r for r in evaluate_cases(cases, settings, cfg.evaluation)}
    y, s, b = [], [], []
    tp = fp = fn = 0
    healthy_ml = []
    for run in ("les", "hea"):
        for folder in sorted((tmp_path / run / "cases").iterdir()):
            body = nib.load(folder / "body.nii.gz").get_fdata() > 0
            case = next(c for c in cases if c.folder == folder)
            y.append(case.lesion[body])
            s.append(nib.load(folder / "anomaly.nii.gz").get_fdata()[body])
            b.append(nib.load(folder / "baseline.nii.gz").get_fdata()[body])
            # the binary map evaluate scores is exactly binary.nii.gz: that file is it on the source grid
            with np.load(folder / GRID_FILE) as z:
                grid_binary, grid_body = z["binary"] > 0, z["body"] > 0
            meta = {"shape": list(grid_binary.shape), "affine": case.grid.affine, "source_affine": case_affine(folder),
                    "source_shape": list(body.shape)}
            written = nib.load(folder / "binary.nii.gz").get_fdata() > 0
            assert np.array_equal(to_source_grid(grid_binary.astype(np.float32), meta, order=0) > 0.5, written)
            assert np.array_equal(case.grid.binary, grid_binary) and case.grid.binary.any()
            lesion = case.grid.lesion & grid_body
            if run == "les":
                assert lesion.any()
                tp += (grid_binary & lesion).sum()
                fp += (grid_binary & ~lesion).sum()
                fn += (~grid_binary & lesion).sum()
            else:
                healthy_ml.append(grid_binary.sum() * case.grid.voxel_mm3 / 1000)
    y, s, b = np.concatenate(y), np.concatenate(s), np.concatenate(b)
    model, base = results["model"].metrics, results["baseline"].metrics
    assert model["voxel_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert model["voxel_auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-6)
    assert base["voxel_auroc"] == pytest.approx(roc_auc_score(y, b), abs=1e-6)
    # threshold metrics: exact counts of the binary maps score wrote, on the calibration grid
    assert model["dice_at_fpr"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-12)
    assert model["fp_ml_healthy"] == pytest.approx(np.mean(healthy_ml), abs=1e-12)
    # the binned estimator behind the intervals agrees with scikit-learn's point estimate
    for name in ("model", "baseline", "combined"):
        gap = results[name].binning_gap
        print(name, "binned - scikit-learn gap", gap)
        assert set(gap) == {"voxel_auroc", "voxel_auprc"} and max(gap.values()) < 0.001, (name, gap)
        assert results[name].ci_resamples["voxel_auroc"] == 20 and results[name].bootstrap == 20
    for name in ("model", "baseline", "combined"):
        m = results[name].metrics
        print(f"{name}: voxel AUROC {m['voxel_auroc']:.3f} AUPRC {m['voxel_auprc']:.4f} "
              f"oracle Dice {m['oracle_dice']:.3f} Dice@FPR {m['dice_at_fpr']:.3f} case AUROC {m['case_auroc']:.2f}")
    # unlabelled cases are skipped, unless declared healthy (a study's evaluation set)
    _, skipped, _ = read_runs([tmp_path / "hea"], [])
    assert len(skipped) == 3 and all("no lesion mask" in why for _, why in skipped)
    unlabelled, skipped, _ = read_runs([tmp_path / "hea"], [], unlabelled_healthy=True)
    assert not skipped and len(unlabelled) == 3 and all(c.healthy and not c.lesion.any() for c in unlabelled)
    # the effect a user wants: lesions the model never saw rank above healthy brain
    assert model["voxel_auroc"] >= 0.8, (model["voxel_auroc"], base["voxel_auroc"])


def test_runs_or_case_folders_scored_otherwise_are_not_mixed(tmp_path):
    import json
    import shutil

    from medmae.io.errors import ScanError

    def run(name: str, digest: str):
        folder = tmp_path / name / "cases" / "c1"
        folder.mkdir(parents=True)
        (tmp_path / name / "settings.json").write_text(json.dumps({"model": {"digest": "m1"},
                                                                   "settings_digest": digest}))
        (folder / "case.json").write_text(json.dumps({"case_id": "c1", "model_digest": "m1",
                                                      "settings_digest": digest}))
        return tmp_path / name

    a, b = run("a", "s1"), run("b", "s2")
    with pytest.raises(ScanError, match=r"b/settings.json: scored by model m1 with settings s2.*one model and "
                                        "setting at a time"):
        read_runs([a], [b])
    shutil.copytree(b / "cases" / "c1", a / "cases" / "c2")  # a case folder of run b inside run a
    _, skipped, _ = read_runs([a], [])
    reasons = dict(skipped)
    assert "a case folder of another run" in reasons[str(a / "cases" / "c2" / "case.json")]
    (tmp_path / "empty").mkdir()  # a run where no scan could be scored has no cases/ folder
    (tmp_path / "empty" / "settings.json").write_text((a / "settings.json").read_text())
    _, skipped, _ = read_runs([a, tmp_path / "empty"], [])
    assert dict(skipped)[str(tmp_path / "empty" / "cases")].startswith("no scored case")
