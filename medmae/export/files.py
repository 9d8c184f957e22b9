"""Write and read an exported encoder: ``DIR/encoder.pt`` + ``DIR/encoder.json``.

encoder.pt   the ViTEncoder3D state_dict (plain tensors: ``patch_embed.proj.*``,
             ``pos_embed``, ``blocks.<i>.{norm1,attn.qkv,attn.out_proj,norm2,mlp.linear1,
             mlp.linear2}.*``, ``norm.*``), loadable with ``weights_only=True``.
encoder.json architecture, crop size, token grid, preprocessing (spacing, intensity
             normalisation), medmae version, source step, and the sha256 of encoder.pt;
             also ``mae`` (the whole MAE's file, digest, model config, training mask ratio)
             and ``data`` (what the training cache held, see medmae.preprocess.signature).
mae.pt       the whole MaskedAutoencoder3D state_dict (encoder + decoder), for heads that
             reconstruct (``medmae anomaly``).

Each file is written to a temporary name and renamed; encoder.json is written last and
names encoder.pt's digest, so a pair left inconsistent by a crash is detected on load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from medmae import __version__
from medmae.atomic import atomic_write, atomic_write_text
from medmae.io.manifest import sha256_of
from medmae.models.build import build_encoder
from medmae.models.config import ModelConfig
from medmae.training.checkpoint import CheckpointError, load_checkpoint

FORMAT = "medmae-encoder"
FORMAT_VERSION = 1
WEIGHTS, META, MAE_WEIGHTS = "encoder.pt", "encoder.json", "mae.pt"
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers


class ExportError(ValueError):
    """An export folder that is incomplete, inconsistent or of an unknown format."""


def _unwrap(key: str) -> str:
    """Strip DDP / torch.compile prefixes wherever they were stacked."""
    changed = True
    while changed:
        changed = False
        for p in _WRAPPER_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def encoder_state(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MAE state_dict -> the encoder's own state_dict (``encoder.`` prefix removed)."""
    out = {}
    for key, value in model_state.items():
        key = _unwrap(key)
        if key.startswith("encoder."):
            out[key[len("encoder."):]] = value.detach().clone().contiguous()
    return out


def mae_state(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoint model state -> the plain MAE state_dict (wrapper prefixes removed)."""
    return {_unwrap(k): v.detach().clone().contiguous() for k, v in model_state.items()}


def _mae_meta(ckpt: dict, out: Path) -> dict[str, Any]:
    config = ckpt["config"]
    masking = config.get("masking") or {}
    return {"file": MAE_WEIGHTS, "sha256": sha256_of([out / MAE_WEIGHTS]), "model_config": config["model"],
            "masking": {k: masking.get(k) for k in ("strategy", "ratio", "foreground_only",
                                                     "foreground_min_fraction", "foreground_min_tokens")}}


def _checkpoint_parts(path: Path, ckpt: dict) -> tuple[ModelConfig, tuple[int, int, int]]:
    """(model config, crop size) from a training checkpoint's resolved config."""
    config = ckpt.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{path}: checkpoint has no 'config' with a 'model' section")
    try:
        model_cfg = ModelConfig.model_validate(config["model"])
        crop = tuple(int(s) for s in config["data"]["crop_size"])
    except (ValidationError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: checkpoint config does not describe a medmae model ({e})") from None
    return model_cfg, crop


def _preprocess_meta(pre: Any) -> dict[str, Any]:
    """Spacing and intensity normalisation from the checkpoint's preprocessing settings."""
    if not isinstance(pre, dict):
        return {"spacing": None, "normalisation": None, "preprocess": None}
    norm = {k: pre[k] for k in ("ct", "mr") if k in pre} or None
    return {"spacing": pre.get("spacing"), "normalisation": norm, "preprocess": pre}


def export_encoder(checkpoint: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Training checkpoint -> ``out_dir/encoder.pt`` + ``encoder.json``; returns the metadata.

    The encoder weights are loaded strictly into a freshly built encoder first, so a
    checkpoint whose weights and config disagree fails here, not downstream.
    """
    path, out = Path(checkpoint), Path(out_dir)
    ckpt = load_checkpoint(path)
    model_cfg, crop = _checkpoint_parts(path, ckpt)
    state = encoder_state(ckpt["model"])
    try:
        encoder = build_encoder(model_cfg, crop)
        encoder.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: encoder weights do not match the checkpoint's model config: {e}") from None
    atomic_write(out / WEIGHTS, lambda tmp: torch.save(state, tmp))
    full = mae_state(ckpt["model"])
    atomic_write(out / MAE_WEIGHTS, lambda tmp: torch.save(full, tmp))
    arch = {**encoder.architecture(), "grid": list(encoder.grid), "pos_embed": "sincos-3d (fixed)"}
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "medmae_version": __version__,
        "architecture": arch, "crop_size": list(crop), **_preprocess_meta(ckpt.get("preprocess")),
        "source": {"checkpoint": path.name, "step": int(ckpt.get("step", -1))},
        "weights": {"file": WEIGHTS, "sha256": sha256_of([out / WEIGHTS]), "tensors": len(state),
                    "parameters": sum(p.numel() for p in encoder.parameters())},
        "mae": _mae_meta(ckpt, out), "data": ckpt.get("data"),
    }
    atomic_write_text(out / META, json.dumps(meta, indent=2) + "\n")
    return meta


def _read_meta(d: Path) -> dict[str, Any]:
    """The export's encoder.json, checked for format and version (encoder.pt must exist too)."""
    meta_path = d / META
    for f in (meta_path, d / WEIGHTS):
        if not f.is_file():
            raise ExportError(f"{d}: not an encoder export (no {f.name}; write one with `medmae export`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"{meta_path}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{meta_path}: not a {FORMAT} v{FORMAT_VERSION} description")
    return meta


def _load_checked(path: Path, sha256: str | None) -> dict[str, torch.Tensor]:
    """torch.load(weights_only) of ``path`` after checking its sha256 against the metadata."""
    if sha256_of([path]) != sha256:
        raise ExportError(f"{path}: contents do not match the sha256 in {META} (partial or mixed export)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/EOFError on bad files
        raise ExportError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


def read_export(export_dir: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``DIR`` -> (encoder state_dict, metadata), checking format and weights digest."""
    d = Path(export_dir)
    meta = _read_meta(d)
    return _load_checked(d / WEIGHTS, meta["weights"]["sha256"]), meta


def read_mae_export(export_dir: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``DIR`` -> (whole-MAE state_dict from mae.pt, metadata), checking its digest.

    Raises ExportError for an export written before mae.pt existed (re-export the checkpoint).
    The encoder weights are not read (mae.pt holds them too).
    """
    d = Path(export_dir)
    meta = _read_meta(d)
    entry = meta.get("mae")
    path = d / MAE_WEIGHTS
    if not isinstance(entry, dict) or not path.is_file():
        raise ExportError(f"{d}: export holds only the encoder (no {MAE_WEIGHTS}); re-export the "
                          "checkpoint with this medmae version, or pass the checkpoint itself")
    return _load_checked(path, entry.get("sha256")), meta
