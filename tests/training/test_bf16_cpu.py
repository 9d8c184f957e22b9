"""bf16 autocast on the CPU (``train.precision=bf16``) through the real engine, for the
strategies with extra passes or networks: losses stay finite and go down."""

import math

import numpy as np
import pytest
import torch

from medmae.training import engine
from medmae.training.engine import pretrain
from medmae.training.precision import resolve_precision
from training_helpers import make_phantom_cache, tiny_config

STEPS = 30


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_phantom_cache(tmp_path_factory.mktemp("cache"), n=2, shape=(40, 40, 40))


def test_bf16_is_allowed_on_the_cpu_and_auto_stays_fp32():
    cpu = torch.device("cpu")
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("auto", cpu) == "fp32"


@pytest.mark.parametrize("strategy", ["random", "loss_guided", "adversarial"])
def test_bf16_engine_run_on_cpu_learns(cache, tmp_path, monkeypatch, strategy):
    dtypes = set()  # autocast's dtype inside the model, seen from the encoder's first linear layer

    real_build = engine.build_mae

    def build_and_watch(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.encoder.blocks[0].attn.qkv.register_forward_hook(lambda m, i, out: dtypes.add(out.dtype))
        return model

    monkeypatch.setattr(engine, "build_mae", build_and_watch)
    cfg = tiny_config(cache, tmp_path / "run", "train.precision=bf16", "train.device=cpu", f"train.steps={STEPS}",
                      "train.lr_per_256=0.25", "train.warmup_steps=3", "train.min_lr=0", "data.batch_size=4",
                      "train.checkpoint_every=1000", "train.figure_every=1000", "data.priors=[body]",
                      "model.norm_pix_loss=false", f"masking.strategy={strategy}", "tracking.enabled=false")
    result = pretrain(cfg)
    assert dtypes == {torch.bfloat16}
    losses = np.array(result.losses)
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    first, last = losses[:5].mean(), losses[-5:].mean()
    print(f"{strategy}: first {first:.3f} last {last:.3f}")
    assert last < 0.8 * first, (strategy, first, last)
    params = torch.cat([p.detach().flatten() for p in result.model.parameters()])
    assert params.dtype == torch.float32 and torch.isfinite(params).all()  # autocast: fp32 master weights
