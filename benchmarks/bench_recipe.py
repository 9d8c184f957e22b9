"""The shipped CPU recipe's training step, end to end (loader, masking context, model, optimizer),
side by side with its peers in one run:

* **all priors** -- the engine before it loaded only the maps the masking reads: random masking
  on the demo config's four maps (body, anatomy, tissue, supervoxels) loads, crops, flips and
  reduces all of them;
* **body only** -- what the engine now loads for random masking;
* **+ interp_residual** -- the decoder corrects an interpolation of the hidden voxels from the
  visible ones (three small matrix products per batch);
* **+ voxel refiner** -- the shipped recipe: three 3^3 convolutions of width 8 over the whole
  crop after the decoder (``model.refine_width``), which continue boundaries into hidden patches.

Data: 2 brain + 2 abdomen phantoms preprocessed like the demo (2 mm, all priors). Each
configuration runs ``--steps`` steps of ``configs/pretrain_demo_cpu.yaml`` (batch 4 of 32³ crops,
one loader worker) in alternating rounds; the fastest round counts. Run:

    python benchmarks/bench_recipe.py              # about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from medmae.config.base import load_config
from medmae.preprocess.config import PreprocessConfig
from medmae.demo import demo_preprocess_overrides, demo_pretrain_config
from medmae.preprocess.batch import preprocess_manifest
from medmae.synth.write import finish, generate
from medmae.training import engine

CONFIGS = {
    "all priors (engine before)": ["model.interp_residual=false", "model.refine_width=0"],
    "body only": ["model.interp_residual=false", "model.refine_width=0"],
    "body only + interp_residual": ["model.refine_width=0"],
    "+ voxel refiner (shipped)": [],
}


def build_cache(root: Path) -> Path:
    rows = []
    for kind in ("brain", "abdomen"):
        out = root / "phantoms" / kind
        found = list(generate(out, kind, 2, seed=0))
        finish(out, found)
        rows += [r.resolved(out) for r in found]
    from medmae.io.manifest import write_manifest

    manifest = write_manifest(rows, root / "manifest.csv")
    pcfg = load_config(PreprocessConfig, None, demo_preprocess_overrides())
    preprocess_manifest(manifest, root / "cache", pcfg, workers=0, progress=False)
    return root / "cache"


def run(name: str, cache: Path, out: Path, steps: int) -> float:
    cfg = demo_pretrain_config([
        *CONFIGS[name], f"data.cache_dir={cache}", f"train.out_dir={out}", f"train.steps={steps}",
        f"train.checkpoint_every={steps}", f"train.figure_every={steps}", f"train.log_every={steps}",
        "train.resume=false", "tracking.enabled=false"])
    peer = mock.patch.object(engine, "_data_read", lambda c, info: c.data) if name.startswith("all") else None
    t = time.perf_counter()
    if peer:
        with peer:
            engine.pretrain(cfg)
    else:
        engine.pretrain(cfg)
    return (time.perf_counter() - t) / steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cache = build_cache(Path(tmp))
        best = {name: float("inf") for name in CONFIGS}
        for r in range(args.rounds):
            for name in CONFIGS:
                best[name] = min(best[name], run(name, cache, Path(tmp) / f"run{r}", args.steps))
                print(f"round {r + 1}: {name}: {best[name] * 1000:.1f} ms per step", flush=True)
    peer = best["all priors (engine before)"]
    print(f"\n{args.steps} steps, batch 4 of 32^3 crops, {args.threads} threads, fastest of {args.rounds} rounds")
    print(f"{'configuration':30s} {'ms / step':>10s} {'vs engine before':>17s}")
    for name, s in best.items():
        print(f"{name:30s} {s * 1000:10.1f} {s / peer:16.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
