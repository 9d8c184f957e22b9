"""Mismatches found before step 1, each a ConfigError naming the key and the fix."""

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from medmae.config.base import ConfigError, load_config
from medmae.preprocess.config import PreprocessConfig
from medmae.preprocess.cache import CASES
from medmae.io.manifest import write_manifest
from medmae.io.scan import scan_folder
from medmae.preprocess.batch import preprocess_manifest
from medmae.training import engine
from medmae.training.engine import pretrain
from medmae.studies.kinds import masked_at_random
from medmae.training.preflight import cases_without_masking_map, preflight
from training_helpers import make_phantom_cache, tiny_config

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_phantom_cache(tmp_path_factory.mktemp("cache"), n=3, shape=(40, 40, 40))


def _never_step(*args, **kwargs):
    raise AssertionError("a step ran although the config cannot work")


def _cfg(cache, out, *extra):
    return tiny_config(cache, out, "train.steps=2", "train.warmup_steps=1", "data.batch_size=2",
                       "tracking.enabled=false", *extra)


def test_resume_with_another_model_or_masking_is_refused_before_step_1(cache, tmp_path, monkeypatch):
    pretrain(_cfg(cache, tmp_path / "run", "train.steps=1", "masking.ratio=0.75"))
    monkeypatch.setattr(engine, "_train_step", _never_step)
    with pytest.raises(ConfigError) as err:
        pretrain(_cfg(cache, tmp_path / "run", "model.embed_dim=96", "masking.ratio=0.6"))
    msg = str(err.value)
    assert "model.embed_dim: checkpoint 48, config 96" in msg and "masking.ratio: checkpoint 0.75, config 0.6" in msg
    assert "train.resume=false" in msg and "train.out_dir" in msg
    # a changed step count or learning rate is a legitimate resume
    monkeypatch.undo()
    again = pretrain(_cfg(cache, tmp_path / "run", "train.steps=2", "masking.ratio=0.75", "train.lr_per_256=0.01"))
    assert again.start_step == 1 and again.steps == 2


def test_channel_count_mismatch_names_model_in_channels(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "_train_step", _never_step)
    with pytest.raises(ConfigError, match=r"model.in_channels=2 but the cached images .* have 1 channel .*"
                                          r"Fix: set model.in_channels=1"):
        pretrain(_cfg(cache, tmp_path / "a", "model.in_channels=2"))

    mixed = tmp_path / "mixed"
    shutil.copytree(cache, mixed)
    img = mixed / CASES / "phantom_001" / "image.npy"
    one = np.load(img)
    np.save(img, np.concatenate([one, one]))
    with pytest.raises(ConfigError, match=r"mixes channel counts \(2 cases with 1 .*1 cases with 2 "
                                          r"\(e.g. phantom_001\)\)"):
        pretrain(_cfg(mixed, tmp_path / "b"))


def test_anatomy_masking_needs_its_prior_loaded(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "_train_step", _never_step)
    with pytest.raises(ConfigError, match=r"data.priors=\['body'\] does not load it. Fix: add it, e.g. "
                                          r"data.priors=\[body, anatomy\]"):
        pretrain(_cfg(cache, tmp_path / "a", "masking.strategy=anatomy"))
    mixture = _cfg(cache, tmp_path / "b", "masking.strategy=mixture",
                   "masking.mixture=[{strategy: random}, {strategy: anatomy, anatomy: {source: supervoxels}}]")
    assert mixture.masking.maps_read() == ["supervoxels"]
    with pytest.raises(ConfigError, match="none of the 3 'train' cases .* has one"):
        preflight(_cfg(cache, tmp_path / "b", "masking.strategy=anatomy", "masking.anatomy.source=supervoxels",
                       "data.priors=[body,supervoxels]"), None)


def test_real_scans_count_cases_without_the_anatomy_map(tmp_path, caplog):
    """CT abdomen with its organ map, spine MR without one: anatomy masking warns that half
    the cases are masked at random, and trains."""
    real = tmp_path / "scans"
    real.mkdir()
    shutil.copy(DATA / "ct_abdomen_3mm.nii.gz", real / "ct_abdomen_3mm.nii.gz")
    shutil.copy(DATA / "ct_abdomen_3mm_seg.nii.gz", real / "ct_abdomen_3mm_anatomy.nii.gz")
    shutil.copy(DATA / "mr_abdomen_3mm.nii.gz", real / "mr_abdomen_3mm.nii.gz")
    cases, bad = scan_folder(real, progress=False)
    assert len(cases) == 2 and not bad
    manifest = write_manifest(cases, tmp_path / "manifest.csv")
    report = preprocess_manifest(manifest, tmp_path / "cache", load_config(PreprocessConfig, None, ["spacing=[4,4,4]"]),
                                 workers=0, progress=False)
    assert len(report.done) == 2
    caplog.set_level(logging.INFO, logger="medmae.training.engine")
    cfg = tiny_config(tmp_path / "cache", tmp_path / "run", "train.steps=2", "train.warmup_steps=1",
                      "data.batch_size=2", "tracking.enabled=false", "masking.strategy=anatomy",
                      "data.priors=[body,anatomy]", "data.split=null")
    result = pretrain(cfg)
    assert result.steps == 2
    warned = [r for r in caplog.records if "anatomy masking: 1 of 2" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING, [r.getMessage() for r in caplog.records]
    assert "mr_abdomen_3mm" in warned[0].getMessage() and "masked at random" in warned[0].getMessage()
    # the share a study's summary states (medmae.studies.summary.notes)
    (mr,) = [c.case_id for c in cases if "mr_abdomen" in c.case_id]
    assert cases_without_masking_map(cfg) == {"anatomy": [mr]}
    assert masked_at_random(cfg) == {"masked_at_random_share": 0.5}


def test_symmetric_masking_warns_about_cases_without_a_midline(tmp_path, caplog):
    """The real brain has a mid-sagittal plane, the abdomen CT none that scores: symmetric
    masking warns that 1 of 2 cases gets no mirror; random masking says nothing."""
    real = tmp_path / "scans"
    real.mkdir()
    for name in ("brain1_t1c.nrrd", "ct_abdomen_3mm.nii.gz"):
        shutil.copy(DATA / name, real / name)
    cases, bad = scan_folder(real, progress=False)
    report = preprocess_manifest(write_manifest(cases, tmp_path / "manifest.csv"), tmp_path / "cache",
                                 load_config(PreprocessConfig, None, ["spacing=[4,4,4]", "priors.supervoxels=0"]),
                                 workers=0, progress=False)
    assert len(report.done) == 2 and not bad
    caplog.set_level(logging.INFO, logger="medmae.training.engine")
    common = ["data.split=null", "data.priors=[body,tissue]", "masking.anatomy.source=tissue"]
    preflight(tiny_config(tmp_path / "cache", tmp_path / "r", "masking.strategy=random", *common), None)
    assert not [r for r in caplog.records if "no midline" in r.getMessage()]
    preflight(tiny_config(tmp_path / "cache", tmp_path / "s", "masking.strategy=anatomy",
                          "masking.anatomy.symmetric=mirror", *common), None)
    warned = [r for r in caplog.records if "no midline" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert "masking.anatomy.symmetric: 1 of 2" in warned[0].getMessage() and "ct_abdomen_3mm" in warned[0].getMessage()
