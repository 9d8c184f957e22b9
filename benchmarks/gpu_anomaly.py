"""GPU anomaly scoring of one brain: ViT-B MAE in bf16, medmae's one pass vs a pass per draw.

    python benchmarks/gpu_anomaly.py               # one H100/H200, about a minute
    python benchmarks/gpu_anomaly.py --dry-run     # the same code on the CPU, tiny model

Scores the MNI152 template at 1 mm (182 x 218 x 182, preprocessed to 1.5 mm) with K = 4
complementary mask draws, 96^3 windows of 16^3 patches (ViT-B encoder, 512-wide decoder,
random weights: the work is that of a trained model), Gaussian-blended sliding windows.
Preprocessing is timed separately (it runs on the CPU); scoring is timed after one warm-up,
with CUDA synchronised, best of ``--rounds``; peak GPU memory from
torch.cuda.max_memory_allocated. Target: scoring <= 1 s on one H100/H200.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_anomaly import demo_checkpoint, mni_scan  # noqa: E402

VIT_B = ["model.size=base", "model.patch_size=[16,16,16]", "data.crop_size=[96,96,96]"]
DRY = ["model.size=custom", "model.embed_dim=48", "model.depth=2", "model.num_heads=4",
       "model.decoder_embed_dim=32", "model.decoder_depth=1", "model.decoder_num_heads=2",
       "model.patch_size=[16,16,16]", "data.crop_size=[64,64,64]"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny model on the CPU (checks the script)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--sw-batch", type=int, default=4)
    args = ap.parse_args()
    from medmae.heads.anomaly.config import AnomalyConfig
    from medmae.export.pretrained import load_model
    from medmae.heads.anomaly.scorer import window_sums
    from medmae.heads.inputs import cases_from_inputs
    from medmae.preprocess.case import prepare_case

    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device (use --dry-run to check the script on the CPU)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = load_model(demo_checkpoint(tmp, DRY if args.dry_run else VIT_B))
        (case,), _ = cases_from_inputs([mni_scan(tmp)])
        t0 = time.perf_counter()
        image, maps, meta = prepare_case(case, model.preprocess, priors=False)
        prep = time.perf_counter() - t0
    floors = [p["floor"] for p in meta["normalisation"]]
    cfg = AnomalyConfig.model_validate({"score": {"draws": args.draws, "device": device.type,
                                                  "precision": "bf16", "sw_batch_size": args.sw_batch}}).score
    results = {}
    for name, only in (("medmae", None), ("naive", "each")):
        def run():
            if only is None:
                return window_sums(image, maps["body"], None, model, cfg, floors)
            return sum(window_sums(image, maps["body"], None, model, cfg, floors, only=(k,)) for k in range(args.draws))
        run()  # warm-up (kernels, allocator)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        best = float("inf")
        for _ in range(args.rounds):
            _sync(device)
            t = time.perf_counter()
            run()
            _sync(device)
            best = min(best, time.perf_counter() - t)
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
        results[name] = (best, peak)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    print(f"{card}: MNI152 1 mm -> {tuple(image.shape[1:])} at 1.5 mm, K={args.draws}, "
          f"{'tiny (dry run)' if args.dry_run else 'ViT-B'} bf16, windows {model.crop}, preprocessing {prep:.2f} s (CPU)")
    print(f"{'variant':8s} {'scoring s':>10s} {'peak GiB':>9s}")
    for name, (s, gib) in results.items():
        print(f"{name:8s} {s:10.3f} {gib:9.2f}")
    ours, naive = results["medmae"], results["naive"]
    print(f"naive / medmae time: {naive[0] / ours[0]:.2f}x; target <= 1 s: {'met' if ours[0] <= 1.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
