"""One case: read, check, reorient/resample, mask, crop, normalise, priors, write."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from medmae import __version__
from medmae.atomic import atomic_write_text
from medmae.preprocess.cache import CASES, write_case
from medmae.io.case_id import inside
from medmae.io.errors import ScanError
from medmae.io.geometry import align_to
from medmae.io.manifest import Case
from medmae.io.read import read_volume
from medmae.io.sanity import check_intensities
from medmae.io.sanity import check_label
from medmae.io.volume import Volume
from medmae.preprocess.body import body_mask
from medmae.preprocess.config import PIPELINE_VERSION, PreprocessConfig, config_hash
from medmae.preprocess.fingerprint import intensity_stats
from medmae.preprocess.intensity import normalise
from medmae.preprocess.midline import midline_meta
from medmae.preprocess.priors import supervoxels, tissue_classes
from medmae.preprocess.output import write_failure
from medmae.preprocess.sources import check_unchanged, source_digest, source_stats
from medmae.preprocess.spatial import (crop_window, resample_to_grid, shift_affine,
                                       take_window, to_ras_spacing)

INT16 = np.iinfo(np.int16)
log = logging.getLogger(__name__)


def read_channels(paths: list[str]) -> tuple[np.ndarray, Volume]:
    """Read every channel image; each must cover the first one's voxel grid.

    Returns (C, X, Y, Z) float32 and the first channel's Volume (the reference geometry).
    A channel stored in another axis order is reoriented onto the first (no interpolation).
    """
    vols = [read_volume(p) for p in paths]
    for vol in vols:
        check_intensities(vol)
    ref = vols[0]
    arrays = [ref.array] + [align_to(ref, v, "channel image").array for v in vols[1:]]
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


def check_extent(path, shape, spacing, min_mm: float) -> None:
    """Raise ScanError when the source extent (shape x spacing, mm) is below ``min_mm`` on an axis."""
    for axis, (n, mm) in enumerate(zip(shape, spacing)):
        if n * mm < min_mm:
            raise ScanError(path, f"extent {n} voxel(s) x {mm:g} mm = {n * mm:g} mm along axis {axis}, below "
                                  f"min_extent_mm={min_mm:g}: the cached volume would be mostly padding (a series "
                                  "of a few slices?); lower preprocess min_extent_mm to keep it")


def _map_on_grid(vol: Volume | None, ref_affine: np.ndarray, affine: np.ndarray,
                 shape: tuple[int, int, int]) -> np.ndarray | None:
    """A label/anatomy map resampled (nearest) onto the cached grid; 0 outside the source."""
    if vol is None:
        return None
    return np.rint(resample_to_grid(vol.array, ref_affine, affine, shape, order=0)).astype(np.int16)


def _basename(path: str) -> str:
    return Path(path).name if path else ""


def resample_and_mask(raw: np.ndarray, ref: Volume, modality: str, cfg: PreprocessConfig,
                      mask: Volume | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, X, Y, Z) raw on ``ref``'s grid -> RAS image at ``cfg.spacing``, its affine, body mask.

    ``mask``: a user-supplied body/brain mask on ``ref``'s grid (skull-stripped data), used
    instead of the computed body mask. Raises ScanError when no body is found.
    """
    image, affine = to_ras_spacing(raw, ref.affine, cfg.spacing)
    if mask is not None:
        body = resample_to_grid((mask.array > 0).astype(np.float32), ref.affine, affine, image.shape[1:], order=0) > 0.5
        if not body.any():
            raise ScanError(mask.path, "the supplied body/brain mask is empty")
        return image, affine, body
    body = body_mask(image, modality, cfg.spacing, cfg.body)
    if not body.any():
        raise ScanError(ref.path, "no body/foreground found (the image is empty or all background)")
    return image, affine, body


