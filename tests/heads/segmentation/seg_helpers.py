"""Phantom caches, exports and tiny fine-tuning configs for the segmentation tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medmae.config.base import load_config
from medmae.heads.segmentation.config import FinetuneConfig
from medmae.preprocess.batch import preprocess_manifest
from medmae.preprocess.config import PreprocessConfig
from medmae.synth.write import finish, generate

DATA = Path(__file__).resolve().parents[2] / "data"
# abdomen phantoms on a coarse grid (the default extent, 6 mm voxels): fast, and the
# liver spans ~20 voxels, so a 32^3 crop sees organs and context
PHANTOM_GRID = dict(shape=(64, 48, 32), spacing=(6.0, 6.0, 7.0))
ORGANS = ["data.classes={liver: [5], spleen: [1], kidneys: [2, 3]}", "data.label_map=anatomy"]

TINY = [
    "data.crop_size=[32,32,32]", "data.crops_per_volume=2", "data.batch_size=2", "data.workers=0",
    "data.foreground_prob=1.0", "model.encoder.size=custom", "model.encoder.patch_size=[8,8,8]",
    "model.encoder.embed_dim=48", "model.encoder.depth=2", "model.encoder.num_heads=3", "model.feature_size=8",
    "train.warmup_steps=5", "train.decoder_only_steps=0", "train.peak_lr=2e-3", "train.log_every=5",
    "train.checkpoint_every=1000", "tracking.system_metrics=false", "val.overlap=0.0", "val.sw_batch_size=4",
]


def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


one_thread_fixture = pytest.fixture(autouse=True)(one_thread)


def phantom_cache(root: Path, n: int = 4, val: int = 1, spacing=(6.0, 6.0, 6.0), seed: int = 0) -> Path:
    """``n`` abdomen phantoms (the last ``val`` in split "val") preprocessed by the real
    pipeline into ``root/cache``; images and manifest under ``root/phantoms``."""
    out = root / "phantoms"
    cases = list(generate(out, "abdomen", n, seed=seed, val_fraction=val / n, **PHANTOM_GRID))
    finish(out, cases)
    cfg = PreprocessConfig(spacing=spacing, workers=0)
    cfg.priors.supervoxels = 0
    preprocess_manifest(out / "manifest.csv", root / "cache", cfg, progress=False)
    return root / "cache"


def tiny_finetune(cache: Path, out_dir: Path, *overrides: str) -> FinetuneConfig:
    return load_config(FinetuneConfig, None, [*TINY, *ORGANS, f"data.cache_dir={cache}",
                                              f"train.out_dir={out_dir}", *overrides])


def pretrained_export(cache: Path, root: Path, crop=(24, 24, 24), steps: int = 30) -> Path:
    """A tiny MAE pretrained ``steps`` steps on ``cache`` and exported to ``root/export``."""
    from medmae.training.pretrain_config import PretrainConfig
    from medmae.export.files import export_encoder
    from medmae.tracking.mlflow_run import Tracker
    from medmae.training.engine import pretrain

    cfg = load_config(PretrainConfig, None, [
        f"data.cache_dir={cache}", f"data.crop_size={list(crop)}", "data.workers=0", "data.batch_size=4",
        "model.size=custom", "model.patch_size=[8,8,8]", "model.embed_dim=48", "model.depth=2",
        "model.num_heads=3", "model.decoder_embed_dim=32", "model.decoder_depth=1", "model.decoder_num_heads=2",
        f"train.steps={steps}", "train.warmup_steps=5", "train.lr_per_256=0.5", f"train.out_dir={root / 'pretrain'}",
        "train.figure_every=1000", "train.checkpoint_every=1000", "tracking.enabled=false"])
    result = pretrain(cfg, Tracker())
    export_encoder(result.checkpoint, root / "export")
    return root / "export"
