"""Helpers for the preprocessing tests: real scans from tests/data, coarse grids, manifests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medmae.io.manifest import Case
from medmae.preprocess.config import PreprocessConfig

DATA = Path(__file__).resolve().parents[1] / "data"
CT = DATA / "ct_abdomen_3mm.nii.gz"
CT_SEG = DATA / "ct_abdomen_3mm_seg.nii.gz"
MR = DATA / "mr_abdomen_3mm.nii.gz"
MR_SEG = DATA / "mr_abdomen_3mm_seg.nii.gz"
SPINE = DATA / "spine_t2.nii.gz"
BRAIN = DATA / "brain1_t1c.nrrd"
LIVER = 5  # TotalSegmentator id in both the CT and MR segmentations


def small_config(**changes) -> PreprocessConfig:
    """3 mm grid and few supervoxels: every case takes well under a second."""
    cfg = PreprocessConfig(spacing=(3.0, 3.0, 3.0), workers=0)
    cfg.priors.supervoxels = 64
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def ct_case(**kw) -> Case:
    return Case(case_id="ct", image=[str(CT)], modality="CT", anatomy=str(CT_SEG), **kw)


def mr_case(**kw) -> Case:
    return Case(case_id="mr", image=[str(MR)], modality="MR", sequence="T1", anatomy=str(MR_SEG), **kw)


def save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def truncated_copy(src: Path, dst: Path) -> Path:
    """A .nii.gz cut in the middle of its compressed stream (a failed download)."""
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst
