"""Shared pieces of the GPU benchmarks: the card's bf16 peak from its real name, per-step
time percentiles, and the /dev/shm check for DataLoader workers."""

from __future__ import annotations

import shutil
import statistics

import torch

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendor data sheets, matched
# as substrings of torch.cuda.get_device_name() in this order (most specific first: an
# "H200 NVL" must not match "H200", nor an "L40S" match "L40" or "L4").
PEAK_BF16: tuple[tuple[str, float], ...] = (
    ("GH200", 989.4),      # Grace Hopper: H100/H200 SXM-class GPU
    ("H200 NVL", 835.5),   # PCIe card, 600 W
    ("H200", 989.4),       # H200 SXM ("NVIDIA H200")
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.5),
    ("H100", 989.4),       # H100 SXM ("NVIDIA H100 80GB HBM3")
    ("GB200", 2500.0),
    ("B200", 2250.0),
    ("A100", 312.0),       # SXM and PCIe alike
    ("L40S", 362.1),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10", 125.0),        # A10 and A10G
)


def peak_tflops(device: torch.device, override: float | None = None) -> tuple[float | None, str]:
    """(dense bf16 peak TFLOP/s or None, the line to print about it). Unknown cards get no
    MFU rather than a guessed one."""
    if override:
        return override, f"bf16 peak {override:.0f} TFLOP/s (--peak-tflops)"
    if device.type != "cuda":
        return None, "no MFU on the CPU"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16:
        if key in name:
            return value, f"bf16 dense peak {value:.0f} TFLOP/s (data sheet, matched {key!r} in {name!r})"
    return None, f"no MFU: unknown device {name!r} (pass --peak-tflops with its dense bf16 peak)"


def percentiles(seconds: list[float]) -> dict[str, float]:
    """Per-step times (s) -> {"p50", "p90", "p99", "mean"} in milliseconds."""
    if len(seconds) < 2:
        v = 1000 * seconds[0] if seconds else float("nan")
        return {"p50": v, "p90": v, "p99": v, "mean": v}
    q = statistics.quantiles([1000 * s for s in seconds], n=100, method="inclusive")
    return {"p50": q[49], "p90": q[89], "p99": q[98], "mean": 1000 * statistics.fmean(seconds)}


def format_percentiles(seconds: list[float]) -> str:
    p = percentiles(seconds)
    return f"p50 {p['p50']:7.1f}  p90 {p['p90']:7.1f}  p99 {p['p99']:7.1f} ms"


def batch_bytes(batch: dict) -> int:
    """Bytes of the tensors of one loader batch."""
    return sum(v.numel() * v.element_size() for v in batch.values() if isinstance(v, torch.Tensor))


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_shm(per_batch: int, workers: int, prefetch: int, path: str = "/dev/shm") -> str:
    """Worker batches travel through shared memory: up to ``workers`` x ``prefetch`` of them
    at once. Raise SystemExit with a clear message when ``path`` has less free than that
    (plus 25 %); otherwise return a line saying what is needed and what is free."""
    need = int(per_batch * workers * prefetch * 1.25)
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return f"shared memory: {path} not found; workers need about {_size(need)}"
    line = (f"shared memory: {workers} workers x {prefetch} prefetched batches x {_size(per_batch)} "
            f"(+25 %) = {_size(need)} needed, {_size(free)} free in {path}")
    if workers and free < need:
        raise SystemExit(f"{line}\n/dev/shm is too small for this loader: enlarge it (docker run --shm-size="
                         f"{max(1, -(-need // 2**30))}g, or a larger tmpfs), or lower --workers / --batch.")
    return line
