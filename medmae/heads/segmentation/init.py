"""The encoder a fine-tuning starts from: an export, a pretraining checkpoint or run, or scratch.

Pretrained weights go through :func:`medmae.export.load.encoder_from_export`, whose strict
:class:`~medmae.export.report.LoadReport` lists loaded / missing / unexpected /
shape-mismatched tensors; a load that is not complete raises unless ``allow_partial``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from medmae.config.base import ConfigError
from medmae.export.files import META, export_encoder, read_export
from medmae.export.load import encoder_from_export
from medmae.export.report import LoadReport
from medmae.heads.segmentation.config import InitConfig
from medmae.models.build import build_encoder
from medmae.models.config import ModelConfig
from medmae.models.encoder import ViTEncoder3D
from medmae.training.checkpoint import LATEST


@dataclass
class EncoderInit:
    """The encoder and how it was initialised."""

    encoder: ViTEncoder3D
    kind: str
    """"pretrained", "scratch (architecture of SOURCE)" or "scratch"."""
    report: LoadReport | None = None
    loaded_fraction: float = 0.0
    """Share of the encoder's parameters (by element count) filled from the source."""
    source_meta: dict | None = None

    def summary(self) -> str:
        if self.report is None:
            return f"encoder: {self.kind} ({_count(self.encoder):,} parameters, random init)"
        return (f"encoder: {self.kind}, {self.loaded_fraction:.1%} of {_count(self.encoder):,} parameters "
                f"loaded\n{self.report.format()}")


def _count(m) -> int:
    return sum(p.numel() for p in m.parameters())


def read_source(source: str | Path) -> tuple[dict, dict]:
    """(encoder state_dict, export metadata) from an export folder, a checkpoint or a run folder."""
    path = Path(source).expanduser()
    if path.is_dir() and (path / META).is_file():
        return read_export(path)
    if path.is_dir() and (path / "checkpoints" / LATEST).is_file():
        path = path / "checkpoints" / LATEST
    if path.is_file():
        with tempfile.TemporaryDirectory(prefix="medmae-init-") as tmp:
            export_encoder(path, tmp)  # the export's own checks: config and weights must agree
            return read_export(tmp)
    raise ConfigError(f"init.source={str(source)!r} is neither a `medmae export` folder (encoder.json), "
                      "a pretraining checkpoint (.pt) nor a run folder (checkpoints/latest.pt)")


def loaded_fraction(encoder: ViTEncoder3D, report: LoadReport) -> float:
    """Element share of the encoder's parameters named in ``report.loaded``."""
    params = dict(encoder.named_parameters())
    total = sum(p.numel() for p in params.values())
    return sum(params[k].numel() for k in report.loaded if k in params) / max(1, total)


def init_encoder(cfg: InitConfig, encoder_cfg: ModelConfig, crop: Sequence[int]) -> EncoderInit:
    """Build the encoder for ``crop`` as ``cfg`` says (raises LoadError on an incomplete load
    unless ``cfg.allow_partial``; ExportError/CheckpointError for unreadable sources)."""
    if cfg.source is None:
        return EncoderInit(build_encoder(encoder_cfg, crop), "scratch")
    state, meta = read_source(cfg.source)
    if not cfg.load_weights:
        enc = ViTEncoder3D.from_architecture(meta["architecture"], crop)
        return EncoderInit(enc, f"scratch (architecture of {Path(cfg.source).name})", source_meta=meta)
    enc, report = encoder_from_export(state, meta, tuple(crop), resize=cfg.pos_resize, strict=not cfg.allow_partial)
    return EncoderInit(enc, "pretrained", report, loaded_fraction(enc, report), meta)
