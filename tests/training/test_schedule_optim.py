"""LR schedule, AdamW parameter groups, precision, the mean-predictor loss, progress line."""

import math

import pytest
import torch
from torch import nn

from medmae.training.mean_predictor import mean_predictor_loss
from medmae.training.optim import build_optimizer, param_groups
from medmae.training.precision import autocast, grad_scaler, resolve_precision
from medmae.training.progress import Progress, format_duration
from medmae.training.schedule import WarmupCosine, scaled_lr


def test_scaled_lr_is_linear_in_batch():
    assert scaled_lr(1.5e-4, 256) == pytest.approx(1.5e-4)
    assert scaled_lr(1.5e-4, 4096) == pytest.approx(2.4e-3)
    assert scaled_lr(1e-3, 8) == pytest.approx(3.125e-5)
    with pytest.raises(ValueError):
        scaled_lr(1e-3, 0)


def test_warmup_then_cosine_to_min_lr():
    s = WarmupCosine(peak_lr=1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    assert [s(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert s(9) == pytest.approx(1.0)  # warm-up ends at the peak
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert s(110) == pytest.approx(0.1)
    assert s(10_000) == pytest.approx(0.1)  # stays at the floor
    values = [s(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay


def test_schedule_without_warmup_and_validation():
    s = WarmupCosine(2.0, 4)
    assert [s(i) for i in range(4)] == pytest.approx([2.0, 2 * (0.5 + 0.5 * math.cos(math.pi / 4)), 1.0,
                                                      2 * (0.5 + 0.5 * math.cos(3 * math.pi / 4))])
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=9.0)
    assert s.apply(opt, 2) == pytest.approx(1.0) and opt.param_groups[0]["lr"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        WarmupCosine(1.0, 10, warmup_steps=11)
    with pytest.raises(ValueError):
        WarmupCosine(1.0, 10, min_lr=2.0)


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 8, 4))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.frozen = nn.Parameter(torch.zeros(3, 3), requires_grad=False)


def test_no_weight_decay_on_norms_biases_pos_embed_tokens():
    m = _Toy()
    decay, no_decay = param_groups(m, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(m.proj.weight)]
    assert {id(p) for p in no_decay["params"]} == {id(m.pos_embed), id(m.mask_token), id(m.proj.bias),
                                                   id(m.norm.weight), id(m.norm.bias)}
    opt = build_optimizer(m, 1e-3, 0.05, (0.9, 0.95))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.95)


def test_precision_choices():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16", cpu)
    assert grad_scaler("fp32", cpu) is None and grad_scaler("bf16", cpu) is None
    with autocast("bf16", cpu):
        y = nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16


def test_mean_predictor_loss_norm_pix_is_token_energy():
    target = torch.zeros(1, 4, 3)
    target[0, 0] = torch.tensor([1.0, -1.0, 0.0])  # mean square 2/3
    target[0, 1] = torch.tensor([2.0, 0.0, -2.0])  # 8/3, but visible
    mask = torch.tensor([[True, False, True, False]])
    assert mean_predictor_loss(target, mask, None, True).item() == pytest.approx((2 / 3 + 0) / 2)
    valid = torch.tensor([[True, True, False, True]])  # token 2 not in play
    assert mean_predictor_loss(target, mask, valid, True).item() == pytest.approx(2 / 3)


def test_mean_predictor_loss_raw_predicts_visible_mean():
    target = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [5.0, 7.0], [0.0, 0.0]]])
    mask = torch.tensor([[False, False, True, True]])  # visible mean = 2
    expected = (((5 - 2) ** 2 + (7 - 2) ** 2) / 2 + (0 - 2) ** 2) / 2
    assert mean_predictor_loss(target, mask, None, False).item() == pytest.approx(expected)


def test_progress_line_throughput_and_eta():
    now = [100.0]
    p = Progress(total_steps=100, start_step=0, crops_per_step=8, clock=lambda: now[0])
    now[0] = 110.0
    line = p.line(10, loss=0.5, lr=1e-4, mean_pred=1.0)
    assert p.crops_per_s == pytest.approx(8.0)
    assert "step  10/100" in line and "loss 0.5000" in line and "(0.50x)" in line
    assert "8.0 crops/s" in line and "ETA 0:01:30" in line
    assert format_duration(3725.2) == "1:02:05"
