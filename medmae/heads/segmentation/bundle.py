"""A trained segmenter on disk: ``MODEL/segmenter.pt`` + ``MODEL/segmenter.json``.

segmenter.pt    the SegmentationViT state_dict (plain tensors; ``weights_only=True``)
segmenter.json  architecture, class map and written label ids, the label map it learned,
                crop size, the cache's preprocessing config (how scans must be prepared),
                how the encoder was initialised, and the sha256 of segmenter.pt.

``medmae finetune`` writes it to ``OUT/model``; ``medmae segment --model`` accepts that
folder or the run folder above it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from medmae import __version__
from medmae.atomic import atomic_write, atomic_write_text
from medmae.config.base import ConfigError
from medmae.heads.segmentation.model import SegmentationViT, build_segmenter
from medmae.io.manifest import sha256_of

FORMAT, WEIGHTS, META = "medmae-segmenter", "segmenter.pt", "segmenter.json"


def save_bundle(model: SegmentationViT, out_dir: str | os.PathLike, info: dict[str, Any]) -> Path:
    """Write weights then description (naming the weights' digest); returns the folder."""
    out = Path(out_dir)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(out / WEIGHTS, lambda tmp: torch.save(state, tmp))
    meta = {"format": FORMAT, "format_version": 1, "medmae_version": __version__,
            "architecture": model.architecture(), **info, "sha256": sha256_of([out / WEIGHTS])}
    atomic_write_text(out / META, json.dumps(meta, indent=1, default=str) + "\n")
    return out


def find_bundle(path: str | os.PathLike) -> Path:
    """A bundle folder, or a run folder holding ``model/``."""
    p = Path(path).expanduser()
    for cand in (p, p / "model"):
        if (cand / META).is_file():
            return cand
    raise ConfigError(f"{p}: not a segmentation model (no {META}; `medmae finetune` writes OUT/model)")


def load_bundle(path: str | os.PathLike) -> tuple[SegmentationViT, dict[str, Any]]:
    """(network with the trained weights, in eval mode, on the CPU; its description)."""
    d = find_bundle(path)
    meta = json.loads((d / META).read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{d / META}: not a {FORMAT} description")
    if sha256_of([d / WEIGHTS]) != meta.get("sha256"):
        raise ConfigError(f"{d / WEIGHTS}: contents do not match the sha256 in {META} (partial or mixed save)")
    model = build_segmenter(meta["architecture"], meta.get("norm", "instance"), meta.get("res_block", True))
    model.load_state_dict(torch.load(d / WEIGHTS, map_location="cpu", weights_only=True), strict=True)
    return model.eval(), meta
