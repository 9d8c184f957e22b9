"""Adversarial masking on real brain MRI (nilearn's MNI152 T1), with the default settings.

A tiny MAE trains on random 32^3 crops while the generator learns with the defaults of
``masking.adversarial``. The policy must leave uniform (its normalised entropy falls) and
its masks must be harder for the autoencoder than random masks of the same budget: on
held-out crops, the same model's loss on generator masks exceeds its loss on random masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medmae.masking.adversarial import AdversarialMasking
from medmae.masking.base import MaskContext
from medmae.masking.build import build_masking
from medmae.masking.config import AdversarialConfig, MaskingConfig
from medmae.masking.policy import normalised_entropy
from medmae.masking.select import hidden_counts, topk_by_count, uniform
from medmae.models.mae import MaskedAutoencoder3D
from medmae.tokens import patchify

SIZE, PATCH, RATIO, STEPS = 32, 8, 0.75, 120


@pytest.fixture(scope="module")
def brain():
    datasets = pytest.importorskip("nilearn.datasets")
    v = datasets.load_mni152_template(resolution=2).get_fdata().astype(np.float32)
    body = v > 0.05
    v = (v - v[body].mean()) / v[body].std() * body
    return torch.from_numpy(v), torch.from_numpy(body)


def crops(brain, n: int, g: torch.Generator) -> MaskContext:
    """``n`` random crops with at least 30% brain; tokens with >= 10% brain are valid."""
    vol, body = brain
    xs, bs = [], []
    while len(xs) < n:
        lo = [int(torch.randint(0, s - SIZE + 1, (1,), generator=g)) for s in vol.shape]
        box = tuple(slice(a, a + SIZE) for a in lo)
        if body[box].float().mean() >= 0.3:
            xs.append(vol[box])
            bs.append(body[box])
    x, frac = torch.stack(xs)[:, None], patchify(torch.stack(bs)[:, None].float(), (PATCH,) * 3).mean(-1)
    return MaskContext(grid=(SIZE // PATCH,) * 3, image=x, valid=frac >= 0.1, body=frac)


def test_default_generator_leaves_uniform_and_hides_harder_tokens_on_mni152(brain):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = MaskingConfig(strategy="adversarial", ratio=RATIO)  # masking.adversarial: all defaults
    strategy = build_masking(cfg, patch_size=(PATCH,) * 3, in_channels=1, total_steps=STEPS)
    assert isinstance(strategy, AdversarialMasking) and strategy.max_logit == AdversarialConfig().max_logit
    model = MaskedAutoencoder3D(SIZE, PATCH, 1, 48, 2, 3, 32, 1, 2, norm_pix_loss=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(0)
    logged = []
    for step in range(STEPS):
        ctx = crops(brain, 8, g)
        mask = strategy(ctx, step, g)
        out = model(ctx.image, mask, ctx.valid)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        logged.append(strategy.update(ctx, mask, out.token_loss.detach(), step))
    assert {"adversarial/entropy", "adversarial/reward", "adversarial/reward_random",
            "adversarial/reward_gain"} <= set().union(*logged[-10:])

    model.eval()
    held = crops(brain, 32, torch.Generator().manual_seed(1))
    with torch.no_grad():
        entropy = float(normalised_entropy(strategy.logits(held.image), held.valid).mean())
        policy, random = [], []
        for _ in range(6):
            random_mask = topk_by_count(uniform(held.valid.shape, g, held.device), held.valid,
                                        hidden_counts(held.valid, RATIO))
            policy_mask = strategy(held, STEPS, g)
            policy.append(float(model(held.image, policy_mask, held.valid).loss))
            random.append(float(model(held.image, random_mask, held.valid).loss))
    gain = np.mean(policy) / np.mean(random)
    print(f"MNI152: entropy {entropy:.3f}, loss on generator / random masks {gain:.3f}")
    assert logged[0]["adversarial/entropy"] == pytest.approx(1.0, abs=1e-6)  # zero head: uniform start
    assert 0.3 < entropy < 0.99, entropy  # measurably not uniform, yet not collapsed (max_logit)
    assert gain > 1.02, gain  # the generator's masks are harder than random masks
