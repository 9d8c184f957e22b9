"""Pretraining loads only the prior maps its masking reads: random masking on a config that
lists the anatomy map trains exactly as without it (same seed, same crops, same losses), and
the anatomy strategy still gets its map."""

import logging

from training_helpers import make_phantom_cache, tiny_config

from medmae.config.base import load_config
from medmae.masking.config import MaskingConfig
from medmae.training.engine import pretrain


def test_maps_read_follow_the_strategies():
    assert MaskingConfig(strategy="random").maps_read() == []
    assert MaskingConfig(strategy="anatomy").maps_read() == ["anatomy"]
    mix = load_config(MaskingConfig, None, [
        "strategy=mixture", "mixture=[{strategy: random}, {strategy: anatomy, anatomy: {source: tissue}}, "
                            "{strategy: anatomy, weight: 0, anatomy: {source: supervoxels}}]"])
    assert mix.maps_read() == ["tissue"]  # an item never drawn reads nothing


def test_unread_priors_change_nothing_but_are_not_loaded(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="medmae.training.engine")
    cache = make_phantom_cache(tmp_path / "cache", n=2)
    common = ["train.steps=6", "train.warmup_steps=2", "tracking.enabled=false", "train.figure_every=6",
              "train.checkpoint_every=6"]
    both = pretrain(tiny_config(cache, tmp_path / "both", *common, "data.priors=[body,anatomy]"))
    assert "not read by random masking, not loaded" in caplog.text
    body = pretrain(tiny_config(cache, tmp_path / "body", *common, "data.priors=[body]"))
    assert len(both.losses) == 6 and both.losses == body.losses
    anatomy = pretrain(tiny_config(cache, tmp_path / "anat", *common, "data.priors=[body,anatomy]",
                                   "masking.strategy=anatomy"))
    assert len(anatomy.losses) == 6 and anatomy.losses != body.losses
