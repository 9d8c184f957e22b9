"""Random crops per second and memory: medmae's cache loader vs MONAI's PersistentDataset.

Side by side in one run, on the same cases, with the same crop size, crops per volume
read, batch size, augmentations and DataLoader workers:

  medmae     build_loader: crops cut from memory-mapped .npy files (only touched pages read)
  monai      PersistentDataset (LoadImaged from the same .npy files, cached as .pt by MONAI)
             + RandSpatialCropSamplesd, batched by monai.data.DataLoader
  resident   build_loader(device_resident=True): all volumes in memory on the device (here
             the CPU: no GPU), crops by batched gather in the main process (no workers)

Workloads: CT-sized volumes (512x512x300 float32, from an upsampled abdominal phantom and
perturbed copies) and 1 mm brain MRI (nilearn's MNI152 2009 T1, 197x233x189, plus perturbed
copies), each at several case counts. Each measurement runs in a fresh (spawned) process so
no loader inherits another's memory; memory is the peak RSS of that process tree (loader
process + its workers), sampled every 50 ms while batches are drawn.

    python benchmarks/bench_loader.py --quick     # ~5 min: smaller CT, fewer cases, short runs
    python benchmarks/bench_loader.py             # full run (writes ~7 GB under --out)

Targets: medmae >= 5x MONAI's crops/s on CT-sized volumes, >= 1.5x on 1 mm brain MRI, and
memory flat in the number of cases.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import torch
from scipy import ndimage

from medmae.preprocess.cache import CASES, INDEX, write_case
from medmae.data.config import LoaderConfig
from medmae.data.loader import build_loader


# ---- bench data ------------------------------------------------------------------------------

def ct_volumes(n: int, shape: tuple[int, int, int], seed: int):
    """n CT-like cases (image float32 in [0, 1] = HU window [-1000, 1000], body uint8): one
    abdominal phantom rendered at half resolution, upsampled, then flipped/shifted/noised copies."""
    from medmae.synth.phantom import make_phantom

    half = tuple(s // 2 for s in shape)
    ph = make_phantom("abdomen", np.random.default_rng(seed), shape=half, spacing=(1.5, 1.5, 1.6))
    hu = ndimage.zoom(ph.image.astype(np.float32), [s / h for s, h in zip(shape, half)], order=1)
    body = ndimage.zoom((ph.anatomy > 0).astype(np.uint8), [s / h for s, h in zip(shape, half)], order=0)
    del ph
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        img, b = hu, body
        for axis in (0, 1):
            if rng.random() < 0.5:
                img, b = np.flip(img, axis), np.flip(b, axis)
        shift = int(rng.integers(-20, 21))
        img, b = np.roll(img, shift, axis=2), np.roll(b, shift, axis=2)
        noisy = img + rng.normal(0.0, 8.0, size=img.shape).astype(np.float32) + rng.uniform(-20, 20)
        yield f"ct_{i:03d}", np.clip((noisy + 1000.0) / 2000.0, 0.0, 1.0, dtype=np.float32)[None], b


def brain_volumes(n: int, seed: int):
    """n 1 mm brain MR cases from the MNI152 T1 template: flips, shifts, gamma, noise; z-scored
    inside the head (T1 > 20 of 255)."""
    import nilearn
    import nibabel as nib

    data = Path(nilearn.__file__).parent / "datasets" / "data"
    path = sorted(data.glob("mni_icbm152_t1_tal_nlin_sym_09a*.nii.gz"))[0]
    t1 = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, 1000 + i])
        img = t1[::-1] if rng.random() < 0.5 else t1
        img = np.roll(img, tuple(rng.integers(-6, 7, size=3)), axis=(0, 1, 2))
        img = 255.0 * (img / 255.0) ** rng.uniform(0.8, 1.25) + rng.normal(0, 3.0, size=img.shape).astype(np.float32)
        body = ndimage.binary_fill_holes(img > 20).astype(np.uint8)
        inside = img[body > 0]
        z = ((img - inside.mean()) / inside.std()).astype(np.float32)
        yield f"mni_{i:03d}", z[None], body


def build_cache(root: Path, volumes) -> list[str]:
    """Write every case with write_case (+ an index); reuse a complete cache left by a previous run."""
    done = root / "complete.txt"
    if done.exists():
        return done.read_text().split()
    shutil.rmtree(root, ignore_errors=True)
    ids = []
    for case_id, image, body in volumes:
        write_case(root, case_id, image, {"body": body}, {"affine": np.eye(4).tolist()})
        ids.append(case_id)
        print(f"  wrote {case_id} {image.shape[1:]}", flush=True)
    done.write_text("\n".join(ids))
    return ids


def subset_cache(root: Path, ids: list[str], n: int) -> Path:
    """A cache folder listing the first n cases (symlinks to the full cache's case folders)."""
    sub = root.parent / f"{root.name}_n{n}"
    (sub / CASES).mkdir(parents=True, exist_ok=True)
    for case_id in ids[:n]:
        link = sub / CASES / case_id
        if not link.exists():
            link.symlink_to((root / CASES / case_id).resolve(), target_is_directory=True)
    with open(sub / INDEX, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "split"])
        w.writerows([[c, "train"] for c in ids[:n]])
    return sub


