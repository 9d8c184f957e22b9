"""What `medmae segment` writes for viewers: label table, 3D Slicer and ITK-SNAP colour tables,
per-structure summary, and a DICOM SEG with the class names for a DICOM series."""

import csv
import json
import re

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest

from medmae.cli.main import main
from medmae.heads.segmentation.label_table import structure_rows, write_label_tables
from medmae.io.dicom_seg import read_dicom_seg
from medmae.io.geometry import align_to
from medmae.io.manifest import write_manifest
from medmae.heads.inputs import cases_from_inputs
from medmae.io.read import read_volume
from medmae.preprocess.batch import preprocess_manifest
from medmae.preprocess.config import PreprocessConfig

from seg_helpers import DATA

CT, CT_SEG = DATA / "ct_abdomen_3mm.nii.gz", DATA / "ct_abdomen_3mm_seg.nii.gz"
SERIES = DATA / "dicom" / "ct_3slice_series"
CLASSES = {"liver": [5], "spleen": [1], "kidneys": [2, 3], "left adrenal \"gland\"": [9]}


def slicer_read(text: str) -> dict[int, tuple[str, tuple[int, ...]]]:
    """As 3D Slicer's colour-table reader: '#' comments, then 'id name r g b a' per line."""
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            i, name, *rgba = line.split()
            assert len(rgba) == 4 and all(0 <= int(v) <= 255 for v in rgba), line
            out[int(i)] = (name, tuple(int(v) for v in rgba))
    return out


def itksnap_read(text: str) -> dict[int, str]:
    """As ITK-SNAP's label description reader: 'IDX R G B A VIS MSH "LABEL"' per line."""
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            m = re.match(r'\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([01])\s+([01])\s+"([^"]*)"\s*$', line)
            assert m, line
            out[int(m.group(1))] = m.group(8)
    return out


