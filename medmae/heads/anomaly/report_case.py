"""One case's section of the report: acquisition and quality lines, montage, findings table.

Acquisition facts come from the case's acquisition.json (non-identifying: modality,
sequence, grid, preprocessing). The protocol check compares a case with the healthy
reference scans given to the report (ideally the calibration scans, scored): a sequence
they do not include, a voxel spacing coarser or finer than ``score.max_spacing_ratio``
times theirs on any axis, or a field of view outside ``FOV_RATIO`` times theirs is flagged.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from medmae.heads.anomaly.findings import Finding, case_findings, healthy_rank, preview_voxel

FOV_RATIO = 1.5
"""A field of view this many times larger or smaller (any axis) than every reference scan's is flagged."""
MONTAGE_ROWS = 3
"""Listed regions that get their own row of views in the montage (the rest are in the table)."""

MAP_UNITS = {"squared": "squared reconstruction error, (normalised intensity)^2",
             "brighter": "reconstruction residual above expected, normalised intensity",
             "darker": "reconstruction residual below expected, normalised intensity",
             "absolute": "absolute reconstruction residual, normalised intensity"}
NORM_UNITS = {"zscore": "MR z-score (brain/body mean 0, sd 1)", "ct_window": "fraction of the CT window"}


def read_acquisition(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "acquisition.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def map_unit(settings: dict, acq: dict | None, record: dict | None = None) -> str:
    """The anomaly map's unit, in words, from the map kind the case was scored with (case.json
    ``contrast``; else the scoring settings) and the case's normalisation."""
    kind = ((record or {}).get("contrast") or {}).get("map") or (
        ((settings.get("config") or {}).get("score") or {}).get("map", "squared"))
    norms = sorted({NORM_UNITS.get(n, n) for n in (acq or {}).get("preprocessing", {}).get("normalisation", [])})
    return MAP_UNITS.get(kind, kind) + (f"; intensity: {', '.join(norms)}" if norms else "")


def _mm(values) -> str:
    return " x ".join(f"{v:.3g}" for v in values)


def _xyz(values) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def acquisition_lines(acq: dict | None) -> list[str]:
    if acq is None:
        return ["acquisition: not recorded (scored before acquisition.json was written)"]
    pre = acq["preprocessing"]
    return [f"modality {acq['modality']}, sequence {acq['sequence'] or 'not given'}, {acq['channels']} channel(s)"
            + (", read from a DICOM series" if acq.get("dicom") else ""),
            f"source grid {_mm(acq['source_shape'])} voxels of {_mm(acq['source_spacing'])} mm; "
            f"field of view {_mm(acq['field_of_view_mm'])} mm",
            f"preprocessing: reoriented to {pre['orientation']}, resampled to {_mm(pre['spacing'])} mm, "
            f"intensity {', '.join(pre['normalisation'])}, body mask {pre['body_mask']}"]


def protocol_flags(acq: dict | None, reference: list[dict], max_ratio: float) -> list[str]:
    """Where the case's acquisition differs from every healthy reference scan's."""
    if acq is None or not reference:
        return []
    flags = []
    seqs = {r["sequence"].lower() for r in reference if r.get("sequence")}
    if seqs and acq["sequence"] and acq["sequence"].lower() not in seqs:
        flags.append(f"sequence {acq['sequence']} not among the reference scans' ({', '.join(sorted(seqs))})")
    if acq["modality"] not in {r["modality"] for r in reference}:
        flags.append(f"modality {acq['modality']} not among the reference scans'")
    for key, ratio, what in (("source_spacing", max_ratio, "voxel spacing"), ("field_of_view_mm", FOV_RATIO, "field of view")):
        case = np.sort(np.asarray(acq[key], float))
        ratios = [case / np.maximum(np.sort(np.asarray(r[key], float)), 1e-6) for r in reference]
        if all(np.any((q > ratio) | (q < 1 / ratio)) for q in ratios):
            flags.append(f"{what} {_mm(acq[key])} mm differs more than {ratio:g}x (an axis, sorted) from every "
                         f"reference scan's")
    return flags


def findings_table(findings: list[Finding], total: int) -> str:
    if not findings:
        return "<p class='findings-none'>No flagged region: the binary map is empty.</p>"
    rows = "".join(
        f"<tr class='finding' data-peak='{f.peak:.6g}'><td>{f.rank}</td><td>{f.kind}</td><td>{f.volume_ml:.2f}</td>"
        f"<td>{f.peak:.4g}</td><td>{f.mean:.4g}</td><td>{_xyz(f.ras)}</td><td>{_xyz(f.lps)}</td>"
        f"<td>{', '.join(str(v) for v in f.voxel)}</td><td>{f.slice_index + 1} of {f.slices}</td></tr>"
        for f in findings)
    more = f"<p>{total - len(findings)} smaller-scoring region(s) not listed.</p>" if total > len(findings) else ""
    return ("<table class='findings'><tr><th>#</th><th>region</th><th>volume (ml)</th><th>peak score</th>"
            "<th>mean score</th><th>RAS (mm)</th><th>LPS (mm)</th><th>source voxel (i, j, k)</th>"
            f"<th>nearest source slice</th></tr>{rows}</table>{more}")


def case_points(folder: Path, acq: dict | None, preview: dict) -> tuple[list[Finding], int, list]:
    """Findings of the case and the preview voxels of the first MONTAGE_ROWS (none without a preview affine)."""
    findings, total = case_findings(folder)
    if acq is None or "preview_affine" not in acq:
        return findings, total, []
    affine = np.asarray(acq["preview_affine"], float)
    return findings, total, [preview_voxel(f, affine, preview["image"].shape) for f in findings[:MONTAGE_ROWS]]


def percentile_text(record: dict, settings: dict, min_healthy: int) -> str:
    cal = settings.get("calibration") or {}
    pct = (record.get("percentiles") or {}).get("model")
    return healthy_rank(pct, int(cal.get("cases") or 0), min_healthy)


def esc(text) -> str:
    return html.escape(str(text), quote=True)