# ---- measuring -------------------------------------------------------------------------------

class PeakRSS:
    """Peak summed RSS of this process and all its children, sampled in a thread."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


@dataclass
class Result:
    crops_per_s: float
    peak_mb: float
    crops: int
    worker_exits: list[int] = field(default_factory=list)
    """Exit codes of the measurement's DataLoader workers (negative: killed by that signal)."""


def measure(next_batch, crops_per_batch: int, seconds: float, warmup_s: float) -> Result:
    """Draw batches for ``warmup_s`` (workers started, caches warm), then time ``seconds``."""
    start = time.perf_counter()
    while time.perf_counter() - start < warmup_s:
        next_batch()
    crops, start = 0, time.perf_counter()
    with PeakRSS() as mem:
        while time.perf_counter() - start < seconds:
            next_batch()
            crops += crops_per_batch
        elapsed = time.perf_counter() - start
    return Result(crops / elapsed, mem.peak / 2**20, crops)


def monai_dataset(cache: Path, ids: list[str], cfg: LoaderConfig):
    """MONAI's pipeline on the same .npy files: deterministic loading cached as .pt by
    PersistentDataset, then RandSpatialCropSamplesd and the same augmentations."""
    from monai.data import NumpyReader, PersistentDataset
    from monai.transforms import (Compose, EnsureChannelFirstd, LoadImaged, RandFlipd, RandScaleIntensityd,
                                  RandShiftIntensityd, RandSpatialCropSamplesd)

    a = cfg.augment
    keys = ["image", "body"]
    transform = Compose([
        LoadImaged("image", reader=NumpyReader(channel_dim=0), image_only=True),
        LoadImaged("body", reader=NumpyReader(), image_only=True),
        EnsureChannelFirstd("body", channel_dim="no_channel"),
        RandSpatialCropSamplesd(keys, roi_size=cfg.crop_size, num_samples=cfg.crops_per_volume, random_size=False),
        *[RandFlipd(keys, prob=a.flip_prob, spatial_axis=ax) for ax in range(3)],
        RandScaleIntensityd("image", factors=a.intensity_scale, prob=a.intensity_prob),
        RandShiftIntensityd("image", offsets=a.intensity_shift, prob=a.intensity_prob),
    ])
    data = [{"image": str(cache / CASES / c / "image.npy"), "body": str(cache / CASES / c / "body.npy")}
            for c in ids]
    return PersistentDataset(data, transform, cache_dir=cache.parent / f"{cache.name}_monai_pt")


def prepare_monai(cache: Path, ids: list[str], cfg: LoaderConfig) -> None:
    """Build MONAI's .pt cache for every case (its first epoch), outside the timed runs."""
    ds = monai_dataset(cache, ids, cfg)
    for i in range(len(ds)):
        ds[i]


class EndlessShuffle(torch.utils.data.Sampler):
    """Shuffled epochs without end, so MONAI's workers also prefetch across epochs (as
    medmae's endless stream does) and neither side idles at epoch boundaries."""

    def __init__(self, n: int):
        self.n = n

    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        while True:
            yield from torch.randperm(self.n, generator=g).tolist()


