"""Anomaly scoring of one brain: medmae's one-pass scorer vs the naive pass per mask draw (CPU).

The scan is the MNI152 template at 1 mm (182 x 218 x 182, from nilearn, no download),
scored with K = 4 complementary mask draws by the demo-size model (configs/
pretrain_demo_cpu.yaml: tiny ViT, patch 8, 64^3 windows, preprocessing at 1.5 mm;
random weights: the work is the same as for trained ones). Timed end to end, reading
and preprocessing included:

  medmae  one sliding_window_inference pass; each window runs its K draws in one batch
  naive   K sliding_window_inference passes, one mask draw each (same masks, same maps)

Each variant runs in its own child process (peak resident memory = that process's
maximum RSS); the fastest of ``--rounds`` runs counts (a shared CPU adds noise, never
removes work). Run:

    python benchmarks/bench_anomaly.py                 # about a minute on 2 cores
    python benchmarks/bench_anomaly.py --threads 2 --rounds 3
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

TARGET_S = 10.0


def demo_checkpoint(folder: Path, ckpt_overrides: list[str] = (), preprocess: list[str] = ()) -> Path:
    """A checkpoint of the demo-size model (random weights) with the default preprocessing."""
    import torch

    from medmae.config.base import load_config
    from medmae.preprocess.config import PreprocessConfig
    from medmae.training.pretrain_config import PretrainConfig
    from medmae.models import build_mae

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(PretrainConfig, root / "configs" / "pretrain_demo_cpu.yaml",
                      ["model.norm_pix_loss=false", *ckpt_overrides])
    pre = load_config(PreprocessConfig, None, list(preprocess))
    torch.manual_seed(0)
    mae = build_mae(cfg.model, cfg.data.crop_size)
    path = folder / "demo.pt"
    torch.save({"step": 0, "model": mae.state_dict(), "config": cfg.model_dump(mode="json"),
                "preprocess": pre.model_dump(mode="json"), "data": None}, path)
    return path


def mni_scan(folder: Path) -> Path:
    import nibabel as nib
    from nilearn.datasets import load_mni152_template

    path = folder / "mni152_t1_1mm.nii.gz"
    nib.save(load_mni152_template(resolution=1), path)
    return path


def _run(variant: str, ckpt: str, scan: str, threads: int, draws: int, queue) -> None:
    import torch

    torch.set_num_threads(threads)
    from medmae.heads.anomaly.case import analyse_case
    from medmae.heads.anomaly.config import AnomalyConfig
    from medmae.export.pretrained import load_model
    from medmae.heads.anomaly.scorer import window_sums
    from medmae.heads.inputs import cases_from_inputs
    from medmae.preprocess.case import prepare_case

    model = load_model(ckpt)
    cfg = AnomalyConfig.model_validate({"score": {"draws": draws}})
    (case,), _ = cases_from_inputs([scan])
    t0 = time.perf_counter()
    if variant == "medmae":
        cm = analyse_case(case, model, cfg)
        shape = cm.image.shape
    else:
        image, maps, meta = prepare_case(case, model.preprocess, priors=False)
        floors = [p["floor"] for p in meta["normalisation"]]
        sum(window_sums(image, maps["body"], None, model, cfg.score, floors, only=(k,)) for k in range(draws))
        shape = image.shape
    seconds = time.perf_counter() - t0
    queue.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, shape))


def measure(variant: str, ckpt: Path, scan: Path, threads: int, draws: int) -> tuple[float, float, tuple]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_run, args=(variant, str(ckpt), str(scan), threads, draws, q))
    p.start()
    out = q.get(timeout=900)
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--draws", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt, scan = demo_checkpoint(tmp), mni_scan(tmp)
        best: dict[str, tuple[float, float, tuple]] = {}
        for _ in range(args.rounds):
            for variant in ("medmae", "naive"):
                s, mb, shape = measure(variant, ckpt, scan, args.threads, args.draws)
                if variant not in best or s < best[variant][0]:
                    best[variant] = (s, mb, shape)
    ours, naive = best["medmae"], best["naive"]
    print(f"MNI152 1 mm 182x218x182 -> preprocessed {tuple(ours[2][1:])} at 1.5 mm; demo-size model, "
          f"K={args.draws}, {args.threads} thread(s), best of {args.rounds}")
    print(f"{'variant':8s} {'seconds':>8s} {'peak RSS MB':>12s}")
    for name, (s, mb, _) in best.items():
        print(f"{name:8s} {s:8.2f} {mb:12.0f}")
    print(f"naive / medmae time: {naive[0] / ours[0]:.2f}x; peak memory: {naive[1] / ours[1]:.2f}x; "
          f"target <= {TARGET_S:.0f} s: {'met' if ours[0] <= TARGET_S else 'NOT met'}")


if __name__ == "__main__":
    main()
