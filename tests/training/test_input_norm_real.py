"""The shipped CPU recipe on real scans of both scales (CT in [0, 1], z-scored MR), with and
without ``model.input_norm``, same seed and steps: normalising the encoder's input per crop
reconstructs the hidden patches of the real scans better (fixed crops, hidden-token r)."""

import shutil
from pathlib import Path

import numpy as np
import torch

from medmae.config.base import load_config
from medmae.config.schema import PreprocessConfig, PretrainConfig
from medmae.data.cache import open_case
from medmae.demo import DEMO_PRETRAIN
from medmae.heads.anomaly.model import load_model
from medmae.io.manifest import write_manifest
from medmae.io.scan import scan_folder
from medmae.preprocess.batch import preprocess_manifest
from medmae.training.engine import pretrain
from medmae.training.fixed_crops import fixed_crop_correlation

DATA = Path(__file__).resolve().parents[1] / "data"
STEPS = 1000


def real_r(run: Path, cache: Path) -> dict[str, float]:
    pm = load_model(run)
    model = pm.build(pm.crop)
    out = {}
    for path in sorted((cache / "cases").iterdir()):
        c = open_case(path)
        out[c.case_id] = fixed_crop_correlation(model, np.asarray(c.image, np.float32), np.asarray(c.map("body")) > 0,
                                                pm.ratio, pm.min_fraction)
    return out


def test_input_norm_learns_real_scans_faster(tmp_path, monkeypatch):
    real = tmp_path / "scans"
    real.mkdir()
    for name in ("ct_abdomen_3mm.nii.gz", "mr_abdomen_3mm.nii.gz", "brain1_t1c.nrrd"):
        shutil.copy(DATA / name, real / name)
    cases, bad = scan_folder(real, progress=False)
    assert sorted(c.modality for c in cases) == ["CT", "MR", "MR"] and not bad
    pcfg = load_config(PreprocessConfig, None, ["spacing=[2,2,2]", "priors.supervoxels=0"])
    report = preprocess_manifest(write_manifest(cases, tmp_path / "manifest.csv"), tmp_path / "cache", pcfg,
                                 workers=0, progress=False)
    assert len(report.done) == 3
    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    scores = {}
    try:
        for flag in ("false", "true"):
            cfg = load_config(PretrainConfig, None, [
                *DEMO_PRETRAIN, f"model.input_norm={flag}", f"data.cache_dir={tmp_path / 'cache'}",
                f"train.out_dir={tmp_path / flag}", f"train.steps={STEPS}", "data.priors=[body]", "data.workers=0",
                f"train.checkpoint_every={STEPS}", f"train.figure_every={STEPS}", "tracking.enabled=false"])
            pretrain(cfg)
            scores[flag] = real_r(tmp_path / flag, tmp_path / "cache")
    finally:
        torch.set_num_threads(before)
    # the heads rebuild the encoder with the normalisation it was trained with
    from medmae.export import load_encoder
    from medmae.export.files import export_encoder
    from medmae.heads.segmentation.model import build_segmenter

    export_encoder(tmp_path / "true" / "checkpoints" / "latest.pt", tmp_path / "export")
    encoder, _ = load_encoder(tmp_path / "export")
    assert encoder.input_norm and load_model(tmp_path / "true").build((32, 32, 32)).encoder.input_norm
    assert build_segmenter({"encoder": encoder.architecture(), "num_classes": 2, "feature_size": 8}).encoder.input_norm
    mean = {k: float(np.mean(list(v.values()))) for k, v in scores.items()}
    print("hidden-token r on real crops, without / with input_norm:", scores["false"], scores["true"], mean)
    assert mean["true"] > mean["false"] + 0.1, mean
