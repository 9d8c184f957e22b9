"""Feeding the GPU: pretraining throughput with the loader included vs the model-only step rate.

One command on an H100/H200 (about 3 minutes: ~1 min writing the synthetic cache, then four
rows of warm-up + 100 timed steps each):

    python benchmarks/gpu_pipeline.py
    python benchmarks/gpu_pipeline.py --crop 96 --patch 16 --batch 256 --workers 14
    python benchmarks/gpu_pipeline.py --dry-run          # tiny, on the CPU, to check the script

Same config for every row (ViT-B MAE, bf16 autocast on CUDA, random masking 0.75, AdamW):
  model-only, all tokens   one batch already ON THE DEVICE, re-used every step, every token
                           valid (dense batches: fused flash attention) -- the flattering ceiling;
  model-only, foreground   the same batch with foreground-only masking as the shipped configs
                           use (``masking.foreground_only``): per-sample token counts differ,
                           batches are padded with a key mask and flash attention may not apply
                           -- the honest ceiling, and the reference of the rows below;
  cpu-loader               medmae's DataLoader over the memory-mapped cache (``--workers``
                           processes, pinned memory), batches copied to the device each step;
  device-resident          the cached volumes kept on the GPU, crops + augmentation cut there
                           (``data.device_resident: true``).
Each row runs the training engine's own step (``medmae.training.engine._train_step``: context,
mask, forward, backward, clip, AdamW), so rows differ only in where the batch comes from and
which tokens are in play. Each row first warms up for max(--warmup, workers x prefetch)
steps, so that the batches the workers had prefetched are used up and the timed window
measures the loader's steady production rate, then times --steps (>= 100) steps one by one.
Printed: volumes/s over the timed window, per-step p50/p90/p99 (a bursty loader shows in
p90/p99), the share of valid tokens, and the ratio to the foreground model-only row (the
headline; target >= 80 %).

DataLoader workers hand batches over through /dev/shm: the script says how much that needs
(workers x prefetch x batch bytes) and stops with a clear message when /dev/shm is smaller
(containers default to 64 MiB: ``docker run --shm-size=...``).

The cache is synthetic CT-like volumes of ``--volume`` voxels (default 272x272x160: a
512x512x300 CT at 0.8 mm resampled to 1.5 mm), float32, written with ``write_case``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medmae.config.base import load_config
from medmae.training.pretrain_config import PretrainConfig
from medmae.preprocess.cache import INDEX, write_case
from medmae.data.loader import build_loader
from medmae.masking.build import build_masking
from medmae.masking.context import build_context
from medmae.models import build_mae
from medmae.training.distributed import init_distributed
from medmae.training.engine import _train_step
from medmae.training.optim import build_optimizer
from medmae.training.precision import grad_scaler, resolve_precision
from medmae.training.schedule import WarmupCosine
from medmae.training.state import TrainParts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_common import batch_bytes, check_shm, format_percentiles  # noqa: E402

PREFETCH = 2  # medmae.data.loader.build_loader's prefetch_factor


def make_cache(root: Path, n: int, shape: tuple[int, int, int], seed: int = 0) -> Path:
    """``n`` smooth CT-like volumes with a body mask (an ellipsoid cylinder), as a cache."""
    rng = np.random.default_rng(seed)
    X, Y, Z = shape
    xx, yy = np.meshgrid(np.linspace(-1, 1, X), np.linspace(-1, 1, Y), indexing="ij")
    body2d = (xx / 0.85) ** 2 + (yy / 0.7) ** 2 < 1
    body = np.repeat(body2d[:, :, None], Z, axis=2).astype(np.uint8)
    rows = []
    for i in range(n):
        coarse = torch.from_numpy(rng.standard_normal((1, 1, X // 8, Y // 8, Z // 8)).astype(np.float32))
        smooth = torch.nn.functional.interpolate(coarse, size=shape, mode="trilinear")[0, 0].numpy()
        image = np.where(body, 0.5 + 0.15 * smooth, 0.0).astype(np.float32)
        image += rng.standard_normal(shape, dtype=np.float32) * 0.02
        write_case(root, f"case_{i:03d}", image[None], {"body": body}, {"affine": np.eye(4).tolist(), "modality": "CT"})
        rows.append({"case_id": f"case_{i:03d}", "split": "train"})
        print(f"\r  cache: {i + 1}/{n} volumes", end="", flush=True)
    print()
    with open(root / INDEX, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["case_id", "split"])
        w.writeheader()
        w.writerows(rows)
    return root


def build_parts(cfg: PretrainConfig, info, loader) -> TrainParts:
    model = build_mae(cfg.model, cfg.data.crop_size).to(info.device)
    strategy = build_masking(cfg.masking, patch_size=cfg.model.patch_size, in_channels=cfg.model.in_channels,
                             total_steps=cfg.train.steps).to(info.device)
    schedule = WarmupCosine(1e-4, cfg.train.steps, 0, 0.0)
    gen = torch.Generator(device=info.device)
    gen.manual_seed(0)
    return TrainParts(model=model, strategy=strategy, schedule=schedule,
                      optimizer=build_optimizer(model, 1e-4, 0.05, (0.9, 0.95)),
                      scaler=grad_scaler(resolve_precision(cfg.train.precision, info.device), info.device),
                      loader=loader, mask_rng=gen)


def rate(cfg: PretrainConfig, info, loader, warmup: int, steps: int) -> tuple[float, list[float]]:
    """(volumes per second over the timed window, per-step seconds) of the engine's step fed by ``loader``."""
    parts = build_parts(cfg, info, loader)
    precision = resolve_precision(cfg.train.precision, info.device)
    sync = torch.cuda.synchronize if info.device.type == "cuda" else (lambda: None)
    for s in range(warmup):
        _train_step(cfg, parts, parts.model, info, precision, s)
    sync()
    times = []
    t0 = time.perf_counter()
    for s in range(warmup, warmup + steps):
        t = time.perf_counter()
        _train_step(cfg, parts, parts.model, info, precision, s)
        sync()
        times.append(time.perf_counter() - t)
    return steps * cfg.data.batch_size / (time.perf_counter() - t0), times


