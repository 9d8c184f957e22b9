"""GPU fine-tuning step benchmark: medmae's SegmentationViT vs MONAI's UNETR, ViT-B, 96^3, batch 8.

    python benchmarks/gpu_finetune.py               # a few minutes on an H100/H200
    python benchmarks/gpu_finetune.py --dry-run     # the same code on the CPU, tiny sizes

Side by side in one run, same data, batch and DiceCE loss, forward + loss + backward + AdamW:

    MONAI UNETR eager bf16       as users run it (torch.autocast(bfloat16)); the baseline
    MONAI UNETR compiled bf16    torch.compile of the same
    medmae p16 eager bf16        our encoder (SDPA attention) + the UNETR decoder from MONAI blocks
    medmae p16 compiled bf16
    medmae p8 eager bf16         patch 8 (1728 tokens at 96^3), which MONAI's UNETR cannot build

Prints crops/s, ms/step, peak GiB (torch.cuda.max_memory_allocated) and every ratio against
MONAI eager; the card's name heads the table. Target: >= 1.5x MONAI eager at patch 16.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seg_bench import SegCase, build_monai, build_ours, loss_fn, make_data, print_rows, step_forward, timed_steps  # noqa: E402

GPU = SegCase("b96p16", 96, 16, 8)
GPU_P8 = SegCase("b96p8", 96, 8, 8)
DRY = SegCase("dry32p16", 32, 16, 2, dim=48, depth=12, heads=4, feature=4)
DRY_P8 = SegCase("dry32p8", 32, 8, 2, dim=48, depth=12, heads=4, feature=4)


def run_variant(name: str, case: SegCase, build, compile_: bool, device, steps: int, warmup: int):
    """(case, name, sec/step, batch, peak GiB or saved-for-backward MiB on the CPU)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    model = build(case).to(device)
    net = torch.compile(model) if compile_ else model
    x, y = make_data(case, device)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = timed_steps(step_forward(net, x, y, loss_fn(), dtype), model.parameters(), steps, warmup, sync)
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    sec = sorted(times)[len(times) // 2]
    del model, net, x, y
    return (case.name, name, sec, case.batch, mem)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (checks the script)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per variant (median reported)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled variants")
    args = ap.parse_args()
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.dry_run:
        sys.exit("no CUDA device: run with --dry-run to check the script on the CPU")
    p16, p8 = (DRY, DRY_P8) if args.dry_run else (GPU, GPU_P8)
    steps, warmup = (2, 1) if args.dry_run else (args.steps, args.warmup)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run, fp32)"
    print(f"{where}; {p16.describe()}; DiceCE over 3 classes; bf16 autocast on the GPU")
    variants = [("MONAI UNETR eager", p16, build_monai, False), ("medmae p16 eager", p16, build_ours, False),
                ("medmae p8 eager", p8, build_ours, False)]
    if not args.no_compile and not args.dry_run:
        variants += [("MONAI UNETR compiled", p16, build_monai, True), ("medmae p16 compiled", p16, build_ours, True)]
    rows = []
    for name, case, build, comp in variants:
        rows.append(run_variant(name, case, build, comp, device, steps, warmup))
        print(f"  {name:<22} {1000 * rows[-1][2]:8.1f} ms/step", flush=True)
    print_rows(rows, "peak GiB" if device.type == "cuda" else "(no GPU mem)", "MONAI UNETR eager")


if __name__ == "__main__":
    main()
