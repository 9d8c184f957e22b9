"""GPU training-step benchmark: medmae's MAE vs MONAI's MaskedAutoEncoderViT, ViT-B, bf16.

One command, about 3 minutes on an H100/H200 (without --compile; 3 configs x 3 rows x
(10 warm-up + 100 timed steps), the slowest row MONAI at 128^3 patch 8):

    python benchmarks/gpu_mae.py
    python benchmarks/gpu_mae.py --compile --configs b96p16

Starts with a self-check (shapes of both models, our bf16 autocast path, our padded path
against per-sample runs, MONAI under autocast), then for each config times forward + loss
+ backward + AdamW, step by step (>= 100 timed steps after warm-up), on the same data, batch
and masking ratio (0.75), in three rows:
  ours     every token valid (dense batches: fused flash attention);
  ours-fg  foreground-only as the shipped configs train: each sample has its own number of
           valid tokens (50 % to 95 % of the crop, spread over the batch), so batches are
           padded with a key mask and flash attention may not apply -- the honest headline;
  monai    MONAI's MaskedAutoEncoderViT (every token; it has no notion of invalid tokens).
Printed per row: volumes/s (mean over the timed steps), per-step p50/p90/p99, peak GiB
(torch.cuda.max_memory_allocated), model FLOPs utilisation and the ratios to MONAI. MFU =
analytic FLOPs of the useful work (``medmae.models.flops``: encoder on the visible tokens,
decoder on the valid ones, x3 for the backward except the patch embedding's input, which
needs no gradient; the padding is not counted) / time / the card's dense bf16 peak, looked up
from its real name (``gpu_common.PEAK_BF16``: H100 SXM/PCIe/NVL, H200 SXM/NVL, A100, L40S,
...); an unknown card gets no MFU unless --peak-tflops is given.
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
from gpu_common import format_percentiles, peak_tflops  # noqa: E402

from medmae.models.flops import train_flops  # noqa: E402

GPU_CASES = {
    "b96p16": Case("b96p16", 96, 16, 256),
    "b128p16": Case("b128p16", 128, 16, 128),
    "b128p8": Case("b128p8", 128, 8, 16),
}
DRY_CASE = Case("dry32p8", 32, 8, 2, dim=48, depth=2, heads=4, dec_dim=48, dec_depth=1, dec_heads=4)
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


def foreground_valid(case: Case, device: torch.device, seed: int = 0) -> torch.Tensor:
    """(B, N) bool: sample b keeps a share of tokens spread from 50 % to 95 % over the batch
    (crops centred in the body with air or cut-off borders), in random places."""
    g = torch.Generator().manual_seed(seed)
    n = case.tokens
    shares = torch.linspace(0.5, 0.95, case.batch) if case.batch > 1 else torch.tensor([0.75])
    valid = torch.zeros(case.batch, n, dtype=torch.bool)
    for b, share in enumerate(shares.tolist()):
        valid[b, torch.randperm(n, generator=g)[: max(2, round(share * n))]] = True
    return valid.to(device)


def foreground_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, N) bool hiding round(RATIO * n_valid) random valid tokens per sample."""
    keys = torch.rand(valid.shape, device=valid.device).masked_fill(~valid, 2.0)
    ranks = keys.argsort(1).argsort(1)
    return ranks < torch.round(RATIO * valid.sum(1)).long()[:, None]


def useful_flops(case: Case, valid: torch.Tensor | None) -> float:
    """Training FLOPs of one step on the tokens in play (padding not counted)."""
    if valid is None:
        return flops_per_step(case)
    with torch.device("meta"):
        model = build_ours(case)
    n_valid = valid.sum(1).tolist()
    return sum(train_flops(model, v - round(RATIO * v), v) for v in n_valid)


def measure(case: Case, which: str, args, device: torch.device, monai_mode: str) -> tuple[list[float], float, float]:
    """(seconds of each timed step, peak GiB, useful FLOPs per step) for one row on one config."""
    torch.manual_seed(0)
    x = torch.randn(case.batch, 1, case.img, case.img, case.img, device=device)
    model = (build_monai(case) if which == "monai" else build_ours(case)).to(device)
    if which == "monai" and monai_mode == "cast":
        model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
    step_model = torch.compile(model) if args.compile else model
    valid = foreground_valid(case, device) if which == "ours-fg" else None
    if which == "ours":
        def forward():
            return ours_loss(step_model, x, torch.bfloat16)
    elif which == "ours-fg":
        def forward():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return step_model(x, foreground_mask(valid), valid).loss
    else:
        def forward():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=monai_mode == "autocast"):
                return monai_loss(step_model, x, case.patch)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = timed_steps(forward, model.parameters(), args.steps, args.warmup, sync)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return times, peak, useful_flops(case, valid)


def run_case(case: Case, args, device, monai_mode, peak) -> list[tuple]:
    rows = []
    for which in ("ours", "ours-fg", "monai"):
        try:
            times, mem, flops = measure(case, which, args, device, monai_mode)
        except torch.OutOfMemoryError:
            print(f"  {which:<7} out of memory at batch {case.batch}", flush=True)
            continue
        except Exception as e:  # e.g. a torch.compile failure: report it, go on with the next
            print(f"  {which:<7} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
            continue
        finally:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        sec = statistics.fmean(times)
        mfu = flops / sec / (peak * 1e12) if peak else None
        print(f"  {which:<7} {case.batch / sec:8.1f} vol/s  {format_percentiles(times)}  peak {mem:6.2f} GiB"
              + (f"  MFU {100 * mfu:5.1f}%" if mfu is not None else ""), flush=True)
        rows.append((case, which, sec, mem, mfu))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default=",".join(GPU_CASES), help=f"comma list of {', '.join(GPU_CASES)}")
    ap.add_argument("--steps", type=int, default=100, help="timed steps per row and config (>= 100 unless --dry-run)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="torch.compile both models")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="dense bf16 peak of the card in TFLOP/s (default: looked up from the device name)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny config: check the script without a GPU")
    args = ap.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_mae.py needs a CUDA GPU (use --dry-run to exercise it on the CPU)", file=sys.stderr)
        return 2
    if args.dry_run:
        args.steps, args.warmup = min(args.steps, 3), min(args.warmup, 1)
    elif args.steps < 100:
        ap.error("--steps must be >= 100 (per-step percentiles need them; short runs flatter)")
    device = torch.device("cpu" if args.dry_run else "cuda")
    cases = [DRY_CASE] if args.dry_run else [GPU_CASES[n] for n in args.configs.split(",")]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peak, peak_line = peak_tflops(device, args.peak_tflops)
    import monai

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    print(f"{name}; torch {torch.__version__}, MONAI {monai.__version__}; {peak_line}; masking ratio {RATIO}; "
          f"{args.steps} timed steps after {args.warmup} warm-up{'; torch.compile' if args.compile else ''}")
    monai_mode = self_check(device)
    rows = []
    for case in cases:
        print(case.describe(), flush=True)
        rows += run_case(case, args, device, monai_mode, peak)
    print_table(rows, "peak GiB")
    print(f"\nours: autocast(bfloat16) with fp32 weights/AdamW; MONAI: "
          + ("autocast(bfloat16)" if monai_mode == "autocast" else
             "cast whole to bf16 (it fails under autocast: index_put dtype mismatch), bf16 weights/AdamW")
          + ". vol/s from the mean step time. MFU = analytic FLOPs of the useful work (encoder on visible tokens, "
          "decoder on valid ones, x3 less the patch embedding's input gradient; padding not counted) / time / peak."
          "\nHeadline: the ours-fg row (foreground-only, padded batches with a key mask), as the shipped configs train.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
