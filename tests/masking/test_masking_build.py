"""MaskingConfig -> strategy; YAML sections, mixtures, validation errors, checkpoint round trip."""

from __future__ import annotations

import io

import pytest
import torch
from masking_helpers import PATCH, make_ctx, seeded

from medmae.config.base import ConfigError, load_config
from medmae.training.pretrain_config import PretrainConfig
from medmae.masking.adversarial import AdversarialMasking
from medmae.masking.anatomy import AnatomyMasking
from medmae.masking.block import BlockMasking
from medmae.masking.build import build_masking
from medmae.masking.config import MaskingConfig
from medmae.masking.loss_guided import LossGuidedMasking
from medmae.masking.mixture import MixtureMasking
from medmae.masking.random import RandomMasking

YAML = """
masking:
  strategy: mixture
  ratio: 0.6
  anatomy: {source: anatomy, label_weights: {5: 2.0}, symmetric: mirror}
  loss_guided: {alpha_end: 0.8, schedule: cosine}
  mixture:
    - {strategy: random, weight: 1}
    - {strategy: anatomy, weight: 2}
    - {strategy: anatomy, weight: 1, ratio: 0.5, anatomy: {source: supervoxels}}
    - {strategy: loss_guided, weight: 1}
    - {strategy: adversarial, weight: 1, adversarial: {width: 4, depth: 1}}
"""


def test_each_strategy_from_config():
    kinds = {"random": RandomMasking, "block": BlockMasking, "anatomy": AnatomyMasking,
             "loss_guided": LossGuidedMasking, "adversarial": AdversarialMasking}
    for name, cls in kinds.items():
        s = build_masking(MaskingConfig(strategy=name, ratio=0.4), patch_size=PATCH, total_steps=50)
        assert type(s) is cls and s.ratio == pytest.approx(0.4)
    lg = build_masking(MaskingConfig(strategy="loss_guided"), total_steps=50)
    assert lg.schedule_steps == 50
    block = build_masking(MaskingConfig(strategy="block", block={"min_edge": 2, "max_edge": 4, "isotropic": False}))
    assert (2, 4, 3) in block.sizes


def test_mixture_from_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(YAML)
    cfg = load_config(PretrainConfig, path, ["masking.loss_guided.schedule_steps=200"]).masking
    s = build_masking(cfg, patch_size=PATCH, in_channels=1)
    assert isinstance(s, MixtureMasking)
    assert s.weights.tolist() == [1.0, 2.0, 1.0, 1.0, 1.0]
    random, anat, sv, lg, adv = s.strategies
    assert anat.label_weights == {5: 2.0} and anat.symmetric == "mirror" and anat.ratio == pytest.approx(0.6)
    assert sv.source == "supervoxels" and sv.symmetric == "none" and sv.ratio == pytest.approx(0.5)
    assert lg.alpha_end == pytest.approx(0.8) and lg.schedule == "cosine" and lg.schedule_steps == 200
    assert adv.net.head.in_channels == 4
    mask = s(make_ctx(), 0, seeded(0))
    assert mask.shape == (4, 216)


@pytest.mark.parametrize("override,message", [
    (["masking.strategy=mixture"], "non-empty 'mixture'"),
    (["masking.block.min_edge=4", "masking.block.max_edge=2"], "min_edge"),
    (["masking.anatomy.label_weights={3: 0}"], "label weights must be > 0"),
    (["masking.anatomy.symmetric=left"], "symmetric"),
    (["masking.ratio=1.0"], "ratio"),
    (["masking.strategy=mixture", "masking.mixture=[{strategy: random, anatomy: {source: tissue}}]"],
     "cannot set section 'anatomy'"),
    (["masking.adversarial.lr=code()"], "adversarial.lr"),
])
def test_bad_configs_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PretrainConfig, None, override)


def test_loss_guided_needs_a_schedule_length():
    with pytest.raises(ValueError, match="schedule_steps"):
        build_masking(MaskingConfig(strategy="loss_guided"))


def test_checkpoint_round_trip_of_a_stateful_mixture(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(YAML)
    cfg = load_config(PretrainConfig, path, ["masking.loss_guided.schedule_steps=200",
                                             "masking.loss_guided.ema_decay=0.9"]).masking
    a = build_masking(cfg, patch_size=PATCH)
    ctx = make_ctx(b=8, radii=[100.0] * 8)
    g = seeded(0)
    for step in range(3):
        mask = a(ctx, step, g)
        a.update(ctx, mask, torch.rand(8, 216, generator=g), step)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = build_masking(cfg, patch_size=PATCH)
    b.load_state_dict(torch.load(buf, weights_only=True))
    state_g = g.get_state()
    ma = a(ctx, 3, g)
    g.set_state(state_g)
    assert torch.equal(ma, b(ctx, 3, g))
    assert any(k.endswith("_extra_state") for k in b.state_dict())
