"""A PyTorch dataset of random 3D crops cut from memory-mapped cached volumes.

Item ``i`` is case ``i``: its ``crops_per_volume`` crops, read in one visit (each crop
touches only the pages it covers; the maps are dropped afterwards, so memory does not grow
with the number of cases). All randomness of an item comes from
``numpy.random.default_rng([seed, epoch, position, i])``: the same (seed, epoch) gives the
same crops whatever the number of workers or ranks, and a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from monai.data import MetaTensor, get_track_meta, set_track_meta
from torch.utils.data import Dataset, default_collate
from tqdm import tqdm

from medmae.data.augment import build_augment, left_right_state
from medmae.preprocess.cache import MAP_DTYPES, CachedCase
from medmae.data.config import LoaderConfig
from medmae.data.crop_midline import case_midlines, crop_midline
from medmae.data.crops import crop_starts, foreground_points, read_crop
from medmae.io.errors import ScanError

Key = int | tuple[int, int, int]
"""A dataset key: a case index, or (epoch, position in the epoch, case index)."""


def missing_fill(name: str) -> int:
    """Value of a map that a case lacks: body 1 (all foreground, nothing known), others 0."""
    return 1 if name == "body" else 0


def _shape_of(path: Path) -> tuple[int, ...]:
    """Shape from a .npy header; a missing, truncated or foreign file is a ScanError naming it."""
    try:
        return tuple(int(n) for n in np.load(path, mmap_mode="r").shape)
    except (OSError, ValueError, EOFError) as e:
        raise ScanError(path, f"cannot open cached array ({e}); rebuild the cache with `medmae preprocess`") from None


def case_geometry(cases: Sequence[CachedCase], names: Sequence[str]) -> tuple[list[tuple[int, ...]], list[set[str]]]:
    """Image shapes (C, X, Y, Z) and the set of ``names`` each case has on disk, every map
    checked to match its image's grid."""
    shapes, present = [], []
    for c in cases:
        shape = _shape_of(c.path / "image.npy")
        if len(shape) != 4:
            raise ScanError(c.path / "image.npy", f"cached image must be (C, X, Y, Z), got shape {shape}")
        has = {n for n in names if c.has(n)}
        for n in has:
            got = _shape_of(c.path / f"{n}.npy")
            if got != shape[1:]:
                raise ScanError(c.path / f"{n}.npy", f"map shape {got} does not match the image grid {shape[1:]}")
        shapes.append(shape)
        present.append(has)
    channels = {s[0] for s in shapes}
    if len(channels) > 1:
        raise ValueError(f"cached cases have different channel counts {sorted(channels)}; "
                         "a batch needs one (use one modality / contrast set per cache or split)")
    return shapes, present


def case_points(cases: Sequence[CachedCase], present: Sequence[set[str]], cfg: LoaderConfig,
                seed: int) -> list[np.ndarray]:
    """Foreground crop centres per case, (N, 3) uint16 (empty without a body map)."""
    out = []
    bar = tqdm(list(zip(cases, present)), desc="foreground points", unit="case",
               disable=len(cases) < 50, mininterval=2.0)
    for c, has in bar:
        if "body" not in has or cfg.foreground_prob == 0:
            out.append(np.zeros((0, 3), dtype=np.uint16))
            continue
        rng = np.random.default_rng([seed, zlib.crc32(c.case_id.encode())])
        out.append(foreground_points(c.map("body"), cfg.crop_size, cfg.max_foreground_points, rng))
    return out


