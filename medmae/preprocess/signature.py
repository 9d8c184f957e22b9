"""What a training cache held, in a few fields: the contract a scan scored later must meet.

Stored in every pretraining checkpoint (key ``data``) and export (``encoder.json`` ->
``data``) so that a head can refuse a scan of another modality, sequence or channel count,
or one far coarser than anything the model saw, before it produces a meaningless map.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from medmae.preprocess.cache import read_index


def cache_signature(cache_dir: str | os.PathLike) -> dict | None:
    """``{"modalities", "sequences", "channels", "source_spacing_max", "cases"}`` of a cache.

    modalities: sorted distinct modalities; sequences: sorted distinct non-empty sequence
    names; channels: sorted distinct channel counts; source_spacing_max: per modality, the
    coarsest source spacing (mm, per axis) of its cases (from fingerprint.json), or {}.
    None when the cache has no index (e.g. a test cache written by hand).
    """
    rows = read_index(cache_dir)
    if not rows:
        return None
    spacing: dict[str, list[float]] = {}
    fp = Path(cache_dir) / "fingerprint.json"
    if fp.is_file():
        try:
            for mod, entry in json.loads(fp.read_text(encoding="utf-8")).items():
                if isinstance(entry, dict) and isinstance(entry.get("source_spacing"), dict):
                    spacing[mod] = [float(v) for v in entry["source_spacing"]["max"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            spacing = {}
    return {
        "modalities": sorted({r["modality"] for r in rows if r.get("modality")}),
        "sequences": sorted({r["sequence"] for r in rows if r.get("sequence")}),
        "channels": sorted({int(r["channels"]) for r in rows if r.get("channels")}),
        "source_spacing_max": spacing,
        "cases": len(rows),
    }
