"""One pick_device for every command (medmae/device.py)."""

import pytest
import torch

from medmae.device import pick_device


def test_cpu_and_auto_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto", local_rank=3) == torch.device("cpu")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        pick_device("gpu")


def test_cuda_rank_takes_its_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("auto", local_rank=3) == torch.device("cuda", 1)
    assert pick_device("cuda") == torch.device("cuda", 0)
    assert pick_device("cpu", local_rank=1) == torch.device("cpu")