def test_tables_and_structures_on_the_real_ct_map(tmp_path):
    write_label_tables(CLASSES, tmp_path)
    assert json.loads((tmp_path / "labels.json").read_text()) == {
        "0": "background", "5": "liver", "1": "spleen", "2": "kidneys", "9": "left adrenal \"gland\""}
    slicer = slicer_read((tmp_path / "labels.ctbl").read_text())
    assert slicer[5][0] == "liver" and slicer[9][0] == "left_adrenal_gland" and len(slicer) == 5
    assert len({v[1] for k, v in slicer.items() if k}) == 4  # distinct colours
    assert itksnap_read((tmp_path / "labels_itksnap.txt").read_text())[2] == "kidneys"
    img = nib.load(CT_SEG)
    ids = np.asarray(img.dataobj).astype(np.int64)
    ids[ids == 3] = 2  # as segment writes the merged kidneys: the class's first id
    rows = {r["structure"]: r for r in structure_rows("ct", ids, img.affine, CLASSES)}
    voxel_ml = abs(np.linalg.det(img.affine[:3, :3])) / 1000
    assert rows["liver"]["volume_ml"] == pytest.approx((ids == 5).sum() * voxel_ml, abs=1e-3) and rows["liver"]["volume_ml"] > 100
    assert rows["kidneys"]["components"] >= 2  # left and right
    ras = np.array(rows["liver"]["centroid_ras_mm"].split(), float)
    assert np.array(rows["liver"]["centroid_lps_mm"].split(), float) == pytest.approx(ras * [-1, -1, 1])
    spleen = np.array(rows["spleen"]["centroid_ras_mm"].split(), float)
    assert ras[0] > spleen[0]  # RAS: x grows toward the patient's right, where the liver lies
    k = [int(v) for v in rows["liver"]["source_voxel"].split()]
    assert np.allclose(img.affine[:3, :3] @ k + img.affine[:3, 3], ras, atol=2.2)  # nearest voxel (3 mm)
    assert rows["left adrenal \"gland\""]["volume_ml"] >= 0


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny model fine-tuned a few steps on the real CT (liver / spleen / kidneys)."""
    root = tmp_path_factory.mktemp("segout")
    (ct,), _ = cases_from_inputs([CT])
    ct.anatomy, ct.split = str(CT_SEG), "train"
    write_manifest([ct], root / "manifest.csv")
    cfg = PreprocessConfig(spacing=(3.0, 3.0, 3.0), workers=0, min_extent_mm=0)  # segment keeps it: the DICOM has 3 slices
    cfg.priors.supervoxels = 0
    preprocess_manifest(root / "manifest.csv", root / "cache", cfg, progress=False)
    assert main(["finetune", "data.cache_dir=" + str(root / "cache"), "train.out_dir=" + str(root / "run"),
                 "data.label_map=anatomy", "data.classes={liver: [5], spleen: [1], kidneys: [2, 3]}",
                 "data.crop_size=[32,32,32]", "data.batch_size=2", "data.workers=0", "model.encoder.size=custom",
                 "model.encoder.patch_size=[16,16,16]", "model.encoder.embed_dim=32", "model.encoder.depth=1",
                 "model.encoder.num_heads=2", "model.feature_size=8", "train.steps=4", "train.warmup_steps=1",
                 "train.decoder_only_steps=0", "train.peak_lr=3e-3", "train.log_every=2", "val.overlap=0",
                 "tracking.enabled=false"]) == 0
    return root / "run"


def test_segment_writes_viewer_files_and_a_named_dicom_seg(model, tmp_path):
    out = tmp_path / "out"
    assert main(["segment", "--model", str(model), "--out", str(out), str(SERIES)]) == 0
    (nifti,) = out.glob("*_seg.nii.gz")
    (dcm,) = out.glob("*_seg.dcm")
    assert {"labels.json", "labels.ctbl", "labels_itksnap.txt", "structures.csv", "volumes.csv"} <= {
        p.name for p in out.iterdir()}
    rows = list(csv.DictReader(open(out / "structures.csv")))
    assert [r["structure"] for r in rows] == ["liver", "spleen", "kidneys"]
    seg = hd.seg.segread(dcm)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "spleen", "kidneys"]
    src = read_volume(SERIES)
    import pydicom

    first = pydicom.dcmread(next(SERIES.iterdir()), stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    ids = np.asarray(nib.load(nifti).dataobj).astype(int)
    expected = np.select([ids == 5, ids == 1, ids == 2], [1, 2, 3], 0)
    back = read_dicom_seg(dcm)
    if expected.any():
        back = align_to(src, back, "seg")
        assert np.array_equal(back.array, expected)
    else:  # an untrained model may predict nothing: the SEG still holds every slice, empty
        assert back.array.shape[2] == src.array.shape[2] and not back.array.any()


def test_segment_shows_progress_over_each_scans_windows(model, tmp_path, capsys):
    """A long scan is not silent: MONAI's bar over the sliding windows (of the real CT), and
    nothing with --no-progress; the label map is the same either way."""
    assert main(["segment", "--model", str(model), "--out", str(tmp_path / "a"), str(CT)]) == 0
    err = capsys.readouterr().err
    assert "100%|" in err, err[-500:]
    assert main(["segment", "--model", str(model), "--out", str(tmp_path / "b"), "--no-progress", str(CT)]) == 0
    assert "100%|" not in capsys.readouterr().err
    (a,), (b,) = (tmp_path / "a").glob("*_seg.nii.gz"), (tmp_path / "b").glob("*_seg.nii.gz")
    ids = np.asarray(nib.load(a).dataobj)
    assert np.array_equal(ids, np.asarray(nib.load(b).dataobj))
    # every id in the map is named beside it, merged kidneys (2, 3) under their class name, id 2
    names = json.loads((tmp_path / "a" / "labels.json").read_text())
    assert names == {"0": "background", "5": "liver", "1": "spleen", "2": "kidneys"}
    assert {str(int(v)) for v in np.unique(ids)} <= set(names)
    assert set(slicer_read((tmp_path / "a" / "labels.ctbl").read_text())) == {0, 5, 1, 2}
    assert itksnap_read((tmp_path / "a" / "labels_itksnap.txt").read_text()) == {0: "Clear Label", 5: "liver",
                                                                                 1: "spleen", 2: "kidneys"}
