"""How many threads a medmae process computes with: the cores it may really use.

PyTorch sizes its intra-op pool from the machine (``os.cpu_count()`` / physical cores), not
from what this process may use: a container limited to 2 CPUs by a cgroup quota on a 64-core
host starts 32 threads. And OpenMP threads that spin at every parallel region while waiting
for each other lose most of their time once a core is taken by another job: on the 2-core
development machine, shared with other jobs, a tiny MAE step ran 25x slower with PyTorch's
defaults than with one thread (benchmarks/bench_threads.py, docs/training.md).

So ``medmae`` (``medmae.cli.main``) chooses, before PyTorch is loaded:

- threads = the usable cores: the CPU affinity mask (``os.sched_getaffinity``) capped by the
  cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``), divided
  among the ranks torchrun starts on the node (``LOCAL_WORLD_SIZE``); ``medmae --threads N``
  sets it; ``OMP_NUM_THREADS`` in the environment is respected as given;
- ``OMP_WAIT_POLICY=PASSIVE`` (unless set): a thread that waits sleeps instead of spinning,
  so a taken core costs a wait, not a collapse.

Loader workers are ``data.workers`` (their own processes, one thread each).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP = Path("/sys/fs/cgroup")


def _own_cgroup_v2(root: Path) -> Path:
    """This process's cgroup v2 folder (``0::/path`` in /proc/self/cgroup), else the root."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                own = root / line[3:].lstrip("/")
                if (own / "cpu.max").is_file():
                    return own
    except OSError:
        pass
    return root


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """CPUs' worth of time the cgroup quota allows (e.g. 1.5), None when unlimited or unknown."""
    try:
        v2 = _own_cgroup_v2(root) / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        for v1 in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            q = root / v1 / "cpu.cfs_quota_us"
            if q.is_file():
                quota = int(q.read_text())
                return None if quota <= 0 else quota / int((root / v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None


def usable_cpus(root: Path = CGROUP) -> int:
    """Cores this process may use: its affinity mask, capped by the cgroup quota (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cores = min(cores, max(1, math.floor(limit)))
    return max(1, cores)


def choose_threads(requested: int | None = None, root: Path = CGROUP) -> int:
    """``requested``, else the usable cores shared among this node's torchrun ranks."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be at least 1 (got {requested})")
        return requested
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, usable_cpus(root) // ranks)


def configure_process_threads(requested: int | None = None) -> int | None:
    """Set this process's compute threads (see the module docstring); the number, or None
    when the environment's ``OMP_NUM_THREADS`` decides.

    Before PyTorch is imported it sets ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` and
    ``OMP_WAIT_POLICY`` (inherited by worker processes); once imported (medmae called from
    a program that set up PyTorch itself) only an explicit ``requested`` changes anything.
    """
    if requested is None and os.environ.get("OMP_NUM_THREADS"):
        return None
    n = choose_threads(requested)
    if "torch" in sys.modules:
        if requested is None:
            return None  # the embedding program chose
        import torch

        torch.set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)
        os.environ["MKL_NUM_THREADS"] = str(n)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logger.debug("compute threads: %d (usable cores %d, cgroup CPU limit %s)", n, usable_cpus(),
                 cgroup_cpu_limit())
    return n
