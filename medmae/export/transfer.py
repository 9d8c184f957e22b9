"""Copy exported encoder tensors into a target network under a key map, with a report."""

from __future__ import annotations

import math
import re
from typing import Callable, Literal, Sequence

import torch
from torch import nn

from medmae.export.report import LoadReport
from medmae.models.pos_embed import interpolate_pos_embed, sincos_pos_embed_3d

PosResize = Literal["trilinear", "sincos"]

DEFAULT_RESIZE: PosResize = "sincos"
"""At the same voxel spacing a different crop is a different field of view: each token should
keep the position code it had in pretraining, which regenerating the fixed sin-cos code gives."""


def resize_pos_embed(value: torch.Tensor, src_grid: Sequence[int], dst_grid: Sequence[int], how: PosResize) -> torch.Tensor:
    """(1, N_src, D) -> (1, N_dst, D): the 3D sin-cos code rebuilt for the new grid (exact for
    this project's fixed embeddings: same code per cell), or trilinear resampling."""
    if how == "sincos":
        return sincos_pos_embed_3d(dst_grid, value.shape[-1]).to(value.dtype)
    if how == "trilinear":
        return interpolate_pos_embed(value, src_grid, dst_grid)
    raise ValueError(f"unknown position-embedding resize {how!r} (trilinear or sincos)")


def _is_sincos(value: torch.Tensor, grid: Sequence[int]) -> bool:
    """True when ``value`` (1, N, D) is this project's fixed sin-cos code for ``grid``."""
    dim = value.shape[-1]
    if value.shape[-2] != math.prod(grid) or dim % 2 or dim < 6:
        return False
    return torch.allclose(value.float(), sincos_pos_embed_3d(grid, dim).float(), atol=1e-5)


def _block_count(keys) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(r"blocks\.(\d+)\.", k))}
    return len(found)


def _hints(report: LoadReport, source: dict, target_keys: list[str], arch: dict) -> list[str]:
    """What to change on the target so that the export fits."""
    hints = []
    if any(k.endswith("attn.qkv.bias") for k in report.unexpected):
        hints.append("the export has qkv biases, the target does not: build it with qkv_bias=True")
    if any(k.endswith("attn.qkv.bias") for k in report.missing):
        hints.append("the target has qkv biases, the export does not: build it with qkv_bias=False")
    n_src, n_dst = _block_count(source), _block_count(target_keys)
    if n_src != n_dst:
        hints.append(f"depth differs: the export has {n_src} blocks, the target {n_dst}")
    if any("patch_embed" in k for k, _, _ in report.mismatched):
        hints.append(
            f"patch embedding differs: the export uses patch {tuple(arch['patch_size'])} and "
            f"{arch['in_channels']} input channel(s) (MONAI UNETR always uses patch 16)"
        )
    if any(("blocks." in k or k.startswith("norm.")) for k, _, _ in report.mismatched):
        hints.append(
            f"widths differ: the export has hidden size {arch['embed_dim']}, "
            f"MLP {int(arch['embed_dim'] * arch['mlp_ratio'])}, {arch['num_heads']} heads"
        )
    if any(k.startswith("patch_embedding.patch_embeddings.1.") for k in target_keys):
        hints.append('the target\'s patch embedding is a Linear (proj_type="perceptron"): build it with proj_type="conv"')
    return hints


def transfer(
    source: dict[str, torch.Tensor],
    target: nn.Module,
    target_name: str,
    rename: Callable[[str], str],
    pos_key: str,
    grids: tuple[Sequence[int], Sequence[int]],
    arch: dict,
    unused: Sequence[str] = (),
    resize: PosResize = DEFAULT_RESIZE,
    strict: bool = True,
) -> LoadReport:
    """Copy ``source`` (export key -> tensor) into ``target`` and return what happened.

    rename: export key -> target key. pos_key: the target's position-embedding key,
    resized from grids[0] to grids[1] when they differ (``resize``: "sincos" regenerates the
    fixed code, "trilinear" resamples the exported one; the report says which). unused: target keys its forward
    never reads. With ``strict`` a report that is not OK raises :class:`LoadError`
    before the target is touched; otherwise what fits is loaded.
    """
    tsd = target.state_dict()
    report = LoadReport(target_name)
    new: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        tkey = rename(key)
        if tkey not in tsd:
            report.unexpected.append(key)
            continue
        want = tuple(tsd[tkey].shape)
        if tkey == pos_key and tuple(grids[0]) != tuple(grids[1]) and value.shape[-1] == want[-1]:
            if resize == "sincos" and not _is_sincos(value, grids[0]):
                report.hints.append(f"{tkey}: the exported embedding is not the fixed sin-cos code of grid "
                                    f"{tuple(grids[0])}; regenerating it drops what was learned "
                                    f"(resize='trilinear' resamples it instead)")
            value = resize_pos_embed(value, grids[0], grids[1], resize)
            report.resized.append((tkey, tuple(grids[0]), tuple(grids[1]), resize))
        if tuple(value.shape) != want:
            report.mismatched.append((tkey, tuple(value.shape), want))
            continue
        new[tkey] = value
        report.loaded.append(tkey)
    bad = {k for k, _, _ in report.mismatched}
    untouched = [k for k in tsd if k not in new and k not in bad]
    report.unused = [k for k in untouched if k in set(unused)]
    report.missing = [k for k in untouched if k not in set(unused)]
    report.hints += _hints(report, source, list(tsd), arch)
    if strict:
        report.raise_unless_ok()
    with torch.no_grad():
        target.load_state_dict({**tsd, **{k: v.to(tsd[k].dtype) for k, v in new.items()}}, strict=True)
    return report

