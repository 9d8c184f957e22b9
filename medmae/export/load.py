"""Load an exported encoder into this project's encoder or into MONAI's ViT / UNETR.

Every loader returns a :class:`LoadReport` and, with ``strict=True`` (the default), raises
:class:`LoadError` carrying that report, before touching the target, when anything does
not fit: no silent partial loads. Position embeddings are resized when the target's token
grid differs from the exported one: by default the fixed sin-cos code is regenerated for the
new grid (at the same voxel spacing a bigger crop sees more anatomy, and each token keeps
its pretraining code); ``resize="trilinear"`` resamples the exported embedding instead
(a crop resampled to cover the same field of view). The report states which was done.
"""

from __future__ import annotations

import os
from typing import Sequence

from torch import nn

from medmae.export.files import read_export
from medmae.export.report import LoadReport
from medmae.export.transfer import DEFAULT_RESIZE, PosResize, transfer
from medmae.models.encoder import ViTEncoder3D

# our encoder key prefix -> MONAI ViT key prefix (blocks.* and norm.* are named alike)
MONAI_VIT_NAMES = {
    "patch_embed.proj.": "patch_embedding.patch_embeddings.",
    "pos_embed": "patch_embedding.position_embeddings",
}
UNETR_TARGET = "MONAI UNETR.vit"


def to_monai_vit_key(key: str) -> str:
    """Our encoder's state_dict key -> MONAI ``ViT``'s."""
    for ours, theirs in MONAI_VIT_NAMES.items():
        if key.startswith(ours):
            return theirs + key[len(ours):]
    return key


def load_encoder(
    export_dir: str | os.PathLike,
    img_size: Sequence[int] | None = None,
    resize: PosResize = DEFAULT_RESIZE,
    strict: bool = True,
) -> tuple[ViTEncoder3D, LoadReport]:
    """Exported encoder -> (ViTEncoder3D for ``img_size`` (default: the training crop), report)."""
    return encoder_from_export(*read_export(export_dir), img_size, resize, strict)


def encoder_from_export(
    state: dict, meta: dict, img_size: Sequence[int] | None = None,
    resize: PosResize = DEFAULT_RESIZE, strict: bool = True,
) -> tuple[ViTEncoder3D, LoadReport]:
    """:func:`load_encoder` on an export already read with :func:`read_export`."""
    arch = meta["architecture"]
    size = tuple(img_size) if img_size is not None else tuple(arch["img_size"])
    encoder = ViTEncoder3D.from_architecture(arch, size)
    report = transfer(
        state, encoder, f"ViTEncoder3D(img_size={size})", lambda k: k, "pos_embed",
        (arch["grid"], encoder.grid), arch, resize=resize, strict=strict,
    )
    return encoder, report


def _unused_cross_attn(vit: nn.Module) -> list[str]:
    """MONAI TransformerBlock keys its forward never reads (``norm_cross_attn`` without cross-attention)."""
    keys = []
    for i, blk in enumerate(getattr(vit, "blocks", [])):
        if not getattr(blk, "with_cross_attention", False):
            keys += [f"blocks.{i}.norm_cross_attn.{p}" for p, _ in blk.norm_cross_attn.named_parameters()]
    return keys


def load_into_monai_vit(
    vit: nn.Module,
    export_dir: str | os.PathLike,
    grid: Sequence[int],
    resize: PosResize = DEFAULT_RESIZE,
    strict: bool = True,
    target_name: str = "MONAI ViT",
) -> LoadReport:
    """Exported encoder -> a ``monai.networks.nets.ViT`` whose token grid is ``grid``.

    The target must use ``proj_type="conv"``, the same hidden size, MLP size, heads,
    depth, patch size and input channels, and ``qkv_bias`` as exported; the report's
    hints say which one differs.
    """
    return monai_vit_from_export(vit, *read_export(export_dir), grid, resize, strict, target_name)


def monai_vit_from_export(
    vit: nn.Module, state: dict, meta: dict, grid: Sequence[int],
    resize: PosResize = DEFAULT_RESIZE, strict: bool = True, target_name: str = "MONAI ViT",
) -> LoadReport:
    """:func:`load_into_monai_vit` with an export already read with :func:`read_export`."""
    return transfer(
        state, vit, target_name, to_monai_vit_key, MONAI_VIT_NAMES["pos_embed"],
        (meta["architecture"]["grid"], tuple(grid)), meta["architecture"],
        unused=_unused_cross_attn(vit), resize=resize, strict=strict,
    )


def load_into_unetr(
    unetr: nn.Module, export_dir: str | os.PathLike, resize: PosResize = DEFAULT_RESIZE, strict: bool = True
) -> LoadReport:
    """Exported encoder -> ``monai.networks.nets.UNETR``'s ViT (``unetr.vit``).

    Build the UNETR with ``hidden_size``/``mlp_dim``/``num_heads`` = the export's
    ``embed_dim``/``embed_dim*mlp_ratio``/``num_heads``, ``qkv_bias`` as exported and
    ``proj_type="conv"``; UNETR fixes patch 16 and 12 layers. Its ``img_size`` may differ
    from the training crop: the position embedding is then resized (see the report).
    """
    if not hasattr(unetr, "vit") or not hasattr(unetr, "feat_size"):
        raise TypeError(f"expected a monai.networks.nets.UNETR, got {type(unetr).__name__}")
    return load_into_monai_vit(unetr.vit, export_dir, unetr.feat_size, resize, strict, UNETR_TARGET)


def unetr_kwargs(meta: dict) -> dict:
    """UNETR constructor arguments that make its ViT match an export (besides img_size etc.)."""
    a = meta["architecture"]
    return {
        "in_channels": a["in_channels"], "hidden_size": a["embed_dim"],
        "mlp_dim": int(a["embed_dim"] * a["mlp_ratio"]), "num_heads": a["num_heads"],
        "qkv_bias": a["qkv_bias"], "proj_type": "conv",
    }


def unetr_compatible(meta: dict) -> str | None:
    """None when MONAI's UNETR can hold this encoder, else the reason it cannot."""
    a = meta["architecture"]
    if a.get("input_norm"):
        return "MONAI UNETR does not normalise its input per crop, as this encoder does (model.input_norm)"
    if tuple(a["patch_size"]) != (16, 16, 16):
        return f"MONAI UNETR fixes patch 16; this encoder uses {tuple(a['patch_size'])}"
    if a["depth"] != 12:
        return f"MONAI UNETR fixes 12 layers; this encoder has {a['depth']}"
    return None

