"""Cost of each masking strategy per batch, against MAE's own random masking.

The peer is facebookresearch/mae ``random_masking`` (argsort of uniform noise, keep the
first ``len_keep``), written out below; it has no notion of invalid tokens, so it is run
with every token valid. medmae's strategies run on the same batch, with a body that makes
about a third of the tokens invalid. Times are per call (mask for the whole batch), median
of ``--repeats``; the adversarial line includes its generator update.

The second table is the cost of loss-guided SCORING, which needs the model: the exact scores
(two no-grad passes of the autoencoder per micro-batch) against the training step itself
(forward + backward + AdamW, same model and batch), and with ``score_every`` = n the cost per
step amortised over n steps (one exact refresh + one loss-predictor fit, n - 1 predictor
passes). Run:

    python benchmarks/bench_masking.py               # ~2 min on 2 CPU cores
    python benchmarks/bench_masking.py --scoring-only
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
from medmae.masking.loss_predictor import LossPredictor
from medmae.masking.mixture import MixtureMasking
from medmae.masking.random import RandomMasking
from medmae.masking.scoring import complementary_token_loss
from medmae.models import MaskedAutoencoder3D

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


def scoring_cost(device: torch.device, repeats: int) -> None:
    """Loss-guided scoring per step against the training step, refresh every 1 / n steps."""
    cpu = device.type == "cpu"
    crop, patch, batch = (64, 8, 2) if cpu else (128, 16, 16)
    dims = dict(embed_dim=192, depth=4, num_heads=3, decoder_embed_dim=96, decoder_depth=2, decoder_num_heads=3) \
        if cpu else dict(embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=384, decoder_depth=4,
                         decoder_num_heads=12)
    model = MaskedAutoencoder3D((crop,) * 3, (patch,) * 3, 1, **dims).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    predictor = LossPredictor(1, (patch,) * 3).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, 1, crop, crop, crop, device=device)
    valid = torch.ones(batch, model.num_tokens, dtype=torch.bool, device=device)
    mask = RandomMasking(RATIO)(MaskContext((crop // patch,) * 3, x, valid, valid.float()), 0, gen)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not cpu)

    def train_step():
        with amp:
            model(x, mask, valid).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def exact():
        with amp:
            return complementary_token_loss(model, x, valid, gen)

    scores = exact()
    step_ms = timed(train_step, repeats, device)
    exact_ms = timed(exact, repeats, device)
    fit_ms = timed(lambda: predictor.fit(x, scores, valid), repeats, device)
    pred_ms = timed(lambda: predictor.predict(x, valid), repeats, device)
    print(f"\nloss-guided scoring, batch {batch}, crop {crop}^3, patch {patch} ({model.num_tokens} tokens), "
          f"encoder {dims['embed_dim']}x{dims['depth']}  [{device}{'' if cpu else ', bf16'}]")
    print(f"  {'training step (peer)':34s} {step_ms:8.1f} ms   1.00x")
    print(f"  {'exact scores (2 no-grad passes)':34s} {exact_ms:8.1f} ms  {exact_ms / step_ms:5.2f}x")
    print(f"  {'loss predictor: predict':34s} {pred_ms:8.1f} ms  {pred_ms / step_ms:5.2f}x")
    print(f"  {'loss predictor: fit':34s} {fit_ms:8.1f} ms  {fit_ms / step_ms:5.2f}x")
    for n in (1, 4, 10):
        per_step = exact_ms if n == 1 else (exact_ms + fit_ms + (n - 1) * pred_ms) / n
        print(f"  {f'scoring per step, score_every={n}':34s} {per_step:8.1f} ms  {per_step / step_ms:5.2f}x"
              f"   (step + scoring: {(step_ms + per_step) / step_ms:4.2f}x the step)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadiest on a shared box)")
    ap.add_argument("--scoring-only", action="store_true", help="only the loss-guided scoring table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    scoring_cost(device, args.repeats)
    if args.scoring_only:
        return
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
