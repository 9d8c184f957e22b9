"""Adversarial masking: Plackett-Luce policy, learning on a toy problem, exact resume, DDP."""

from __future__ import annotations

import copy
import io
import itertools
import math
from contextlib import contextmanager

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from masking_helpers import grid_coords, seeded

from medmae.masking.adversarial import AdversarialMasking, _Draw
from medmae.masking.base import MaskContext
from medmae.masking.mask_generator import MaskGenerator, stage_strides
from medmae.masking.policy import normalised_entropy, plackett_luce_log_prob, sample_ranks


@contextmanager
def one_thread():
    """Tiny convolutions run fastest (and steadiest on a shared CI box) on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def toy_batch(b: int, g: torch.Generator):
    """4x4x4 tokens of 2^3 voxels; per sample a random 2x2x2-token box is bright in the image
    and is where the 'autoencoder' fails: token loss 1 there, 0.1 elsewhere."""
    corner = torch.randint(0, 3, (b, 3), generator=g)
    c = grid_coords((4, 4, 4))
    region = ((c[None] >= corner[:, None]) & (c[None] < corner[:, None] + 2)).all(-1)  # B N
    bright = region.view(b, 1, 4, 1, 4, 1, 4, 1).expand(b, 1, 4, 2, 4, 2, 4, 2).reshape(b, 1, 8, 8, 8)
    image = torch.randn(b, 1, 8, 8, 8, generator=g) + 3.0 * bright
    valid = torch.ones(b, 64, dtype=torch.bool)
    loss = torch.where(region, 1.0, 0.1) + 0.05 * torch.rand(b, 64, generator=g)
    return MaskContext(grid=(4, 4, 4), image=image, valid=valid, body=valid.float()), region, loss


def make_strategy(**kw) -> AdversarialMasking:
    torch.manual_seed(0)
    args = dict(width=8, depth=1, lr=1e-2, entropy_weight=0.01)
    args.update(kw)
    return AdversarialMasking(0.25, 1, (2, 2, 2), **args)


def train(strategy, g, steps, start=0, b=8):
    for step in range(start, start + steps):
        ctx, _, loss = toy_batch(b, g)
        mask = strategy(ctx, step, g)
        strategy.update(ctx, mask, loss, step)


def test_stage_strides_multiply_to_the_patch():
    assert stage_strides((16, 16, 8)) == [(2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 1)]
    assert stage_strides((12, 4, 1)) == [(2, 2, 1), (2, 2, 1), (3, 1, 1)]
    net = MaskGenerator(2, (4, 4, 2), width=4, depth=2)
    out = net(torch.randn(3, 2, 8, 12, 6))
    assert out.shape == (3, 2 * 3 * 3) and torch.equal(out, torch.zeros_like(out))  # zero head: uniform policy


def test_plackett_luce_log_prob_matches_sequential_softmax():
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.5, 0.0, 1.0]], requires_grad=True)
    valid = torch.tensor([[True, True, True, False, True, True]])
    ranks = torch.tensor([[1, 3, 0, 5, 4, 2]])  # drawn order: token 2, 0, 5, then 1, 4
    got = plackett_luce_log_prob(logits, ranks, valid, torch.tensor([3]))
    value = float(got.detach())
    remaining, total = [0, 1, 2, 4, 5], 0.0
    for t in (2, 0, 5):
        total += float(logits.detach()[0, t] - torch.logsumexp(logits.detach()[0, remaining], 0))
        remaining.remove(t)
    assert value == pytest.approx(total / 3, abs=1e-6)
    got.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 3] == 0


def test_gumbel_top_k_draws_follow_the_policy():
    """First drawn token ~ softmax; the probability of a whole 2-set matches Plackett-Luce."""
    logits = torch.tensor([1.0, 0.0, -1.0, 0.5])
    b = 20000
    ranks = sample_ranks(logits.expand(b, -1), torch.ones(b, 4, dtype=torch.bool), seeded(0))
    first = torch.bincount(ranks.argmin(1), minlength=4).double() / b
    assert torch.allclose(first, torch.softmax(logits.double(), 0), atol=0.015)
    p = torch.softmax(logits.double(), 0)
    pair = sum(float(p[i] * p[j] / (1 - p[i])) for i, j in itertools.permutations((0, 3)))
    assert float(((ranks[:, 0] < 2) & (ranks[:, 3] < 2)).double().mean()) == pytest.approx(pair, abs=0.015)


def test_entropy_is_normalised():
    valid = torch.tensor([[True, True, True, True, False]])
    assert float(normalised_entropy(torch.zeros(1, 5), valid)) == pytest.approx(1.0)
    assert float(normalised_entropy(torch.tensor([[50.0, 0, 0, 0, 0]]), valid)) < 0.01


def test_generator_learns_to_hide_the_high_loss_region():
    with one_thread():
        g = seeded(0)
        strategy = make_strategy()
        ctx, region, _ = toy_batch(64, g)
        before = float((strategy(ctx, 0, g) & region).sum() / region.sum())
        train(strategy, g, 150, b=16)
        ctx, region, loss = toy_batch(64, g)
        mask = strategy(ctx, 150, g)
        after = float((mask & region).sum() / region.sum())
    assert before < 0.4  # the untrained policy is uniform: about the ratio, 0.25
    assert after > 0.8, (before, after)
    assert torch.equal(mask.sum(1), torch.full((64,), 16))


def test_state_dict_resumes_identically():
    with one_thread():
        a = make_strategy()
        g = seeded(0)
        train(a, g, 20)
        buf = io.BytesIO()
        torch.save(a.state_dict(), buf)
        g_state = g.get_state()
        assert "_extra_state" in a.state_dict() and bool(a.baseline_ready)
        train(a, g, 10, start=20)

        buf.seek(0)
        state = torch.load(buf, weights_only=True)
        b = make_strategy()
        b.net.head.weight.data.normal_()  # make sure everything comes from the checkpoint
        b.load_state_dict(state)
        g.set_state(g_state)
        train(b, g, 10, start=20)
        for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
            if isinstance(pa, torch.Tensor):
                assert torch.equal(pa, pb), name

        # control: without the optimizer state the continuation differs
        c = make_strategy()
        c.load_state_dict({k: v for k, v in state.items() if k != "_extra_state"}, strict=False)
        g.set_state(g_state)
        train(c, g, 10, start=20)
        assert not torch.equal(a.net.head.weight, c.net.head.weight)


def test_warmup_masks_at_random_and_does_not_train():
    with one_thread():
        s = make_strategy(warmup_steps=100, min_random_fraction=0.2)
        assert s.random_fraction(0) == 1.0 and s.random_fraction(50) == pytest.approx(0.6)
        assert s.random_fraction(100) == pytest.approx(0.2) and s.random_fraction(1000) == pytest.approx(0.2)
        before = copy.deepcopy(s.net.state_dict())
        g = seeded(0)
        ctx, _, loss = toy_batch(8, g)
        metrics = s.update(ctx, s(ctx, 0, g), loss, 0)
        assert "adversarial/reward" not in metrics
        assert all(torch.equal(v, s.net.state_dict()[k]) for k, v in before.items())
        s.update(ctx, s(ctx, 90, g), loss, 90)
        assert not torch.equal(before["head.weight"], s.net.state_dict()["head.weight"])


def test_update_checks_its_inputs():
    s = make_strategy()
    g = seeded(0)
    ctx, _, loss = toy_batch(4, g)
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        s.update(ctx, torch.zeros(4, 64, dtype=torch.bool), loss, 0)
    mask = s(ctx, 0, g)
    with pytest.raises(ValueError, match="different mask"):
        s.update(ctx, ~mask, loss, 0)


def _ddp_worker(rank: int, world: int, init_file: str, out: dict):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        s = make_strategy()
        if rank == 1:  # different local init: the first update must take rank 0's generator
            torch.nn.init.normal_(s.net.down[0].weight)
        g = seeded(100 + rank)
        record = []
        for step in range(3):
            ctx, _, loss = toy_batch(2 + rank, g)  # unequal local batches
            mask = s(ctx, step, g)
            record.append((ctx.image, s._draw.ranks, loss, mask))
            s.update(ctx, mask, loss, step)
        out[rank] = {"record": record, "state": {k: v for k, v in s.state_dict().items() if k != "_extra_state"}}
    finally:
        dist.destroy_process_group()


def test_ddp_gradients_are_averaged_over_all_samples(tmp_path):
    """Two gloo ranks with unequal batches end with identical generators, equal to one
    process updating on the concatenated batches with the same draws."""
    ctx_mp = mp.get_context("spawn")
    with ctx_mp.Manager() as manager:
        out = manager.dict()
        mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True,
                           start_method="spawn")
        out = dict(out)
    for k, v in out[0]["state"].items():
        assert torch.equal(v, out[1]["state"][k]), k

    with one_thread():
        ref = make_strategy()
        for step in range(3):
            parts = [out[r]["record"][step] for r in (0, 1)]
            image, ranks, loss, mask = (torch.cat([p[i] for p in parts]) for i in range(4))
            valid = torch.ones_like(mask)
            ctx = MaskContext(grid=(4, 4, 4), image=image, valid=valid, body=valid.float())
            k = mask.sum(1)
            ref._draw = _Draw(ranks, k, torch.ones(len(k), dtype=torch.bool), mask)
            ref.update(ctx, mask, loss, step)
    for k, v in ref.state_dict().items():
        if k != "_extra_state":  # same up to float summation order
            assert torch.allclose(v.double(), out[0]["state"][k].double(), atol=1e-4), k
    assert math.isfinite(float(ref.reward_mean))
