"""Pretraining loads only the prior maps its masking reads: on a real CT with its organ map,
random masking on a config that lists the map trains exactly as without it (same seed, same
crops, same losses), and anatomy masking still gets the organs."""

import logging
import shutil
from pathlib import Path

from training_helpers import tiny_config

from medmae.config.base import load_config
from medmae.preprocess.config import PreprocessConfig
from medmae.io.manifest import write_manifest
from medmae.io.scan import scan_folder
from medmae.masking.config import MaskingConfig
from medmae.preprocess.batch import preprocess_manifest
from medmae.training.engine import pretrain

DATA = Path(__file__).resolve().parents[1] / "data"


def test_maps_read_follow_the_strategies():
    assert MaskingConfig(strategy="random").maps_read() == []
    assert MaskingConfig(strategy="anatomy").maps_read() == ["anatomy"]
    mix = load_config(MaskingConfig, None, [
        "strategy=mixture", "mixture=[{strategy: random}, {strategy: anatomy, anatomy: {source: tissue}}, "
                            "{strategy: anatomy, weight: 0, anatomy: {source: supervoxels}}]"])
    assert mix.maps_read() == ["tissue"]  # an item never drawn reads nothing


def test_unread_priors_change_nothing_but_are_not_loaded(tmp_path, caplog):
    real = tmp_path / "scans"
    real.mkdir()
    shutil.copy(DATA / "ct_abdomen_3mm.nii.gz", real / "ct_abdomen_3mm.nii.gz")
    shutil.copy(DATA / "ct_abdomen_3mm_seg.nii.gz", real / "ct_abdomen_3mm_anatomy.nii.gz")
    cases, bad = scan_folder(real, progress=False)
    assert len(cases) == 1 and cases[0].anatomy and not bad
    report = preprocess_manifest(write_manifest(cases, tmp_path / "manifest.csv"), tmp_path / "cache",
                                 load_config(PreprocessConfig, None, ["spacing=[3,3,3]", "priors.supervoxels=0"]),
                                 workers=0, progress=False)
    assert len(report.done) == 1
    caplog.set_level(logging.INFO, logger="medmae.training.engine")
    common = ["train.steps=6", "train.warmup_steps=2", "tracking.enabled=false", "train.figure_every=6",
              "train.checkpoint_every=6", "data.split=null", "data.batch_size=2"]
    cache = tmp_path / "cache"
    both = pretrain(tiny_config(cache, tmp_path / "both", *common, "data.priors=[body,anatomy]"))
    assert "not read by random masking, not loaded" in caplog.text
    body = pretrain(tiny_config(cache, tmp_path / "body", *common, "data.priors=[body]"))
    assert len(both.losses) == 6 and both.losses == body.losses
    anatomy = pretrain(tiny_config(cache, tmp_path / "anat", *common, "data.priors=[body,anatomy]",
                                   "masking.strategy=anatomy"))
    assert len(anatomy.losses) == 6 and anatomy.losses != body.losses
