"""1 mm scans, a 3 mm model: thresholds are applied where they were calibrated (the model grid).

Linear resampling of a map onto a finer source grid smooths its upper tail, so the same
threshold flags fewer healthy voxels there: measured on the source grid the "1 % FPR" would
not be 1 %. ``evaluate`` measures the healthy FPR at each calibrated rate on the model grid,
scores exactly the binary map ``score`` wrote (binary.nii.gz is it on the source grid), brings
the lesion mask to the model grid by nearest neighbour, and marks calibration scans in-sample.
"""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.evaluate import evaluate_cases
from medmae.heads.anomaly.grid import GRID_FILE
from medmae.heads.anomaly.results import table
from medmae.heads.anomaly.run import calibrate_inputs, score_inputs
from medmae.heads.anomaly.scored import read_runs
from medmae.io.manifest import read_manifest, write_manifest
from medmae.preprocess.inverse import to_source_grid
from medmae.synth.write import finish, generate

SHAPE_1MM = (128, 160, 120)  # the phantom brain at 1 mm, little margin


def one_mm(out: Path, n: int, seed: int, lesions: bool) -> Path:
    cases = list(generate(out, "brain", n, seed=seed, lesions=lesions, shape=SHAPE_1MM, spacing=(1.0, 1.0, 1.0),
                          brain_mask=True, val_fraction=0.0))
    return finish(out, cases)


def test_one_mm_scans_are_thresholded_on_the_calibration_grid(pretrained, tmp_path):
    cfg = AnomalyConfig.model_validate({"evaluation": {"bootstrap": 10}, "calibration": {"min_component_mm3": 0}})
    healthy = read_manifest(one_mm(tmp_path / "healthy", 2, seed=51, lesions=False))
    calib = write_manifest(healthy[:1], tmp_path / "calib.csv")
    lesion = one_mm(tmp_path / "lesion", 1, seed=61, lesions=True)
    cal, _, res = calibrate_inputs([str(calib)], pretrained.run, cfg, out=tmp_path / "cal.json", progress=False)
    assert not res.bad and len(cal.inputs) == 1
    every = write_manifest(healthy, tmp_path / "all_healthy.csv")
    score_inputs([str(every)], pretrained.run, tmp_path / "hea", cfg, tmp_path / "cal.json", progress=False)
    score_inputs([str(lesion)], pretrained.run, tmp_path / "les", cfg, tmp_path / "cal.json", progress=False)
    cases, skipped, settings = read_runs([tmp_path / "les"], [tmp_path / "hea"])
    assert not skipped and [c.in_sample for c in cases] == [False, True, False]
    results = {r.name: r for r in evaluate_cases(cases, settings, cfg.evaluation)}
    model = results["model"]
    for rate, check in model.fpr_check.items():
        f = float(rate)
        # in-sample: the calibration scans themselves, on the grid the quantile was taken on
        assert check["in_sample"] == pytest.approx(f, rel=0.05), (rate, check)
        # held out: another healthy scan, same grid
        assert 0.4 * f <= check["held_out"] <= 2.5 * f, (rate, check)
        # the same thresholds on the linearly resampled 1 mm maps flag far fewer voxels
        on_source = np.concatenate([c.maps["model"][c.body] > cal.threshold("model", f)
                                    for c in cases if c.in_sample]).mean()
        print(f"rate {f:g}: model grid in-sample {check['in_sample']:.4f}, held out {check['held_out']:.4f}, "
              f"1 mm source grid in-sample {on_source:.4f}")
        assert on_source < 0.8 * f
    assert model.metrics["in_sample_cases"] == 1 and model.metrics["held_out_cases"] == 2
    assert model.metrics["in_sample_healthy_fpr"] == pytest.approx(0.01, rel=0.05)
    # held-out figures leave the calibration scan out
    held_healthy = next(c for c in cases if c.healthy and not c.in_sample)
    assert model.metrics["fp_ml_healthy"] == pytest.approx(held_healthy.grid.binary.sum() * 27 / 1000)
    assert np.isfinite(model.metrics["case_auroc"])
    md = table(list(results.values()), settings)
    assert "1 case(s) are calibration scans (IN-SAMPLE)" in md and "(model grid)" in md and "3 x 3 x 3 mm" in md
    for case in cases:
        grid = case.grid
        assert grid.spacing == (3.0, 3.0, 3.0) and case.body.shape == SHAPE_1MM
        meta = {"shape": list(grid.body.shape), "affine": grid.affine, "source_shape": list(SHAPE_1MM),
                "source_affine": nib.load(case.folder / "anomaly.nii.gz").affine}
        written = nib.load(case.folder / "binary.nii.gz").get_fdata() > 0
        assert np.array_equal(to_source_grid(grid.binary.astype(np.float32), meta, order=0) > 0.5, written)
        with np.load(case.folder / GRID_FILE) as z:
            assert np.array_equal(z["binary"] > 0, grid.binary)
    sick = next(c for c in cases if c.diseased)
    # the lesion on the model grid (nearest neighbour) keeps its volume
    assert sick.grid.lesion.sum() * 27 == pytest.approx(sick.lesion.sum(), rel=0.3)
    counts = model.detection["lesions"]
    assert counts >= 1 and 0 <= model.metrics["dice_at_fpr"] <= 1
