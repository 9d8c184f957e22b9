"""Real scans end to end: the abdominal CT (NIfTI) and the JPEG-2000 DICOM CT series with
their TotalSegmentator maps, a class map selecting liver and spleen and merging the kidneys."""

import csv

import nibabel as nib
import numpy as np
import pytest

from medmae.cli.main import main
from medmae.heads.inputs import cases_from_inputs
from medmae.io.manifest import write_manifest
from medmae.preprocess.batch import preprocess_manifest
from medmae.preprocess.config import PreprocessConfig

from seg_helpers import DATA

CT, CT_SEG = DATA / "ct_abdomen_3mm.nii.gz", DATA / "ct_abdomen_3mm_seg.nii.gz"
DICOM, DICOM_SEG = DATA / "dicom" / "ct_abdomen_j2k_series", DATA / "dicom" / "ct_abdomen_j2k_series_seg.nii.gz"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """CT (train) and DICOM series (val) cached at 3 mm with their organ maps; a short
    fine-tune through the CLI with the liver / spleen / kidneys class map."""
    root = tmp_path_factory.mktemp("real")
    (ct,), _ = cases_from_inputs([CT])
    (series,), _ = cases_from_inputs([DICOM])
    ct.anatomy, ct.split = str(CT_SEG), "train"
    series.anatomy, series.split = str(DICOM_SEG), "val"
    write_manifest([ct, series], root / "manifest.csv")
    cfg = PreprocessConfig(spacing=(3.0, 3.0, 3.0), workers=0)
    cfg.priors.supervoxels = 0
    report = preprocess_manifest(root / "manifest.csv", root / "cache", cfg, progress=False)
    assert not report.bad if hasattr(report, "bad") else True
    code = main(["finetune", "data.cache_dir=" + str(root / "cache"), "train.out_dir=" + str(root / "run"),
                 "data.label_map=anatomy", "data.classes={liver: [5], spleen: [1], kidneys: [2, 3]}",
                 "data.crop_size=[32,32,32]", "data.batch_size=2", "data.workers=0", "model.encoder.size=custom",
                 "model.encoder.patch_size=[16,16,16]", "model.encoder.embed_dim=48", "model.encoder.depth=2",
                 "model.encoder.num_heads=3", "model.feature_size=8", "train.steps=8", "train.warmup_steps=2",
                 "train.decoder_only_steps=2", "train.peak_lr=3e-3", "train.log_every=4", "val.overlap=0",
                 "tracking.enabled=false"])
    assert code == 0
    return root


def test_ct_nifti_end_to_end_with_class_map(real_run, tmp_path):
    import json

    val = json.loads(sorted((real_run / "run" / "val").glob("step_*.json"))[-1].read_text())
    table = val["table"]
    assert set(table) == {"liver", "spleen", "kidneys", "mean"}
    # the DICOM series' map has liver and spleen but no kidney: counted as empty, not averaged
    assert table["kidneys"]["empty_reference"] == 1 and table["kidneys"]["cases"] == 0
    assert table["liver"]["cases"] == 1 and 0 <= table["liver"]["dice"] <= 1
    out = tmp_path / "ct"
    assert main(["segment", "--model", str(real_run / "run"), "--out", str(out), str(CT)]) == 0
    seg, src = nib.load(out / "ct_abdomen_3mm_seg.nii.gz"), nib.load(CT)
    assert seg.shape == src.shape and np.allclose(seg.affine, src.affine, atol=1e-4)
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 5, 1, 2}  # original ids; kidneys as 2
    row = next(csv.DictReader(open(out / "volumes.csv")))
    assert set(row) == {"case_id", "liver_ml", "spleen_ml", "kidneys_ml"}


def test_dicom_j2k_series_end_to_end(real_run, tmp_path):
    out = tmp_path / "dicom"
    assert main(["segment", "--model", str(real_run / "run" / "model"), "--out", str(out), str(DICOM)]) == 0
    (path,) = out.glob("*_seg.nii.gz")
    seg, ref = nib.load(path), nib.load(DICOM_SEG)  # the reference covers the series' grid, rows flipped
    ornt = nib.orientations.ornt_transform(nib.io_orientation(ref.affine), nib.io_orientation(seg.affine))
    ref = ref.as_reoriented(ornt)
    assert seg.shape == ref.shape and np.allclose(seg.affine, ref.affine, atol=1e-3)  # same voxels in world space
    assert nib.aff2axcodes(seg.affine) != ("R", "A", "S")  # written on the scan's own (non-RAS) grid
    rows = list(csv.DictReader(open(out / "volumes.csv")))
    assert len(rows) == 1 and all(float(v) >= 0 for k, v in rows[0].items() if k.endswith("_ml"))
