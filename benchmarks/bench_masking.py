"""Cost of each masking strategy per batch, against MAE's own random masking.

The peer is facebookresearch/mae ``random_masking`` (argsort of uniform noise, keep the
first ``len_keep``), written out below; it has no notion of invalid tokens, so it is run
with every token valid. medmae's strategies run on the same batch, with a body that makes
about a third of the tokens invalid. Times are per call (mask for the whole batch), median
of ``--repeats``; the adversarial line includes its generator update. Run:

    python benchmarks/bench_masking.py               # ~1 min on 2 CPU cores
    python benchmarks/bench_masking.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from medmae.masking.adversarial import AdversarialMasking
from medmae.masking.anatomy import AnatomyMasking
from medmae.masking.base import MaskContext
from medmae.masking.block import BlockMasking
from medmae.masking.loss_guided import LossGuidedMasking
from medmae.masking.mixture import MixtureMasking
from medmae.masking.random import RandomMasking

RATIO = 0.75


def mae_random_masking(n_batch: int, n_tokens: int, device) -> torch.Tensor:
    """facebookresearch/mae models_mae.py ``random_masking``, returning its binary mask."""
    len_keep = int(n_tokens * (1 - RATIO))
    noise = torch.rand(n_batch, n_tokens, device=device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(n_batch, n_tokens, device=device)
    mask[:, :len_keep] = 0
    return torch.gather(mask, dim=1, index=ids_restore)


def make_ctx(batch: int, crop: int, patch: int, device) -> MaskContext:
    """A batch with a spherical body (~2/3 of tokens valid) and box-shaped anatomy labels."""
    g = crop // patch
    axes = [torch.arange(g, device=device, dtype=torch.float32) for _ in range(3)]
    c = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    centre = (g - 1) / 2
    valid = ((c - centre).norm(dim=1) <= 0.52 * g).expand(batch, -1).clone()
    boxes = (c // max(1, g // 6)).long()
    labels = (boxes[:, 0] * 100 + boxes[:, 1] * 10 + boxes[:, 2]).expand(batch, -1).clone()
    return MaskContext(grid=(g, g, g), image=torch.randn(batch, 1, crop, crop, crop, device=device),
                       valid=valid, body=valid.float(), maps={"anatomy": labels, "supervoxels": labels},
                       token_scores=torch.rand(batch, g ** 3, device=device))


def timed(fn, repeats: int, device) -> float:
    """Median wall time of ``fn()`` in ms (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadiest on a shared box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for batch, crop, patch in [(4, 96, 16), (4, 96, 8), (2, 160, 8)]:
        ctx = make_ctx(batch, crop, patch, device)
        gen = torch.Generator(device=device).manual_seed(0)
        adversarial = AdversarialMasking(RATIO, 1, (patch,) * 3).to(device)
        loss = torch.rand(batch, ctx.num_tokens, device=device)

        def adversarial_step():
            adversarial.update(ctx, adversarial(ctx, 0, gen), loss, 0)

        strategies = {
            "random": RandomMasking(RATIO),
            "block (1-3)": BlockMasking(RATIO, 1, 3),
            "anatomy": AnatomyMasking(RATIO, "anatomy"),
            "anatomy mirror": AnatomyMasking(RATIO, "anatomy", symmetric="mirror"),
            "loss_guided": LossGuidedMasking(RATIO, 0.5, 0.5, 10),
            "mixture (3)": MixtureMasking(
                [RandomMasking(RATIO), BlockMasking(RATIO), AnatomyMasking(RATIO)], [1, 1, 1]),
        }
        peer = timed(lambda: mae_random_masking(batch, ctx.num_tokens, device), args.repeats, device)
        print(f"\nbatch {batch}, crop {crop}^3, patch {patch}: {ctx.num_tokens} tokens, "
              f"{int(ctx.valid[0].sum())} valid  [{device}]")
        print(f"  {'mae random_masking (peer)':34s} {peer:8.3f} ms   1.00x")
        for name, s in strategies.items():
            ms = timed(lambda: s(ctx, 0, gen), args.repeats, device)
            print(f"  {name:34s} {ms:8.3f} ms  {ms / peer:5.2f}x")
        ms = timed(adversarial_step, args.repeats, device)
        print(f"  {'adversarial (mask + update)':34s} {ms:8.3f} ms  {ms / peer:5.2f}x")


if __name__ == "__main__":
    main()