def crop_to_body(norm: np.ndarray, body: np.ndarray, floors: list[float], cfg: PreprocessConfig
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Crop (C, X, Y, Z) ``norm`` and ``body`` to the body box + margin, padded to min_shape.

    Padding is each channel's ``floor`` (image) and 0 (body). Returns (image, body, start, stop).
    """
    margin = tuple(int(np.ceil(cfg.margin_mm / s)) for s in cfg.spacing)
    start, stop = crop_window(body if cfg.crop_to_body else np.ones_like(body), margin, cfg.min_shape)
    image = np.stack([take_window(ch, start, stop, fill=f) for ch, f in zip(norm, floors)])
    return image, take_window(body, start, stop, fill=False), start, stop


def prepare_case(case: Case, cfg: PreprocessConfig, priors: bool = True
                 ) -> tuple[np.ndarray, dict[str, np.ndarray | None], dict]:
    """Preprocess one case in memory, exactly as the cache does, without writing it.

    Returns (image (C, X, Y, Z) float32, maps {name: (X, Y, Z) or None}, meta). ``meta`` maps
    results back onto the source grid (:func:`medmae.preprocess.inverse.to_source_grid`).
    ``priors=False`` skips the tissue classes and supervoxels (inference needs neither).
    Raises ScanError for an unusable input (naming the file), ValueError for data that
    cannot be processed (e.g. constant intensities).
    """
    before = source_stats(case)
    raw, ref = read_channels(case.image)
    check_extent(ref.path, ref.shape, ref.spacing, cfg.min_extent_mm)
    label, anatomy = read_map(case.label, ref, "label"), read_map(case.anatomy, ref, "anatomy")
    mask = read_map(case.mask, ref, "mask")
    source_sha = source_digest(case)  # the bytes just read: a change during reading is caught next
    check_unchanged(case, before)
    if case.sha256 and case.sha256 != source_sha:
        log.warning("%s: source changed since `data scan` (sha256 differs from the manifest's); "
                    "processed from its current bytes", case.image[0])
    resampled, res_affine, res_body = resample_and_mask(raw, ref, case.modality, cfg, mask)
    stats = intensity_stats(resampled, res_body)
    norm, norm_params = normalise(resampled, res_body, case.modality, cfg.ct, cfg.mr)
    image, body, start, stop = crop_to_body(norm, res_body, [p["floor"] for p in norm_params], cfg)
    affine = shift_affine(res_affine, start)
    tissue, thresholds, sv = None, [], None
    if priors:
        tissue, thresholds = tissue_classes(image[0], body, cfg.priors.tissue_classes)
        sv = supervoxels(image, body, cfg.priors.supervoxels, cfg.priors.slic_compactness,
                         cfg.priors.slic_downsample)
    maps = {"body": body, "tissue": tissue, "supervoxels": sv,
            "label": _map_on_grid(label, ref.affine, affine, body.shape),
            "anatomy": _map_on_grid(anatomy, ref.affine, affine, body.shape)}
    meta = {
        "case_id": case.case_id, "modality": case.modality, "sequence": case.sequence,
        "channels": [_basename(p) for p in case.image],
        "label": _basename(case.label), "anatomy": _basename(case.anatomy), "mask": _basename(case.mask),
        "orientation": "RAS", "affine": affine, "shape": list(image.shape), "spacing": list(cfg.spacing),
        "source_affine": ref.affine, "source_shape": list(ref.shape), "source_spacing": list(ref.spacing),
        "resampled_affine": res_affine, "resampled_shape": list(res_body.shape),
        "crop_box": {"start": start.tolist(), "stop": stop.tolist()},
        "normalisation": norm_params, "intensity": stats,
        "body_voxels": int(body.sum()), "tissue_thresholds": thresholds,
        "supervoxel_count": int(sv.max()) if sv is not None else 0,
        "midline": midline_meta(image, body),  # every case: ~1 s; symmetric masking, anomaly head
        "source_sha256": source_sha, "source_files": before, "config_hash": config_hash(cfg),
        "pipeline_version": PIPELINE_VERSION, "medmae_version": __version__,
    }
    return image, maps, meta


def preprocess_case(case: Case, cfg: PreprocessConfig, cache_dir: str | os.PathLike) -> dict:
    """Preprocess one manifest case into ``cache_dir/cases/<case_id>/``.

    Raises ScanError for an unusable input (naming the file) or a case folder that would
    resolve outside ``cache_dir/cases``, ValueError for data that cannot be processed (e.g.
    constant intensities), OutputError when the cache cannot be written (full disk,
    read-only). Returns the case summary (what index.csv and fingerprint.json need, plus
    ``seconds``).
    """
    t0 = time.perf_counter()
    image, maps, meta = prepare_case(case, cfg)
    cases = Path(cache_dir) / CASES
    try:
        inside(cases, cases / case.case_id)
    except ValueError as e:
        raise ScanError(cases / case.case_id, str(e).split(": ", 1)[-1]) from None
    try:
        write_case(cache_dir, case.case_id, image, maps, meta)
    except OSError as e:
        raise write_failure(cache_dir, e, f"case {case.case_id}") from None
    return summary_from_meta(meta, case, seconds=time.perf_counter() - t0)


def add_midline(case_dir: str | os.PathLike, meta: dict) -> dict:
    """A case cached before meta.json held ``"midline"``: estimate it from the cached image and
    body, rewrite meta.json atomically, and return the new meta (the arrays are untouched)."""
    case_dir = Path(case_dir)
    image = np.load(case_dir / "image.npy", mmap_mode="r")
    body = np.load(case_dir / "body.npy", mmap_mode="r") > 0
    meta = {**meta, "midline": midline_meta(image, body)}
    atomic_write_text(case_dir / "meta.json", json.dumps(meta, indent=1))
    return meta


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
