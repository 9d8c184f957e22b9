"""Segment scans with a trained model: preprocess as in training, sliding window, map back.

For each case: ``prepare_case`` (the cache's preprocessing, in memory) -> sliding-window
argmax on the cached grid -> class indices turned into the ORIGINAL label ids -> nearest
neighbour back onto the source scan's grid and affine (``OUT/<case_id>_seg.nii.gz``).
``OUT/volumes.csv`` has one row per case with each class's volume in mL (counted on the
source grid) and ``OUT/report.csv`` the cases that failed, with why. Beside them the label
table, 3D Slicer and ITK-SNAP colour tables and ``structures.csv`` (see label_table.py); a
case read from a DICOM series also gets ``OUT/<case_id>_seg.dcm``, a DICOM SEG with the class
names that references the series (a failure there is listed in report.csv; the NIfTI stands).
"""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from medmae.atomic import atomic_write_text
from medmae.config.base import ConfigError
from medmae.heads.inputs import cases_from_inputs
from medmae.heads.segmentation.infer import predict_volume
from medmae.heads.segmentation.label_table import STRUCTURE_COLUMNS, structure_rows, write_label_tables
from medmae.io.errors import ScanError
from medmae.io.manifest import Case
from medmae.preprocess.case import prepare_case
from medmae.preprocess.config import PreprocessConfig
from medmae.preprocess.inverse import save_on_source_grid, to_source_grid

logger = logging.getLogger(__name__)


@dataclass
class Segmenter:
    """A loaded model with what it needs to segment a raw scan."""

    model: torch.nn.Module
    meta: dict
    device: torch.device
    precision: str = "fp32"
    progress: bool = False
    """Progress bars: over the scans (when several) and over each scan's sliding windows."""

    @property
    def classes(self) -> dict[str, list[int]]:
        return self.meta["classes"]

    @property
    def preprocess(self) -> PreprocessConfig:
        if not self.meta.get("preprocess"):
            raise ConfigError("this model does not record how its training cache was preprocessed "
                              "(the cache had no config.yaml), so scans cannot be prepared the same way")
        pre = dict(self.meta["preprocess"])
        pre.pop("workers", None)
        return PreprocessConfig.model_validate(pre)

    def predict_cached_grid(self, image: np.ndarray, overlap: float | None = None) -> torch.Tensor:
        """(C, X, Y, Z) preprocessed image -> (X, Y, Z) class indices."""
        v = self.meta.get("val") or {}
        return predict_volume(self.model, image, self.meta["crop_size"], self.device, self.precision,
                              v.get("overlap", 0.25) if overlap is None else overlap, v.get("sw_batch_size", 2),
                              v.get("mode", "gaussian"), self.progress)

    def label_ids(self, classes: torch.Tensor | np.ndarray) -> np.ndarray:
        """Class indices -> original label ids (each class's first id)."""
        return np.asarray(self.meta["output_ids"], dtype=np.int16)[np.asarray(classes)]


@dataclass
class SegmentReport:
    written: list[Path] = field(default_factory=list)
    volumes: list[dict] = field(default_factory=list)
    structures: list[dict] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)


def segment_case(seg: Segmenter, case: Case, out_dir: Path) -> tuple[Path, dict, list[dict]]:
    """One case -> (label map path, volumes row, structure rows)."""
    image, _, meta = prepare_case(case, seg.preprocess, priors=False)
    ids = seg.label_ids(seg.predict_cached_grid(image))
    path = save_on_source_grid(ids, meta, out_dir / f"{case.case_id}_seg.nii.gz", order=0, dtype=np.int16)
    source = to_source_grid(ids, meta, order=0)
    affine = np.asarray(meta["source_affine"], dtype=np.float64)
    return path, volumes_row(case.case_id, source, meta, seg.classes), structure_rows(case.case_id, source, affine,
                                                                                      seg.classes)


def volumes_row(case_id: str, source_ids: np.ndarray, meta: dict, classes: dict[str, list[int]]) -> dict:
    """{case_id, <class>_ml ...}: voxels with the class's written id x source voxel volume."""
    a = np.asarray(meta["source_affine"], dtype=np.float64)
    voxel_ml = abs(float(np.linalg.det(a[:3, :3]))) / 1000.0
    ids = np.rint(source_ids).astype(np.int64)
    return {"case_id": case_id, **{f"{name}_ml": round(float((ids == v[0]).sum()) * voxel_ml, 3)
                                   for name, v in classes.items()}}


def segment_inputs(seg: Segmenter, inputs: Sequence[str], out_dir: str | Path) -> SegmentReport:
    """Every case the inputs name -> label maps + volumes.csv + report.csv in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases, bad = cases_from_inputs(list(inputs))
    report = SegmentReport(bad=list(bad))
    write_label_tables(seg.classes, out)
    t0 = time.perf_counter()
    for case in tqdm(cases, desc="segment", unit="scan", disable=not seg.progress or len(cases) < 2):
        try:
            path, row, structures = segment_case(seg, case, out)
        except (ScanError, ValueError) as e:
            where = str(e.path) if isinstance(e, ScanError) else case.image[0]
            report.bad.append((where, e.problem if isinstance(e, ScanError) else str(e)))
            logger.warning("segment: %s: %s", case.case_id, report.bad[-1][1])
            continue
        report.written.append(path)
        report.volumes.append(row)
        report.structures += structures
        _dicom_seg(seg, case, path, out, report)
    _write_csv(out / "volumes.csv", report.volumes, ["case_id"] + [f"{n}_ml" for n in seg.classes])
    _write_csv(out / "structures.csv", report.structures, STRUCTURE_COLUMNS)
    _write_csv(out / "report.csv", [{"path": p, "problem": q} for p, q in report.bad], ["path", "problem"])
    logger.info("segment: %d scan(s) in %.1f s, %d failed", len(report.written), time.perf_counter() - t0,
                len(report.bad))
    return report


def _dicom_seg(seg: Segmenter, case: Case, nifti: Path, out: Path, report: SegmentReport) -> None:
    """OUT/<case_id>_seg.dcm for a case read from a DICOM series; a failure goes to report.bad."""
    from medmae.export.dicom_derived import export_failure
    from medmae.heads.segmentation.dicom_seg_out import is_dicom_case, write_label_seg

    if not is_dicom_case(case):
        return
    try:
        report.written.append(write_label_seg(case, nifti, seg.classes, out / f"{case.case_id}_seg.dcm"))
    except Exception as e:  # noqa: BLE001 - the NIfTI stands; the reason is reported, not the header
        report.bad.append((case.image[0], f"DICOM SEG not written: {export_failure(e)}; the NIfTI label map was"))
        logger.warning("segment: %s: DICOM SEG not written (%s)", case.case_id, type(e).__name__)


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns)
    w.writeheader()
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())
