"""Compute threads from the cores this process may use: affinity capped by the cgroup quota,
shared among torchrun ranks; OMP_NUM_THREADS respected; waiting threads sleep."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medmae.training.threads import cgroup_cpu_limit, choose_threads, configure_process_threads, usable_cpus

REPO = Path(__file__).resolve().parents[2]
AFFINITY = len(os.sched_getaffinity(0))


def _v2(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(text)
    return root


def _v1(root: Path, quota: int, period: int = 100000) -> Path:
    (root / "cpu,cpuacct").mkdir(parents=True)
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu,cpuacct" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


def test_cgroup_quota_caps_the_affinity(tmp_path, monkeypatch):
    assert cgroup_cpu_limit(_v2(tmp_path / "a", "150000 100000\n")) == 1.5
    assert usable_cpus(tmp_path / "a") == 1  # 1.5 CPUs of time: one thread that never waits for a second
    assert cgroup_cpu_limit(_v2(tmp_path / "b", "max 100000\n")) is None
    assert usable_cpus(tmp_path / "b") == AFFINITY
    assert cgroup_cpu_limit(_v1(tmp_path / "c", 300000)) == 3.0
    assert usable_cpus(tmp_path / "c") == min(AFFINITY, 3)
    assert cgroup_cpu_limit(_v1(tmp_path / "d", -1)) is None  # v1: no quota
    assert cgroup_cpu_limit(tmp_path / "none") is None
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})  # 8 cores allowed ...
    assert usable_cpus(tmp_path / "a") == 1 and usable_cpus(tmp_path / "c") == 3  # ... the quota decides
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two torchrun ranks on this node share them
    assert choose_threads(None, tmp_path / "c") == 1 and choose_threads(None, tmp_path / "b") == 4
    assert choose_threads(3, tmp_path / "a") == 3
    with pytest.raises(ValueError, match="at least 1"):
        choose_threads(0)


def test_environment_and_an_embedding_program_decide(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert configure_process_threads() is None  # the environment's value stands
    monkeypatch.delenv("OMP_NUM_THREADS")
    before = torch.get_num_threads()
    assert configure_process_threads() is None and torch.get_num_threads() == before  # torch already set up
    try:
        assert configure_process_threads(1) == 1 and torch.get_num_threads() == 1  # asked for explicitly
    finally:
        torch.set_num_threads(before)


def test_a_fresh_medmae_process_uses_the_usable_cores_and_passive_waits():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(REPO)
    code = ("import os; from medmae.cli.main import main; "
            "main(['config', 'reference']); import torch; "  # prints the reference to stdout
            "print(torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[-2:] == [str(usable_cpus()), "PASSIVE"], out.stderr[-2000:]
