"""Slowdown of a training step under a fixed competing load, with PyTorch's default threads
("before") and with the threads medmae chooses (medmae/training/threads.py, "after").

Each setting runs the demo-sized MAE (32^3 crops, patch 8, 48 wide, 2 blocks, batch 4;
forward + backward + AdamW on fixed data) in a fresh process, for ``--seconds``, first on
the machine as it is, then beside ``--busy`` processes that spin on the CPU. Printed: steps/s,
CPU seconds per second, and the ratios loaded/alone and after/before. Run:

    python benchmarks/bench_threads.py                # about 30 s
    python benchmarks/bench_threads.py --seconds 10 --busy 4

"Alone" means without the benchmark's own competitors; other jobs on a shared machine still
count, so compare the settings of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, time
import torch
from bench_mae import Case, build_ours, ours_loss

torch.manual_seed(0)
case = Case("demo", 32, 8, 4, dim=48, depth=2, heads=3, dec_dim=32, dec_depth=1, dec_heads=2)
model = build_ours(case)
opt = torch.optim.AdamW(model.parameters(), 1e-4)
x = torch.randn(case.batch, 1, case.img, case.img, case.img)

def step():
    ours_loss(model, x).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)

for _ in range(3):
    step()
t0, c0, n = time.perf_counter(), time.process_time(), 0
while time.perf_counter() - t0 < float(sys.argv[1]):
    step()
    n += 1
wall = time.perf_counter() - t0
print(n / wall, (time.process_time() - c0) / wall, torch.get_num_threads())
"""


def settings() -> dict[str, dict[str, str]]:
    """Environment of each setting: PyTorch's defaults, and what `medmae` sets before PyTorch loads."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    base["PYTHONPATH"] = os.pathsep.join([str(REPO / "benchmarks"), str(REPO)])
    probe = ("import os, json; from medmae.training.threads import configure_process_threads; "
             "configure_process_threads(); print(json.dumps({k: os.environ[k] for k in "
             "('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OMP_WAIT_POLICY')}))")
    import json

    chosen = json.loads(subprocess.run([sys.executable, "-c", probe], env=base, capture_output=True, text=True,
                                       check=True).stdout)
    return {"before": base, "after": {**base, **chosen}}


def measure(env: dict[str, str], seconds: float, busy: int) -> tuple[float, float, int]:
    """(steps/s, CPU s/s, threads) of the step beside ``busy`` spinning processes."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, str(seconds)], env=env, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(out.stderr[-2000:])
        rate, cpu, threads = out.stdout.split()
        return float(rate), float(cpu), int(threads)
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="timed seconds per measurement")
    ap.add_argument("--busy", type=int, default=2, help="competing busy processes")
    args = ap.parse_args()
    rows = {}
    for name, env in settings().items():
        alone = measure(env, args.seconds, 0)
        loaded = measure(env, args.seconds, args.busy)
        rows[name] = (alone, loaded)
        extra = f"OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY', '(default)')}"
        print(f"{name:6s} threads {alone[2]} {extra:28s} alone {alone[0]:7.2f} steps/s ({alone[1]:.2f} CPU s/s)  "
              f"beside {args.busy} busy {loaded[0]:7.2f} steps/s ({loaded[1]:.2f} CPU s/s)  "
              f"loaded/alone {loaded[0] / alone[0]:.3f}", flush=True)
    (ba, bl), (aa, al) = rows["before"], rows["after"]
    print(f"after/before: alone {aa[0] / ba[0]:.2f}x, beside {args.busy} busy {al[0] / bl[0]:.2f}x")


if __name__ == "__main__":
    main()
