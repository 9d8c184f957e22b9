"""Atomic checkpoints, latest + keep-last-K, weights_only loading, RNG capture/restore."""

import os
import random

import numpy as np
import pytest
import torch

from medmae.training import checkpoint as ck
from medmae.training.checkpoint import CheckpointDir, CheckpointError, load_checkpoint, save_checkpoint
from medmae.training.rng import capture_rng, restore_rng, to_plain


def _state(step):
    return {"step": step, "model": {"w": torch.full((3,), float(step))}, "config": {"a": [1, 2]}}


def test_keep_last_and_latest(tmp_path):
    d = CheckpointDir(tmp_path / "ck", keep_last=2)
    for step in (10, 20, 30):
        d.save(step, _state(step))
    assert [p.name for p in d.step_files()] == ["step_0000020.pt", "step_0000030.pt"]
    latest = load_checkpoint(d.latest)
    assert latest["step"] == 30 and torch.equal(latest["model"]["w"], torch.full((3,), 30.0))
    assert not [p for p in (tmp_path / "ck").iterdir() if p.name.endswith(".tmp")]


def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    d = CheckpointDir(tmp_path / "ck", keep_last=3)
    d.save(10, _state(10))
    real_save = torch.save

    def dying_save(obj, f):
        real_save({"step": -1}, f)  # half a file ...
        raise KeyboardInterrupt  # ... and the process is killed

    monkeypatch.setattr(ck.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        d.save(20, _state(20))
    monkeypatch.setattr(ck.torch, "save", real_save)
    assert load_checkpoint(d.latest)["step"] == 10
    assert sorted(os.listdir(tmp_path / "ck")) == ["latest.pt", "step_0000010.pt"]


def test_bad_checkpoints_are_named(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")
    save_checkpoint(tmp_path / "other.pt", {"weights": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="not a medmae training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_rng_roundtrip_through_weights_only_file(tmp_path):
    gen = torch.Generator().manual_seed(7)
    torch.rand(3, generator=gen)
    np.random.seed(1), random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    state = capture_rng(gen)
    want = (torch.rand(4), np.random.rand(3), random.random(), torch.rand(2, generator=gen))
    save_checkpoint(tmp_path / "c.pt", {"step": 0, "model": {}, "rng": state,
                                        "loader": to_plain({"perm": np.arange(5), "n": np.int64(3)})})
    loaded = load_checkpoint(tmp_path / "c.pt")  # weights_only=True
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    gen2 = torch.Generator().manual_seed(99)
    restore_rng(loaded["rng"], gen2)
    got = (torch.rand(4), np.random.rand(3), random.random(), torch.rand(2, generator=gen2))
    assert torch.equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert got[2] == want[2] and torch.equal(got[3], want[3])
    assert torch.equal(loaded["loader"]["perm"], torch.arange(5)) and loaded["loader"]["n"] == 3
