"""On the real scans (CT + MR abdomen, through ingestion and preprocessing), a short CPU
pretraining run brings the masked-token loss well below the predict-the-mean baseline,
and the hidden-token correlation from ~0 to above 0.4 (measured 0.02 -> 0.56)."""

import shutil
from pathlib import Path

import numpy as np

from medmae.config.base import load_config
from medmae.preprocess.config import PreprocessConfig
from medmae.io.manifest import write_manifest
from medmae.io.scan import scan_folder
from medmae.preprocess.batch import preprocess_manifest
from medmae.training.engine import pretrain
from training_helpers import tiny_config

DATA = Path(__file__).resolve().parents[1] / "data"
STEPS = 120


def test_learns_on_real_scans(tmp_path, monkeypatch):
    real = tmp_path / "scans"
    real.mkdir()
    for stem in ("ct_abdomen_3mm", "mr_abdomen_3mm"):
        for suffix in ("", "_seg"):
            shutil.copy(DATA / f"{stem}{suffix}.nii.gz", real / f"{stem}{suffix}.nii.gz")
    cases, bad = scan_folder(real, progress=False)
    assert [c.modality for c in cases] == ["CT", "MR"] and not bad
    manifest = write_manifest(cases, tmp_path / "manifest.csv")
    pcfg = load_config(PreprocessConfig, None, ["spacing=[3,3,3]", "priors.supervoxels=32"])
    report = preprocess_manifest(manifest, tmp_path / "cache", pcfg, workers=0, progress=False)
    assert len(report.done) == 2 and not report.bad

    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(tmp_path / "cache", tmp_path / "run", f"train.steps={STEPS}", "train.lr_per_256=0.25",
                      "train.warmup_steps=10", "train.min_lr=0", "train.log_every=20",
                      "train.figure_every=120", "train.checkpoint_every=120", "data.priors=[body]",
                      "model.norm_pix_loss=false", "tracking.enabled=false")
    result = pretrain(cfg)
    first, last = np.mean(result.losses[:10]), np.mean(result.losses[-20:])
    baseline = np.mean(result.mean_predictor[-20:])
    r_first, r_last = np.mean(result.correlations[:10]), np.mean(result.correlations[-20:])
    print(f"real scans: first {first:.3f} last {last:.3f} baseline {baseline:.3f}; r {r_first:.2f} -> {r_last:.2f}")
    assert last < 0.75 * baseline, (first, last, baseline)
    assert last < 0.75 * first
    # the hidden-token correlation: ~0 before learning (predict-the-mean), well above after
    assert abs(r_first) < 0.15 and r_last > 0.4, (r_first, r_last)
    assert [f.name for f in result.figures] == ["step_0000120.png"]
