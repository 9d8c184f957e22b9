"""Checks made before step 1: every mismatch that would otherwise surface as a traceback
inside the first step becomes a :class:`~medmae.config.base.ConfigError` naming the key
and the fix.

- resuming into a ``train.out_dir`` whose checkpoint was made with another model, crop
  size or masking config (:func:`refuse_changed_resume`, also used by fine-tuning);
- a cache whose image channel count is not ``model.in_channels``, or mixes channel counts;
- anatomy masking whose prior map (``masking.anatomy.source``) is not in ``data.priors``,
  or that no training case has;
- symmetric masking on cases without a mid-sagittal plane (a warning: they get no mirror).

Anatomy masking on cases that lack its map masks them at random; how many do is reported,
as a warning above :data:`MISSING_MAP_WARN_FRACTION`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from medmae.config.base import ConfigError, flatten
from medmae.config.schema import PretrainConfig
from medmae.data.cache import CASES, open_case, read_index
from medmae.data.midline import MISSING, case_midline

logger = logging.getLogger("medmae.training.engine")

MISSING_MAP_WARN_FRACTION = 0.25
"""Warn when more than this share of the training cases lack the anatomy-masking map."""
RESUME_KEYS = ("model.", "masking.", "data.crop_size")
"""Config keys a checkpoint's weights and masking state depend on."""


def preflight(cfg: PretrainConfig, state: dict[str, Any] | None) -> None:
    """All checks; raises ConfigError on the first problem found."""
    if state is not None:
        check_resume_config(cfg, state.get("config") or {}, int(state.get("step", 0)))
    split = cfg.data.split
    rows = [r for r in read_index(cfg.data.cache_dir) if split is None or r.get("split") == split]
    check_channels(cfg, rows)
    check_anatomy_maps(cfg, rows)
    check_midlines(cfg, rows)


def _watched(key: str, keys: tuple[str, ...]) -> bool:
    """``key`` is one of ``keys`` (``"model."``: every key under model; ``"data.classes"``: that key
    and the keys under it)."""
    return any(key.startswith(k) if k.endswith(".") else key == k or key.startswith(k + ".") for k in keys)


def resume_differences(saved: dict, current: dict, keys: tuple[str, ...] = RESUME_KEYS) -> list[str]:
    """``key: checkpoint X, config Y`` for each watched key whose value changed."""
    a = {k: v for k, v in flatten(saved).items() if _watched(k, keys)}
    b = {k: v for k, v in flatten(current).items() if _watched(k, keys)}
    return [f"{k}: checkpoint {a.get(k, '(unset)')!r}, config {b.get(k, '(unset)')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def refuse_changed_resume(out_dir: str, saved: dict, current: dict, step: int, keys: tuple[str, ...]) -> None:
    """ConfigError naming every watched key that differs between a checkpoint's config
    (``saved``) and this run's (``current``), and the three ways out."""
    diffs = resume_differences(saved, current, keys)
    if diffs:
        raise ConfigError(
            f"train.out_dir={out_dir!r} holds a checkpoint at step {step} made with other settings, "
            f"so it cannot be resumed: {'; '.join(diffs)}. Fix: set these keys back to the checkpoint's values "
            f"to continue it, choose another train.out_dir for the new settings, or train.resume=false to "
            f"start over in this folder")


def check_resume_config(cfg: PretrainConfig, saved: dict, step: int) -> None:
    """The checkpoint's model / crop / masking settings equal the config's."""
    refuse_changed_resume(cfg.train.out_dir, saved, cfg.model_dump(mode="json"), step, RESUME_KEYS)


def _channels(cache_dir: str, case_id: str) -> int | None:
    path = Path(cache_dir) / CASES / case_id / "image.npy"
    try:
        shape = np.load(path, mmap_mode="r").shape
    except (OSError, ValueError, EOFError):
        return None  # the loader names unreadable files itself
    return int(shape[0]) if len(shape) == 4 else None


def check_channels(cfg: PretrainConfig, rows: list[dict]) -> None:
    """Every training case has ``model.in_channels`` image channels."""
    counts = Counter()
    example: dict[int, str] = {}
    for r in rows:
        c = _channels(cfg.data.cache_dir, r["case_id"])
        if c is not None:
            counts[c] += 1
            example.setdefault(c, r["case_id"])
    if len(counts) > 1:
        listing = ", ".join(f"{n} cases with {c} (e.g. {example[c]})" for c, n in sorted(counts.items()))
        raise ConfigError(
            f"data.cache_dir={cfg.data.cache_dir!r}: the {cfg.data.split!r} split mixes channel counts ({listing}); "
            "a batch needs one. Fix: preprocess each contrast set into its own cache, or give the cases "
            "different splits and set data.split")
    if counts and (c := next(iter(counts))) != cfg.model.in_channels:
        raise ConfigError(
            f"model.in_channels={cfg.model.in_channels} but the cached images in {cfg.data.cache_dir!r} have "
            f"{c} channel{'s' * (c != 1)} (e.g. {example[c]}). Fix: set model.in_channels={c}")


def check_midlines(cfg: PretrainConfig, rows: list[dict]) -> None:
    """Symmetric masking on cases without a usable mid-sagittal plane: warn how many (their
    crops get no mirror, so the symmetry prior does nothing for them)."""
    keys = cfg.masking.symmetric_keys
    if not keys or not rows:
        return
    cases = [open_case(Path(cfg.data.cache_dir) / CASES / r["case_id"]) for r in rows]  # reads meta.json only
    missing = [c.case_id for c in cases if math.isnan(case_midline(c))]
    if missing:
        logger.warning("%s: %d of %d %r cases (e.g. %s) %s", keys[0], len(missing), len(rows), cfg.data.split,
                       ", ".join(missing[:3]), MISSING)


def check_anatomy_maps(cfg: PretrainConfig, rows: list[dict]) -> None:
    """Anatomy masking's maps are loaded, and count the cases that lack them."""
    for source in cfg.masking.maps_read():
        if source not in cfg.data.priors:
            raise ConfigError(
                f"masking: anatomy masking reads the {source!r} prior map (masking.anatomy.source), but "
                f"data.priors={list(cfg.data.priors)} does not load it. Fix: add it, e.g. "
                f"data.priors=[{', '.join([*cfg.data.priors, source])}]")
        if not rows:
            continue
        missing = [r["case_id"] for r in rows
                   if not _has_map(cfg.data.cache_dir, r["case_id"], source)]
        if len(missing) == len(rows):
            raise ConfigError(
                f"masking: anatomy masking reads the {source!r} map, but none of the {len(rows)} "
                f"{cfg.data.split!r} cases in {cfg.data.cache_dir!r} has one. Fix: build the cache with "
                f"that prior (`medmae preprocess`: an anatomy column in the manifest, or priors.{source}), "
                f"or set masking.anatomy.source to a map the cache has")
        if not missing:
            continue
        share = len(missing) / len(rows)
        level = logging.WARNING if share > MISSING_MAP_WARN_FRACTION else logging.INFO
        logger.log(level, "anatomy masking: %d of %d %r cases (%.0f%%) have no %r map and are masked at random "
                   "instead (e.g. %s)", len(missing), len(rows), cfg.data.split, 100 * share, source,
                   ", ".join(missing[:3]))


def _has_map(cache_dir: str, case_id: str, name: str) -> bool:
    return (Path(cache_dir) / CASES / case_id / f"{name}.npy").exists()
