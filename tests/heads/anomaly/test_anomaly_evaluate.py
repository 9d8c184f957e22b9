"""`evaluate` on lesion phantoms + healthy phantoms: its numbers equal scikit-learn / direct counts
on the written NIfTI maps; the MAE, pretrained on lesion-free phantoms only, ranks lesion voxels
above healthy ones (voxel AUROC >= 0.8), reported beside the intensity baseline (printed)."""

import nibabel as nib
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.evaluate import evaluate_cases
from medmae.heads.anomaly.run import calibrate_inputs, score_inputs
from medmae.heads.anomaly.scored import read_runs


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
            pred = nib.load(folder / "binary.nii.gz").get_fdata() > 0
            if run == "les":
                tp += (pred & case.lesion).sum()
                fp += (pred & ~case.lesion).sum()
                fn += (~pred & case.lesion).sum()
            else:
                healthy_ml.append(pred.sum() * case.voxel_mm3 / 1000)
    y, s, b = np.concatenate(y), np.concatenate(s), np.concatenate(b)
    model, base = results["model"].metrics, results["baseline"].metrics
    assert model["voxel_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert model["voxel_auprc"] == pytest.approx(average_precision_score(y, s), abs=1e-6)
    assert base["voxel_auroc"] == pytest.approx(roc_auc_score(y, b), abs=1e-6)
    # the written binary maps (nearest-neighbour on the source grid) agree with evaluate's own thresholding
    assert model["dice_at_fpr"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=0.05)
    assert model["fp_ml_healthy"] == pytest.approx(np.mean(healthy_ml), rel=0.2, abs=1.0)
    assert model["oracle_dice"] >= model["dice_at_fpr"]
    for name in ("model", "baseline", "combined"):
        m = results[name].metrics
        print(f"{name}: voxel AUROC {m['voxel_auroc']:.3f} AUPRC {m['voxel_auprc']:.4f} "
              f"oracle Dice {m['oracle_dice']:.3f} Dice@FPR {m['dice_at_fpr']:.3f} case AUROC {m['case_auroc']:.2f}")
    # the effect a user wants: lesions the model never saw rank above healthy brain
    assert model["voxel_auroc"] >= 0.8, (model["voxel_auroc"], base["voxel_auroc"])
