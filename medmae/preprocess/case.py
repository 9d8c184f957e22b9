"""One case: read, check, reorient/resample, mask, crop, normalise, priors, write."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from medmae import __version__
from medmae.data.cache import write_case
from medmae.io.errors import ScanError
from medmae.io.geometry import align_to
from medmae.io.manifest import Case, sha256_of
from medmae.io.read import read_volume
from medmae.io.scan import check_label, source_files
from medmae.io.volume import Volume
from medmae.preprocess.body import body_mask
from medmae.preprocess.config import PIPELINE_VERSION, PreprocessConfig, config_hash
from medmae.preprocess.fingerprint import intensity_stats
from medmae.preprocess.intensity import normalise
from medmae.preprocess.priors import supervoxels, tissue_classes
from medmae.preprocess.spatial import (crop_window, resample_to_grid, shift_affine,
                                       take_window, to_ras_spacing)

INT16 = np.iinfo(np.int16)


def read_channels(paths: list[str]) -> tuple[np.ndarray, Volume]:
    """Read every channel image; each must cover the first one's voxel grid.

    Returns (C, X, Y, Z) float32 and the first channel's Volume (the reference geometry).
    A channel stored in another axis order is reoriented onto the first (no interpolation).
    """
    ref = read_volume(paths[0])
    arrays = [ref.array] + [align_to(ref, read_volume(p), "channel image").array for p in paths[1:]]
    return np.stack([np.asarray(a, dtype=np.float32) for a in arrays]), ref


def read_map(path: str, ref: Volume, kind: str) -> Volume | None:
    """Read a label/anatomy map on ``ref``'s grid: whole numbers 0..32767. '' -> None."""
    if not path:
        return None
    vol = read_volume(path)
    check_label(ref, vol, kind)
    if float(vol.array.max()) > INT16.max:
        raise ScanError(vol.path, f"{kind} map values up to {vol.array.max()} do not fit int16")
    return align_to(ref, vol, f"{kind} map")


def _crop_map(vol: Volume | None, ref_affine: np.ndarray, dst_affine: np.ndarray,
              dst_shape: tuple[int, int, int], start: np.ndarray, stop: np.ndarray) -> np.ndarray | None:
    """Nearest-neighbour resample a map onto the resampled grid, then crop/pad with 0."""
    if vol is None:
        return None
    res = resample_to_grid(vol.array, ref_affine, dst_affine, dst_shape, order=0)
    return take_window(np.rint(res).astype(np.int16), start, stop, fill=0)


def _basename(path: str) -> str:
    return Path(path).name if path else ""


def preprocess_case(case: Case, cfg: PreprocessConfig, cache_dir: str | os.PathLike) -> dict:
    """Preprocess one manifest case into ``cache_dir/cases/<case_id>/``.

    Raises ScanError for an unusable input (naming the file), ValueError for data that
    cannot be processed (e.g. constant intensities). Returns the case summary (what
    index.csv and fingerprint.json need, plus ``seconds``).
    """
    t0 = time.perf_counter()
    source_sha = case.sha256 or sha256_of(source_files(case))
    raw, ref = read_channels(case.image)
    label = read_map(case.label, ref, "label")
    anatomy = read_map(case.anatomy, ref, "anatomy")

    image, affine = to_ras_spacing(raw, ref.affine, cfg.spacing)
    grid = tuple(int(s) for s in image.shape[1:])
    body = body_mask(image, case.modality, cfg.spacing, cfg.body)
    if not body.any():
        raise ScanError(ref.path, "no body/foreground found (the image is empty or all background)")
    stats = intensity_stats(image, body)
    norm, norm_params = normalise(image, body, case.modality, cfg.ct, cfg.mr)
    del image

    margin = tuple(int(np.ceil(cfg.margin_mm / s)) for s in cfg.spacing)
    window_mask = body if cfg.crop_to_body else np.ones_like(body)
    start, stop = crop_window(window_mask, margin, cfg.min_shape)
    norm = np.stack([take_window(ch, start, stop, fill=p["floor"]) for ch, p in zip(norm, norm_params)])
    body_c = take_window(body, start, stop, fill=False)
    tissue, thresholds = tissue_classes(norm[0], body_c, cfg.priors.tissue_classes)
    sv = supervoxels(norm, body_c, cfg.priors.supervoxels, cfg.priors.slic_compactness,
                     cfg.priors.slic_downsample)
    maps = {
        "body": body_c, "tissue": tissue, "supervoxels": sv,
        "label": _crop_map(label, ref.affine, affine, grid, start, stop),
        "anatomy": _crop_map(anatomy, ref.affine, affine, grid, start, stop),
    }
    meta = {
        "case_id": case.case_id, "modality": case.modality, "sequence": case.sequence,
        "channels": [_basename(p) for p in case.image],
        "label": _basename(case.label), "anatomy": _basename(case.anatomy),
        "orientation": "RAS", "affine": shift_affine(affine, start), "shape": list(norm.shape),
        "spacing": list(cfg.spacing),
        "source_affine": ref.affine, "source_shape": list(ref.shape), "source_spacing": list(ref.spacing),
        "resampled_affine": affine, "resampled_shape": list(grid),
        "crop_box": {"start": start.tolist(), "stop": stop.tolist()},
        "normalisation": norm_params, "intensity": stats,
        "body_voxels": int(body_c.sum()), "tissue_thresholds": thresholds,
        "supervoxel_count": int(sv.max()),
        "source_sha256": source_sha, "config_hash": config_hash(cfg),
        "pipeline_version": PIPELINE_VERSION, "medmae_version": __version__,
    }
    write_case(cache_dir, case.case_id, norm, maps, meta)
    return summary_from_meta(meta, case, seconds=time.perf_counter() - t0)


def summary_from_meta(meta: dict, case: Case, seconds: float = 0.0) -> dict:
    """The summary batch jobs keep per case (split comes from the manifest, not the cache)."""
    return {
        "case_id": case.case_id, "split": case.split, "modality": meta["modality"],
        "sequence": meta.get("sequence", ""), "channels": int(meta["shape"][0]),
        "shape": [int(s) for s in meta["shape"][1:]], "spacing": [float(s) for s in meta["spacing"]],
        "source_spacing": meta["source_spacing"], "source_shape": meta["source_shape"],
        "intensity": meta["intensity"], "source_sha256": meta["source_sha256"],
        "config_hash": meta["config_hash"], "seconds": float(seconds),
    }
