"""CPU fine-tuning step benchmark: medmae's SegmentationViT vs MONAI's UNETR, same encoder dims.

    python benchmarks/bench_finetune.py            # about a minute on one core

Both models get the same data, batch and DiceCE loss; a step is forward + loss + backward +
AdamW, fp32. Times are the fastest step of alternating rounds (a load spike on a shared CPU
then hits both); memory is the bytes autograd saves for backward (activations). Patch 16
(MONAI UNETR's only patch) side by side, plus ours at patch 8, which UNETR cannot build.
For the GPU (bf16, compiled, ViT-B at 96^3) see benchmarks/gpu_finetune.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seg_bench import (SegCase, activation_bytes, build_monai, build_ours, loss_fn, make_data,  # noqa: E402
                       print_rows, step_forward, timed_steps)

CASE = SegCase("c64p16", 64, 16, 2, dim=96, depth=12, heads=4, feature=8)
CASE_P8 = SegCase("c64p8", 64, 8, 2, dim=96, depth=12, heads=4, feature=8)


def measure(rounds: int, steps: int) -> list[tuple[str, str, float, int, float]]:
    torch.manual_seed(0)
    x, y = make_data(CASE, "cpu")
    loss = loss_fn()
    models = {"MONAI UNETR": build_monai(CASE), "medmae p16": build_ours(CASE), "medmae p8": build_ours(CASE_P8)}
    fwd = {k: step_forward(m, x, y, loss) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            times[k] += timed_steps(fwd[k], m.parameters(), steps, warmup=1)
    return [(CASE.name if k != "medmae p8" else CASE_P8.name, k, min(times[k]), CASE.batch,
             activation_bytes(fwd[k], models[k].parameters()) / 2**20) for k in models]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} thread(s), fp32; {CASE.describe()}")
    print_rows(measure(args.rounds, args.steps), "saved MiB", "MONAI UNETR")


if __name__ == "__main__":
    main()