class CropDataset(Dataset):
    """Random crops of cached cases; ``ds[key]`` -> list of ``crops_per_volume`` crop dicts.

    Each crop: {"image": float32 (C, X, Y, Z), "body": uint8 (1, X, Y, Z), "<prior>": (1, X, Y, Z)
    in the cache's dtype (label/anatomy int16, tissue uint8, supervoxels int32) for every
    prior in ``cfg.priors``, "crop_start": int64 (3,) the box's corner in the cached array
    (before flips), "midline": float32 () the case's mid-sagittal plane along crop axis 0 in
    crop voxels after flips and turns (NaN: none, see :mod:`medmae.data.crop_midline`), "case_id": str}.
    """

    def __init__(self, cases: Sequence[CachedCase], cfg: LoaderConfig, seed: int = 0):
        if not cases:
            raise ValueError("no cached cases to load")
        self.cfg = cfg
        self.seed = int(seed)
        self.paths = [Path(c.path) for c in cases]
        self.case_ids = [c.case_id for c in cases]
        self.maps = cfg.maps
        self.shapes, self.present = case_geometry(cases, self.maps)
        self.points = case_points(cases, self.present, cfg, self.seed)
        self.midlines = case_midlines(cases)
        self.augment = build_augment(cfg.augment, self.maps)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer keys (e.g. under a DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: Key) -> list[dict[str, Any]]:
        epoch, position, i = (self.epoch, int(key), int(key)) if np.isscalar(key) else map(int, key)
        rng = np.random.default_rng([self.seed, epoch, position, i])
        return self.crops(i, rng)

    def crops(self, i: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        """The crops of case ``i`` with the draws of ``rng``."""
        cfg, size = self.cfg, self.cfg.crop_size
        starts = crop_starts(self.shapes[i][1:], size, cfg.crops_per_volume, self.points[i], cfg.foreground_prob, rng)
        image = np.load(self.paths[i] / "image.npy", mmap_mode="r")
        out = [{"image": torch.from_numpy(read_crop(image, s, size, cfg.pad_value))} for s in starts]
        del image  # unmap: pages read so far are not kept in this process
        for name in self.maps:
            dtype = MAP_DTYPES[name]
            if name in self.present[i]:
                arr = np.load(self.paths[i] / f"{name}.npy", mmap_mode="r")
            else:  # a constant volume, not allocated: fill inside the volume, 0 past it
                arr = np.broadcast_to(np.array(missing_fill(name), dtype=dtype), self.shapes[i][1:])
            crops = [read_crop(arr, s, size, 0)[None] for s in starts]
            del arr
            for d, c in zip(out, crops):
                d[name] = torch.from_numpy(c)
        lr = [(False, True)] * len(out)  # (axis 0 reversed, axis 0 left-right) per crop
        if self.augment is not None:
            # one fast-seeded RandomState shared by the transforms; no MetaTensor bookkeeping
            self.augment.set_random_state(state=np.random.RandomState(np.random.PCG64(int(rng.integers(2**63)))))
            with _no_meta():
                out, lr = zip(*[(_plain(self.augment(d)), left_right_state(self.augment)) for d in out])
        rev, on_axis0 = (np.array(v, bool) for v in zip(*lr))
        mid = crop_midline(np.full(len(out), self.midlines[i]), starts[:, 0], size[0], rev, on_axis0)
        for d, s, m in zip(out, starts, mid):
            d["crop_start"] = torch.as_tensor(s, dtype=torch.int64)
            d["midline"] = torch.tensor(float(m), dtype=torch.float32)
            d["case_id"] = self.case_ids[i]
        return list(out)


@contextlib.contextmanager
def _no_meta() -> Iterator[None]:
    """MONAI transforms on plain tensors, without MetaTensor tracking (about 2x faster)."""
    before = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(before)


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """MONAI returns MetaTensors; the batch holds plain contiguous tensors."""
    return {k: (v.as_tensor() if isinstance(v, MetaTensor) else v).contiguous() for k, v in d.items()}


def collate_crops(items: Sequence[list[dict[str, Any]]]) -> dict[str, Any]:
    """A list of per-volume crop lists -> one batch: tensors stacked (B, ...), "case_id" a list."""
    # default_collate stacks straight into shared memory inside a worker (no extra copy)
    return default_collate([c for item in items for c in item])