def _child(queue, which: str, cache: str, ids: list[str], n: int, cfg_data: dict, seconds: float,
           warmup_s: float, threads: int) -> None:
    """One measurement in a fresh process, so no loader inherits another one's memory.

    Its DataLoader workers are forked, as in training. (A spawned process inherits the
    "spawn" start method, so without this each worker was a fresh interpreter that
    re-imported torch, MONAI, SimpleITK, pandas, ... — its memory counted in full — and ended
    with a full interpreter shutdown, in which a worker sometimes aborted with "terminate
    called without an active exception": a C++ thread still joinable when static objects
    were destroyed. Forked workers end with os._exit, as they do in training.)
    """
    import warnings

    mp.set_start_method("fork", force=True)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    cfg = LoaderConfig(**cfg_data)
    if which == "monai":
        from monai.data import DataLoader

        loader = DataLoader(monai_dataset(Path(cache), ids[:n], cfg), batch_size=cfg.volumes_per_batch,
                            sampler=EndlessShuffle(n), num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
        stream = iter(loader)
        step = lambda: next(stream)  # noqa: E731
    else:
        sub = subset_cache(Path(cache), ids, n)
        ours = build_loader(cfg.model_copy(update={"cache_dir": str(sub), "device_resident": which == "resident"}),
                            seed=0)
        step = lambda: next(ours)  # noqa: E731
        loader = ours
    result = measure(step, cfg.batch_size, seconds, warmup_s)
    result.worker_exits = stop_workers(loader)
    queue.put(result)


def stop_workers(loader) -> list[int]:
    """Shut the DataLoader workers down and wait for them; their exit codes (0 = clean)."""
    iterator = getattr(loader, "_iterator", None)
    workers = list(getattr(iterator, "_workers", []) or [])
    if hasattr(loader, "close"):
        loader.close()
    elif iterator is not None:
        iterator._shutdown_workers()
    for w in workers:
        w.join(timeout=30)
    return [w.exitcode if w.exitcode is not None else -999 for w in workers]


def run_one(name: str, cache: Path, ids: list[str], n: int, cfg: LoaderConfig, args) -> dict[str, Result]:
    """``args.rounds`` interleaved rounds (medmae, monai, resident, medmae, ...), each in a fresh
    process; the median crops/s and the largest peak RSS over the rounds."""
    ctx = mp.get_context("spawn")
    loaders = ("medmae", "monai") + (() if args.no_resident else ("resident",))
    runs: dict[str, list[Result]] = {k: [] for k in loaders}
    for _ in range(args.rounds):
        for which in loaders:
            queue = ctx.SimpleQueue()
            proc = ctx.Process(target=_child, args=(queue, which, str(cache), ids, n, cfg.model_dump(mode="json"),
                                                    args.seconds, args.warmup, args.threads))
            proc.start()
            while queue.empty():
                if not proc.is_alive() and queue.empty():
                    raise RuntimeError(f"{which} measurement process died (exit code {proc.exitcode})")
                time.sleep(0.2)
            runs[which].append(queue.get())
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
            bad = [c for c in runs[which][-1].worker_exits if c != 0] + ([proc.exitcode] if proc.exitcode else [])
            if bad:
                print(f"  warning: {which} measurement: a process exited with {bad} (negative: signal)", flush=True)
    out = {k: Result(float(np.median([r.crops_per_s for r in rs])), max(r.peak_mb for r in rs),
                     sum(r.crops for r in rs)) for k, rs in runs.items()}
    line = "  ".join(f"{k} {r.crops_per_s:7.1f} crops/s {r.peak_mb:7.0f} MB" for k, r in out.items())
    print(f"  {name:6s} n={n:3d}  {line}   (rounds: "
          + "; ".join(f"{k} " + "/".join(f"{r.crops_per_s:.0f}" for r in rs) for k, rs in runs.items()) + ")",
          flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller CT volumes, fewer cases, shorter runs")
    p.add_argument("--out", default=".bench/loader", help="bench caches (reused between runs)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--crops-per-volume", type=int, default=4)
    p.add_argument("--volumes-per-batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per measurement")
    p.add_argument("--warmup", type=float, default=None, help="seconds of batches drawn before timing")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions per measurement (median)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main process (resident loader)")
    p.add_argument("--no-resident", action="store_true", help="skip the device-resident column")
    p.add_argument("--only", choices=["ct", "brain"], default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    quick = args.quick
    args.seconds = args.seconds or (8.0 if quick else 15.0)
    args.warmup = args.warmup or (3.0 if quick else 5.0)
    ct_shape = (384, 384, 240) if quick else (512, 512, 300)
    counts = {"ct": [2, 4] if quick else [2, 4, 8], "brain": [2, 4] if quick else [4, 8, 16]}
    out = Path(args.out) / ("quick" if quick else "full")
    cfg = LoaderConfig(cache_dir="", split="train", crop_size=(96, 96, 96), crops_per_volume=args.crops_per_volume,
                       batch_size=args.crops_per_volume * args.volumes_per_batch, workers=args.workers,
                       foreground_prob=0.0, priors=["body"],
                       augment={"flip_prob": 0.5, "intensity_prob": 0.5, "intensity_scale": 0.1, "intensity_shift": 0.1})
    print(f"bench_loader: crop 96^3, {cfg.crops_per_volume} crops/volume read, batch {cfg.batch_size} crops, "
          f"{cfg.workers} workers, uniform crops, flips + intensity aug; {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, GPU: {torch.cuda.is_available()}", flush=True)
    workloads = {}
    if args.only in (None, "ct"):
        print(f"CT cache {ct_shape} x {max(counts['ct'])} cases:", flush=True)
        workloads["ct"] = (out / "ct", build_cache(out / "ct", ct_volumes(max(counts["ct"]), ct_shape, seed=0)))
    if args.only in (None, "brain"):
        print(f"brain cache (197, 233, 189) x {max(counts['brain'])} cases:", flush=True)
        workloads["brain"] = (out / "brain", build_cache(out / "brain", brain_volumes(max(counts["brain"]), seed=0)))
    rows = []
    for name, (cache, ids) in workloads.items():
        prepare_monai(cache, ids, cfg)
        for n in counts[name]:
            rows.append((name, n, run_one(name, cache, ids, n, cfg, args)))
    print_table(rows, {"ct": 5.0, "brain": 1.5})
    return 0


def print_table(rows, targets) -> None:
    cols = [c for c in ("medmae", "monai", "resident") if any(c in r for _, _, r in rows)]
    head = f"{'workload':9s} {'cases':>5s} " + " ".join(f"{c + ' crops/s':>17s}" for c in cols) \
        + " " + " ".join(f"{c + ' peak MB':>17s}" for c in cols) + f" {'medmae/monai':>13s}"
    if "resident" in cols:
        head += f" {'resident/monai':>15s}"
    print("\n" + head)
    for name, n, r in rows:
        line = f"{name:9s} {n:5d} " + " ".join(f"{r[c].crops_per_s:17.1f}" for c in cols) + " " \
            + " ".join(f"{r[c].peak_mb:17.0f}" for c in cols) \
            + f" {r['medmae'].crops_per_s / r['monai'].crops_per_s:12.2f}x"
        if "resident" in r:
            line += f" {r['resident'].crops_per_s / r['monai'].crops_per_s:14.2f}x"
        print(line)
    print()
    for name in dict.fromkeys(n for n, _, _ in rows):
        mine = [r for w, _, r in rows if w == name]
        ratio = min(r["medmae"].crops_per_s / r["monai"].crops_per_s for r in mine)
        growth = mine[-1]["medmae"].peak_mb - mine[0]["medmae"].peak_mb
        ns = [n for w, n, _ in rows if w == name]
        verdict = "meets" if ratio >= targets[name] else "MISSES"
        print(f"{name}: medmae/monai crops/s >= {ratio:.2f}x over all case counts ({verdict} the {targets[name]}x "
              f"target); medmae peak RSS {mine[0]['medmae'].peak_mb:.0f} MB at {ns[0]} cases -> "
              f"{mine[-1]['medmae'].peak_mb:.0f} MB at {ns[-1]} cases ({growth:+.0f} MB)")


if __name__ == "__main__":
    sys.exit(main())
