"""Does a scan fit the model? Modality, sequence, channel count and source spacing.

Checked before preprocessing a scan for scoring: a model pretrained on one kind of scan
reconstructs another kind badly everywhere, and its map would then say nothing about
lesions. Each refusal is a ScanError naming the scan's file and what differs.
"""

from __future__ import annotations

from medmae.export.pretrained import PretrainedMAE
from medmae.io.errors import ScanError
from medmae.io.manifest import Case


def check_case(case: Case, model: PretrainedMAE, check_sequence: bool = True) -> None:
    """Raise ScanError (naming ``case.image[0]``) when the case cannot be scored by ``model``."""
    where = case.image[0]
    n = len(case.image)
    if n != model.in_channels:
        raise ScanError(where, f"{n} channel(s) given, the model takes {model.in_channels} "
                               f"(trained on {_channels_text(model)})")
    data = model.data
    if not data:
        return
    modalities = data.get("modalities") or []
    if modalities and case.modality not in modalities:
        raise ScanError(where, f"modality {case.modality}, the model was trained on {'/'.join(modalities)} only")
    sequences = [s.lower() for s in data.get("sequences") or []]
    if check_sequence and sequences and case.sequence and case.sequence.lower() not in sequences:
        raise ScanError(where, f"MR sequence {case.sequence!r}, the model was trained on {sequences} "
                               "(channel order/contrast differs; score.check_sequence=false to override)")


def require_sequence(case: Case, model: PretrainedMAE, named: str | None) -> None:
    """For calibration: a scan of unknown MR sequence for a model whose sequence is known is
    refused, unless ``named`` (calibration.sequence) says what it is; then the case takes it."""
    known = [s for s in (model.data or {}).get("sequences") or [] if s]
    if case.modality != "MR" or case.sequence or not known:
        return
    if named is None:
        raise ScanError(case.image[0], f"MR sequence unknown (no header or name hint), the model was trained on "
                                       f"{known}: name it with `calibrate --sequence` (calibration.sequence) if "
                                       "this healthy scan is of that sequence")
    case.sequence = named


def check_spacing(path: str, modality: str, source_spacing: list[float], model: PretrainedMAE,
                  max_ratio: float) -> None:
    """Raise ScanError when the scan's voxels are ``max_ratio`` times coarser than the training's."""
    coarsest = ((model.data or {}).get("source_spacing_max") or {}).get(modality)
    if not coarsest:
        return
    for axis, (s, m) in enumerate(zip(source_spacing, coarsest)):
        if s > max_ratio * m:
            raise ScanError(path, f"voxel spacing {[round(v, 2) for v in source_spacing]} mm: axis {axis} is "
                                  f"{s / m:.1f}x coarser than the coarsest training scan "
                                  f"({[round(v, 2) for v in coarsest]} mm); limit score.max_spacing_ratio={max_ratio}")


def _channels_text(model: PretrainedMAE) -> str:
    data = model.data or {}
    seq = data.get("sequences") or []
    return f"{model.in_channels}-channel scans" + (f" of {', '.join(seq)}" if seq else "")
