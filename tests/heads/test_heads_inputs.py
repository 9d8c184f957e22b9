"""INPUTS of the heads (files, DICOM folders, manifests) and in-memory preprocessing."""

from pathlib import Path

import nibabel as nib
import numpy as np

from medmae.preprocess.cache import CASES
from medmae.heads.inputs import cases_from_inputs
from medmae.io.manifest import write_manifest
from medmae.preprocess.case import prepare_case, preprocess_case
from medmae.preprocess.config import PreprocessConfig

DATA = Path(__file__).resolve().parents[1] / "data"


def test_files_folders_manifests_and_bad_inputs(tmp_path):
    ct = DATA / "ct_abdomen_3mm.nii.gz"
    dicom = DATA / "dicom" / "ct_abdomen_j2k_series"
    manifest_cases, _ = cases_from_inputs([DATA / "spine_t2.nii.gz"])
    write_manifest(manifest_cases, tmp_path / "m.csv")
    cases, bad = cases_from_inputs([ct, dicom, tmp_path / "m.csv", tmp_path / "missing.nii.gz", ct])
    assert [c.modality for c in cases[:1]] == ["CT"]
    assert len(cases) >= 4 and cases[0].image == [str(ct)]
    assert cases[-1].case_id.endswith("-2")  # same file twice -> unique ids
    assert any(c.image[0].startswith(str(dicom)) for c in cases)
    assert any(c.image[0].endswith("spine_t2.nii.gz") for c in cases)
    assert bad == [(str(tmp_path / "missing.nii.gz"), "no such file or folder")]


def test_prepare_case_equals_the_cache(tmp_path):
    (case,), _ = cases_from_inputs([DATA / "mr_abdomen_3mm.nii.gz"])
    cfg = PreprocessConfig(spacing=(3.0, 3.0, 3.0))
    image, maps, meta = prepare_case(case, cfg, priors=False)
    preprocess_case(case, cfg, tmp_path)
    cached = np.load(tmp_path / CASES / case.case_id / "image.npy")
    assert image.shape == cached.shape and np.array_equal(image, cached)
    assert maps["tissue"] is None and maps["body"].shape == image.shape[1:]
    src = nib.load(DATA / "mr_abdomen_3mm.nii.gz")
    assert meta["source_shape"] == list(src.shape[:3])
    assert np.allclose(meta["source_affine"], src.affine, atol=1e-4)
