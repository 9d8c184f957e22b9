"""The CPU demo, end to end: phantoms + real scans -> manifest -> cache -> tiny MAE -> MLflow.

Every step calls the same functions as the commands (`medmae synth`, `medmae data scan`,
`medmae preprocess`, `medmae pretrain`), with the embedded default configs plus the few
overrides that make it fit a laptop CPU in a few minutes (see ``DEMO_PRETRAIN``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from medmae.config.base import load_config, save_config
from medmae.preprocess.config import PreprocessConfig
from medmae.training.pretrain_config import PretrainConfig
from medmae.io.manifest import Case, write_manifest
from medmae.training.summary import Window, report_windows

log = logging.getLogger(__name__)

# The demo's departures from the embedded defaults (plain overrides, printed and saved).
DEMO_PREPROCESS = ["spacing=[2.0,2.0,2.0]", "priors.supervoxels=128"]
# The fastest CPU learner measured on the real scans (docs/training.md, "A CPU recipe"):
# a small ViT (48 wide, 2 blocks) on 32^3 crops of 8^3 patches, input and target normalised
# per crop, the decoder correcting an interpolation of the hidden voxels from the visible ones,
# 60% random masking; many cheap steps beat fewer large ones.
DEMO_PRETRAIN = [
    "model.size=custom", "model.embed_dim=48", "model.depth=2", "model.num_heads=3",
    "model.decoder_embed_dim=32", "model.decoder_depth=1", "model.decoder_num_heads=2",
    "model.patch_size=[8,8,8]", "model.norm_pix_loss=false", "model.norm_crop_loss=true", "model.input_norm=true",
    "model.interp_residual=true", "model.refine_width=8",
    "data.crop_size=[32,32,32]", "data.batch_size=4", "data.crops_per_volume=2", "data.workers=1",
    "data.priors=[body,anatomy,tissue,supervoxels]",
    "masking.strategy=random", "masking.ratio=0.6",
    "train.lr_per_256=0.25", "train.min_lr=1e-5", "train.warmup_steps=20",
    "train.checkpoint_every=1000", "train.figure_every=1000", "train.log_every=50",
    "tracking.experiment=medmae-demo",
]
DEMO_STEPS = 3000


def repo_real_scans() -> Path | None:
    """The real scans shipped with the repository (``tests/data``), when run from a clone."""
    p = Path(__file__).resolve().parent.parent / "tests" / "data"
    return p if p.is_dir() else None


@dataclass
class DemoResult:
    manifest: Path
    cache: Path
    run_dir: Path
    n_cases: int
    n_bad: int
    first_loss: float
    """Mean loss of the first progress line's steps (``first_steps``, inclusive)."""
    final_loss: float
    """Mean loss of the last progress line's steps (``final_steps``): what that line printed."""
    baseline: float
    """Predict-the-mean baseline over ``final_steps``."""
    correlation: float
    """Mean hidden-token correlation over ``final_steps`` (medmae.training.correlation)."""
    first_steps: tuple[int, int]
    final_steps: tuple[int, int]
    figures_dir: Path | None
    tracking_uri: str | None
    run_id: str | None
    experiment_id: str | None = None


def build_manifest(out: Path, n_phantoms: int, real_dir: Path | None, seed: int) -> tuple[Path, int, int]:
    """Phantoms (brain MR with lesions, abdominal CT) + every real scan under ``real_dir``.

    Returns (manifest path, cases written, unusable files skipped).
    """
    from medmae.io.scan import scan_folder
    from medmae.synth.write import finish, generate

    cases: list[Case] = []
    for kind in ("brain", "abdomen"):
        folder = out / "phantoms" / kind
        rows = list(generate(folder, kind, n_phantoms, seed=seed, lesions=True, val_fraction=0.25))
        finish(folder, rows)  # the phantom folder keeps its own manifest
        cases += [r.resolved(folder) for r in rows]
    n_bad = 0
    if real_dir is not None:
        real, bad = scan_folder(real_dir, val_fraction=0.0, seed=seed, progress=False)
        for path, problem in bad:
            log.warning("demo: skipping %s: %s", path, problem)
        n_bad = len(bad)
        cases += real
    return write_manifest(cases, out / "manifest.csv"), len(cases), n_bad


def run_demo(out: str | os.PathLike = "demo_out", steps: int = DEMO_STEPS, n_phantoms: int = 4,
             real_dir: str | os.PathLike | None = None, seed: int = 0,
             overrides: Sequence[str] = ()) -> DemoResult:
    """Run the whole demo into ``out``; ``overrides`` go to the pretraining config last."""
    from medmae.preprocess.batch import preprocess_manifest
    from medmae.training.engine import pretrain

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    real = Path(real_dir) if real_dir else repo_real_scans()

    log.info("demo 1/3: phantoms + real scans -> manifest")
    manifest, n_cases, n_bad = build_manifest(out, n_phantoms, real, seed)

    log.info("demo 2/3: preprocessing into the cache")
    pcfg = load_config(PreprocessConfig, None, DEMO_PREPROCESS)
    cache = out / "cache"
    report = preprocess_manifest(manifest, cache, pcfg)
    for line in report.lines():
        log.info("preprocess: %s", line)

    log.info("demo 3/3: pretraining a tiny MAE on the CPU")
    cfg = load_config(PretrainConfig, None, [
        *DEMO_PRETRAIN, f"data.cache_dir={cache}", f"train.out_dir={out / 'run'}",
        f"train.steps={steps}", f"train.seed={seed}", *overrides])
    save_config(cfg, out / "pretrain_config.yaml")
    result = pretrain(cfg)
    # the first and last progress lines' numbers (means over their log_every windows)
    windows = report_windows(result.losses, result.baselines, result.start_step, cfg.train.log_every,
                             cfg.train.steps)
    nan = Window(0, 0, float("nan"), float("nan"))
    first, last = (windows[0], windows[-1]) if windows else (nan, nan)
    figures = result.figures[-1].parent if result.figures else None
    return DemoResult(
        manifest=manifest, cache=cache, run_dir=result.out_dir,
        n_cases=n_cases, n_bad=n_bad + len(report.bad),
        first_loss=first.loss, final_loss=last.loss, baseline=last.baseline,
        correlation=_window_mean(result.correlations, result.start_step, last.first, last.last),
        first_steps=(first.first, first.last), final_steps=(last.first, last.last), figures_dir=figures,
        tracking_uri=result.tracking_uri, run_id=result.run_id, experiment_id=result.experiment_id)


def _window_mean(values: Sequence[float], start_step: int, first: int, last: int) -> float:
    """Mean of per-step ``values`` (step start_step + 1 first) over steps first..last (inclusive)."""
    picked = values[max(first - start_step - 1, 0):max(last - start_step, 0)]
    return sum(picked) / len(picked) if picked else float("nan")
