"""The GPU benchmarks' peak lookup, percentiles and /dev/shm check (no GPU needed)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import gpu_common  # noqa: E402


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA H200 NVL", 835.5), ("NVIDIA H200", 989.4), ("NVIDIA H100 80GB HBM3", 989.4),
    ("NVIDIA H100 PCIe", 756.5), ("NVIDIA H100 NVL", 835.5), ("NVIDIA GH200 480GB", 989.4),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L40S", 362.1), ("NVIDIA L4", 121.0), ("NVIDIA A40", None),
])
def test_peak_from_the_real_device_name(monkeypatch, name, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    got, line = gpu_common.peak_tflops(torch.device("cuda"))
    assert got == peak
    assert ("no MFU: unknown device" in line) == (peak is None)
    assert gpu_common.peak_tflops(torch.device("cuda"), 500.0)[0] == 500.0


def test_percentiles_and_shm_check(tmp_path):
    p = gpu_common.percentiles([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert (round(p["p50"], 1), round(p["p90"], 1), round(p["p99"], 1)) == (50.5, 90.1, 99.0)
    assert "needed" in gpu_common.check_shm(1 << 20, 2, 2, str(tmp_path))
    with pytest.raises(SystemExit, match="too small.*--shm-size"):
        gpu_common.check_shm(1 << 50, 14, 2, str(tmp_path))
