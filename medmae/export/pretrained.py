"""The pretrained MAE a head reconstructs with (anomaly scoring, the studies' real-scan
metric): from a run folder, a checkpoint or an export.

Whatever the source, :func:`load_model` returns the same :class:`PretrainedMAE`: the model
config, the training crop and mask ratio, the preprocessing config the training cache was
built with, what that cache held (modality, sequences, channels) and a digest of the
weights. The digest is over the weights themselves (names, dtypes, shapes, bytes), so a
checkpoint and its export have the same digest and a calibration follows the weights.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from medmae.export.files import META, ExportError, mae_state, read_mae_export
from medmae.models import build_mae
from medmae.models.config import ModelConfig
from medmae.models.mae import MaskedAutoencoder3D
from medmae.preprocess.config import PreprocessConfig
from medmae.training.checkpoint import LATEST, CheckpointError, load_checkpoint


class ModelError(ValueError):
    """A MODEL argument that is not a usable pretrained MAE (message names the path)."""


@dataclass
class PretrainedMAE:
    """A loaded MAE and everything scoring needs to use it as it was trained."""

    source: Path
    kind: str  # "run", "checkpoint" or "export"
    model_config: ModelConfig
    crop: tuple[int, int, int]
    state: dict[str, torch.Tensor]
    preprocess: PreprocessConfig
    ratio: float
    foreground_only: bool
    min_fraction: float
    data: dict | None
    digest: str
    _built: dict = field(default_factory=dict, repr=False)

    @property
    def norm_pix_loss(self) -> bool:
        return bool(self.model_config.norm_pix_loss)

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(self.model_config.patch_size)

    @property
    def in_channels(self) -> int:
        return int(self.model_config.in_channels)

    @property
    def folder(self) -> Path:
        """Where calibrations are stored: the run folder, the export folder, or the checkpoint's folder."""
        return self.source if self.source.is_dir() else self.source.parent

    def build(self, roi: tuple[int, int, int], device: torch.device | str = "cpu") -> MaskedAutoencoder3D:
        """The MAE for windows of ``roi`` voxels, in eval mode (cached per roi and device).

        The fixed sin-cos position embeddings are rebuilt for ``roi``; every learned weight
        is loaded strictly.
        """
        key = (tuple(roi), str(device))
        if key not in self._built:
            model = build_mae(self.model_config, roi)
            fixed = {k for k in model.state_dict() if k.endswith("pos_embed")}
            state = {k: v for k, v in self.state.items() if k not in fixed}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if set(missing) - fixed or unexpected:
                raise ModelError(f"{self.source}: weights do not fit the model config "
                                 f"(missing {sorted(set(missing) - fixed)[:5]}, unexpected {unexpected[:5]})")
            self._built[key] = model.to(device).eval()
        return self._built[key]


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the sorted (name, dtype, shape, bytes) of a state_dict: 16 hex digits."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _preprocess(path: Path, pre: Any) -> PreprocessConfig:
    if not isinstance(pre, dict):
        raise ModelError(f"{path}: the model does not record its preprocessing (its training cache had "
                         "no config.yaml), so scans cannot be prepared as it was trained")
    try:
        return PreprocessConfig.model_validate(pre)
    except ValidationError as e:
        raise ModelError(f"{path}: recorded preprocessing is not a medmae preprocess config ({e})") from None


def _masking(masking: dict) -> tuple[float, bool, float]:
    ratio = masking.get("ratio") or 0.75
    return float(ratio), bool(masking.get("foreground_only", True)), float(masking.get("foreground_min_fraction") or 0.1)


def _assemble(path: Path, kind: str, model_cfg: Any, crop: Any, state: dict, pre: Any, masking: dict,
              data: Any) -> PretrainedMAE:
    try:
        cfg = ModelConfig.model_validate(model_cfg)
        crop = tuple(int(s) for s in crop)
    except (ValidationError, TypeError, ValueError) as e:
        raise ModelError(f"{path}: no usable model config ({e})") from None
    ratio, fg, frac = _masking(masking or {})
    return PretrainedMAE(path, kind, cfg, crop, state, _preprocess(path, pre), ratio, fg, frac,
                         data if isinstance(data, dict) else None, weights_digest(state))


def _from_checkpoint(path: Path, kind: str) -> PretrainedMAE:
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as e:
        raise ModelError(str(e)) from None
    config = ckpt.get("config") or {}
    try:
        crop = config["data"]["crop_size"]
        model_cfg = config["model"]
    except (KeyError, TypeError):
        raise ModelError(f"{path}: checkpoint has no model config / crop size") from None
    return _assemble(path, kind, model_cfg, crop, mae_state(ckpt["model"]), ckpt.get("preprocess"),
                     config.get("masking") or {}, ckpt.get("data"))


def _from_export(path: Path) -> PretrainedMAE:
    try:
        state, meta = read_mae_export(path)
    except ExportError as e:
        raise ModelError(str(e)) from None
    mae = meta["mae"]
    return _assemble(path, "export", mae["model_config"], meta["crop_size"], state, meta.get("preprocess"),
                     mae.get("masking") or {}, meta.get("data"))


def load_model(model: str | os.PathLike) -> PretrainedMAE:
    """A run folder (uses ``checkpoints/latest.pt``), a checkpoint file or an export folder."""
    path = Path(model).expanduser().resolve()
    if path.is_dir() and (path / META).is_file():
        return _from_export(path)
    if path.is_dir() and (path / "checkpoints" / LATEST).is_file():
        loaded = _from_checkpoint(path / "checkpoints" / LATEST, "run")
        loaded.source = path
        return loaded
    if path.is_file():
        return _from_checkpoint(path, "checkpoint")
    raise ModelError(f"{path}: not a pretraining run folder (no checkpoints/{LATEST}), checkpoint file "
                     f"or export folder (no {META})")