def on_device(batch: dict, device: torch.device) -> dict:
    """The batch with every tensor moved to ``device`` once (the model-only rows copy nothing per step)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def valid_share(cfg: PretrainConfig, batch: dict, device: torch.device) -> float:
    """Mean share of tokens in play in ``batch`` under ``cfg.masking``."""
    m = cfg.masking
    ctx = build_context(batch, cfg.model.patch_size, m.foreground_only, m.foreground_min_fraction, device,
                        min_valid_tokens=m.foreground_min_tokens)
    return float(ctx.valid.float().mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--crops-per-volume", type=int, default=8)
    p.add_argument("--workers", type=int, default=14)
    p.add_argument("--cases", type=int, default=24)
    p.add_argument("--volume", type=int, nargs=3, default=(272, 272, 160))
    p.add_argument("--size", default="base")
    p.add_argument("--steps", type=int, default=100, help="timed steps per row (at least 100 unless --dry-run)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up steps (raised to workers x prefetch)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--cache", default=None, help="re-use (or create) the synthetic cache here")
    p.add_argument("--dry-run", action="store_true", help="tiny config on the CPU")
    a = p.parse_args(argv)
    if a.dry_run:
        a.crop, a.patch, a.batch, a.crops_per_volume, a.workers = 32, 8, 4, 2, 1
        a.cases, a.volume, a.size, a.steps, a.warmup = 3, (48, 48, 40), "tiny", 3, 1
    elif not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run on a CPU", file=sys.stderr)
        return 2
    elif a.steps < 100:
        p.error("--steps must be >= 100: fewer timed steps overstate a bursty loader")
    warmup = max(a.warmup, a.workers * PREFETCH)

    base = [f"data.crop_size=[{a.crop},{a.crop},{a.crop}]",
            f"data.batch_size={a.batch}", f"data.crops_per_volume={a.crops_per_volume}",
            f"data.workers={a.workers}", f"model.size={a.size}",
            f"model.patch_size=[{a.patch},{a.patch},{a.patch}]", "masking.strategy=random",
            "masking.foreground_only=true", f"train.steps={warmup + a.steps}", "train.warmup_steps=0",
            f"train.compile={a.compile}", "tracking.enabled=false"]
    info = init_distributed("auto")
    dev = torch.cuda.get_device_name() if info.device.type == "cuda" else "CPU"
    print(f"device: {dev}; ViT-{a.size} {a.crop}^3 patch {a.patch} batch {a.batch}, "
          f"{a.crops_per_volume} crops per volume read, {a.workers} loader workers; "
          f"{warmup} warm-up + {a.steps} timed steps per row")

    root = Path(a.cache) if a.cache else Path(tempfile.mkdtemp(prefix="medmae_pipe_"))
    try:
        return _run(a, base, info, root, warmup)
    finally:
        if not a.cache:
            shutil.rmtree(root, ignore_errors=True)


def _run(a, base: list[str], info, root: Path, warmup: int) -> int:
    if not (root / INDEX).exists():
        print(f"writing {a.cases} synthetic volumes of {tuple(a.volume)} to {root}")
        make_cache(root, a.cases, tuple(a.volume))
    base = [f"data.cache_dir={root}", *base]
    cfg = load_config(PretrainConfig, None, base)
    one = load_config(PretrainConfig, None, [*base, "data.workers=0"])
    fixed = next(iter(build_loader(one.data, seed=0)))  # in this process: no worker started yet
    print(check_shm(batch_bytes(fixed), a.workers, PREFETCH))
    fixed = on_device(fixed, info.device)
    dense = load_config(PretrainConfig, None, [*base, "masking.foreground_only=false"])

    rows = []
    rows.append(("model-only, all tokens", valid_share(dense, fixed, info.device),
                 *rate(dense, info, itertools.repeat(fixed), warmup, a.steps)))
    rows.append(("model-only, foreground", valid_share(cfg, fixed, info.device),
                 *rate(cfg, info, itertools.repeat(fixed), warmup, a.steps)))
    loader = build_loader(cfg.data, seed=0)
    rows.append(("cpu-loader", rows[-1][1], *rate(cfg, info, loader, warmup, a.steps)))
    loader.close()
    del loader
    cfg_res = load_config(PretrainConfig, None, [*base, "data.device_resident=true"])
    rows.append(("device-resident", rows[-1][1], *rate(cfg_res, info, build_loader(cfg_res.data, seed=0),
                                                          warmup, a.steps)))

    ceiling = rows[1][2]
    print(f"\n{'pipeline':<24} {'valid':>6} {'volumes/s':>10} {'vs fg model-only':>17}   per step")
    for name, share, r, times in rows:
        print(f"{name:<24} {share:>6.0%} {r:>10.1f} {r / ceiling:>16.0%}   {format_percentiles(times)}")
    print(f"\nheadline: cpu-loader at {rows[2][2] / ceiling:.0%} and device-resident at {rows[3][2] / ceiling:.0%} "
          f"of the foreground model-only rate (the shipped configs' masking); the all-tokens row is "
          f"{rows[0][2] / ceiling:.2f}x that rate (dense batches, no padding). 'valid' = share of tokens in play "
          f"in the first batch (the loader rows draw their own).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
