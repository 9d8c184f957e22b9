"""Gradient accumulation is exact: grad_accum=2 x batch 2 == grad_accum=1 x batch 4 (fixed masks),
and an EMA teacher moves once per optimizer step whatever grad_accum is."""

from __future__ import annotations

import pytest
import torch

from grad_helpers import fixed_data, step_grads
from medmae.training.engine import pretrain
from training_helpers import make_phantom_cache, tiny_config


def test_two_micro_batches_of_two_give_the_gradient_of_one_batch_of_four():
    images, masks = fixed_data(4)
    whole = step_grads(images, masks, batch=4, accum=1)
    accumulated = step_grads(images, masks, batch=2, accum=2)
    assert len(whole) == len(accumulated) > 10
    for a, b in zip(whole, accumulated):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    # the defects this guards against give other gradients
    only_last = step_grads(images[2:], masks[2:], batch=2, accum=1)
    assert not all(torch.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(whole, only_last))


@pytest.mark.parametrize("accum", [1, 2])
def test_ema_teacher_moves_once_per_optimizer_step(tmp_path, accum):
    cache = make_phantom_cache(tmp_path / "cache", n=2, shape=(40, 40, 40))
    cfg = tiny_config(cache, tmp_path / "run", "masking.strategy=loss_guided",
                      "masking.loss_guided.ema_decay=0.9", "masking.loss_guided.schedule_steps=3",
                      "train.steps=3", f"train.grad_accum={accum}", "data.batch_size=2", "tracking.enabled=false")
    res = pretrain(cfg)
    assert int(res.masking._ema.n_averaged) == 1 + 3  # a copy at the first scoring, then one update per step
