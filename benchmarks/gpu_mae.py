"""GPU training-step benchmark: medmae's MAE vs MONAI's MaskedAutoEncoderViT, ViT-B, bf16.

One command, about 2-4 minutes on an H100/H200 (without --compile):

    python benchmarks/gpu_mae.py
    python benchmarks/gpu_mae.py --compile --configs b96p16 --steps 20

Starts with a self-check (shapes of both models, our bf16 autocast path, our padded path
against per-sample runs, MONAI under autocast), then for each config times forward + loss
+ backward + AdamW for both models on the same data, batch and masking ratio (0.75) and
prints volumes/s, peak GiB (torch.cuda.max_memory_allocated), model FLOPs utilisation
(analytic FLOPs of our model, the same count used for MONAI) and the ratios ours/MONAI.
Ours runs under torch.autocast(bfloat16). MONAI's MAE fails under autocast(bfloat16)
(index_put dtype mismatch between its fp32 mask tokens and bf16 latents), so unless the
self-check finds it working it is cast whole to bf16 (``.to(torch.bfloat16)``, pure bf16
weights and AdamW state), which favours it on memory. ``--dry-run`` runs the same code on
the CPU with a tiny config (to check the script without a GPU).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mae import (  # noqa: E402  (shared harness)
    RATIO, Case, build_monai, build_ours, flops_per_step, monai_loss, ours_loss, print_table, random_mask, timed_steps,
)

GPU_CASES = {
    "b96p16": Case("b96p16", 96, 16, 256),
    "b128p16": Case("b128p16", 128, 16, 128),
    "b128p8": Case("b128p8", 128, 8, 16),
}
DRY_CASE = Case("dry32p8", 32, 8, 2, dim=48, depth=2, heads=4, dec_dim=48, dec_depth=1, dec_heads=4)
# dense bf16 tensor-core peaks (TFLOP/s), matched against torch.cuda.get_device_name in order
PEAK_BF16 = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200", 989.4), ("H100", 989.4), ("A100", 312.0))


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16 if k in name), None)


def self_check(device: torch.device) -> str:
    """Fail loudly if our model misbehaves here; return how MONAI will be run ("autocast" or "cast")."""
    torch.manual_seed(0)
    c = Case("check", 32, 16, 3, dim=48, depth=2, heads=4, dec_dim=48, dec_depth=1, dec_heads=4)
    ours, theirs = build_ours(c).to(device), build_monai(c).to(device)
    x = torch.randn(c.batch, 1, c.img, c.img, c.img, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = ours(x, random_mask(c.batch, c.tokens, device))
    out.loss.backward()
    pred, mask = theirs(x)
    assert out.pred.shape == pred.shape == (c.batch, c.tokens, 16**3), (out.pred.shape, pred.shape)
    assert tuple(mask.shape) == (c.batch, c.tokens) and bool((mask.sum(1) == round(RATIO * c.tokens)).all())
    assert torch.isfinite(out.loss), out.loss
    _check_padding(ours.float(), x, device)
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            theirs(x)[0].float().sum().backward()
        mode = "autocast"
    except RuntimeError as e:
        print(f"  MONAI MaskedAutoEncoderViT under autocast(bfloat16) fails: {str(e).splitlines()[0]}")
        mode = "cast"
    print(f"self-check OK on {device}: shapes match ({c.batch}, {c.tokens}, {16**3}); MONAI runs "
          + ("under autocast(bfloat16) like ours" if mode == "autocast" else "cast whole to bf16 (.to(torch.bfloat16))"))
    return mode


def _check_padding(model, x, device) -> None:
    """Samples with different valid counts in one batch = each sample alone (padded SDPA path)."""
    valid = torch.ones(x.shape[0], model.num_tokens, dtype=torch.bool, device=device)
    valid[0, 6:] = False
    valid[1, 7:] = False
    mask = torch.zeros_like(valid)
    mask[:, :4] = True  # hide 4 valid tokens per sample: 2, 3, 4 stay visible
    with torch.no_grad():
        batch = model(x, mask, valid)
        per = (batch.token_loss * mask).sum(1) / mask.sum(1)
        alone = torch.stack([model(x[i:i + 1], mask[i:i + 1], valid[i:i + 1]).loss for i in range(x.shape[0])])
    assert torch.allclose(per, alone, rtol=1e-3, atol=1e-4), (per, alone)


def measure(case: Case, which: str, args, device: torch.device, monai_mode: str) -> tuple[float, float]:
    """(median seconds per step, peak GiB) for one model on one config."""
    torch.manual_seed(0)
    x = torch.randn(case.batch, 1, case.img, case.img, case.img, device=device)
    model = (build_ours(case) if which == "ours" else build_monai(case)).to(device)
    if which == "monai" and monai_mode == "cast":
        model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
    step_model = torch.compile(model) if args.compile else model
    if which == "ours":
        def forward():
            return ours_loss(step_model, x, torch.bfloat16)
    else:
        def forward():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=monai_mode == "autocast"):
                return monai_loss(step_model, x, case.patch)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = timed_steps(forward, model.parameters(), args.steps, args.warmup, sync)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return statistics.median(times), peak


def run_case(case: Case, args, device, monai_mode, peak) -> list[tuple]:
    rows = []
    for which in ("ours", "monai"):
        try:
            sec, mem = measure(case, which, args, device, monai_mode)
        except torch.OutOfMemoryError:
            print(f"  {which:<6} out of memory at batch {case.batch}", flush=True)
            continue
        except Exception as e:  # e.g. a torch.compile failure: report it, go on with the next
            print(f"  {which:<6} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
            continue
        finally:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        mfu = flops_per_step(case) / sec / (peak * 1e12) if peak else None
        print(f"  {which:<6} {1000 * sec:8.1f} ms/step  {case.batch / sec:8.1f} vol/s  peak {mem:6.2f} GiB", flush=True)
        rows.append((case, which, sec, mem, mfu))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default=",".join(GPU_CASES), help=f"comma list of {', '.join(GPU_CASES)}")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per model and config (median reported)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="torch.compile both models")
    ap.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak of the card (auto for H100/H200/A100)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny config: check the script without a GPU")
    args = ap.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_mae.py needs a CUDA GPU (use --dry-run to exercise it on the CPU)", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    cases = [DRY_CASE] if args.dry_run else [GPU_CASES[n] for n in args.configs.split(",")]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peak = peak_tflops(device, args.peak_tflops)
    import monai

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    print(f"{name}; torch {torch.__version__}, MONAI {monai.__version__}; bf16 peak "
          f"{f'{peak:.0f} TFLOP/s' if peak else 'unknown (pass --peak-tflops for MFU)'}; masking ratio {RATIO}; "
          f"median of {args.steps} steps after {args.warmup} warm-up{'; torch.compile' if args.compile else ''}")
    monai_mode = self_check(device)
    rows = []
    for case in cases:
        print(case.describe(), flush=True)
        rows += run_case(case, args, device, monai_mode, peak)
    print_table(rows, "peak GiB")
    print(f"\nours: autocast(bfloat16) with fp32 weights/AdamW; MONAI: "
          + ("autocast(bfloat16)" if monai_mode == "autocast" else
             "cast whole to bf16 (it fails under autocast: index_put dtype mismatch), bf16 weights/AdamW")
          + ". MFU = analytic FLOPs of our model (encoder on visible tokens, decoder on all, x3) / time / peak.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
