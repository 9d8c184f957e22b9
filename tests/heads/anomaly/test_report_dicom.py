"""DICOM outputs of a case scored from a DICOM series: a Parametric Map and a SEG that read back,
lie on the source slices, pair with the source series in `medmae data scan`, and carry no source
header value beyond the identifying tags PS3.3 requires for attachment."""

import logging
import shutil

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from medmae.cli.main import main
from medmae.export.dicom_derived import GEOMETRY, KEEP
from medmae.io.dicom_seg import read_dicom_seg
from medmae.io.geometry import align_to
from medmae.io.manifest import Case, read_manifest
from medmae.io.read import read_volume
from report_helpers import DATA, scored_run

SERIES = DATA / "dicom" / "ct_3slice_series"
TEXT_VRS = {"PN", "LO", "SH", "DA", "TM", "DT", "AS", "LT", "ST", "UT", "UI"}


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dcm")
    scored_run(out, [Case("ct3", [str(SERIES)], "CT")])
    return out / "cases" / "ct3"


def _source():
    return sorted((pydicom.dcmread(p) for p in SERIES.iterdir()), key=lambda d: float(d.ImagePositionPatient[2]))


def test_objects_read_back_on_the_source_slices(case_dir):
    pm = pydicom.dcmread(case_dir / "dicom" / "anomaly_map.dcm")
    seg = hd.seg.segread(case_dir / "dicom" / "binary_seg.dcm")
    src = _source()
    uids = {d.SOPInstanceUID for d in src}
    for obj in (pm, seg):
        assert obj.FrameOfReferenceUID == src[0].FrameOfReferenceUID and obj.StudyInstanceUID == src[0].StudyInstanceUID
        assert obj.ReferencedSeriesSequence[0].SeriesInstanceUID == src[0].SeriesInstanceUID
        refs = {r.ReferencedSOPInstanceUID for r in obj.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
        assert refs == uids
    # the Parametric Map: float frames equal to the NIfTI map, frame k at source slice k's position
    amap = np.asarray(nib.load(case_dir / "anomaly.nii.gz").dataobj, np.float32)
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and pm.NumberOfFrames == len(src)
    rwvm = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert rwvm.MeasurementUnitsCodeSequence[0].CodeValue == "1"
    where = [tuple(round(float(v), 2) for v in d.ImagePositionPatient) for d in src]  # slice k of the grid
    for f, frame in enumerate(pm.PerFrameFunctionalGroupsSequence):
        k = where.index(tuple(round(float(v), 2) for v in frame.PlanePositionSequence[0].ImagePositionPatient))
        assert np.allclose(pm.pixel_array[f], amap[:, :, k].T, atol=1e-5)
    assert amap.std() > 0
    # the SEG: read back into world space, it matches binary.nii.gz voxel for voxel
    binary = read_volume(case_dir / "binary.nii.gz")
    assert binary.array.any()
    back = align_to(binary, read_dicom_seg(case_dir / "dicom" / "binary_seg.dcm"), "seg")
    assert back.array.shape == binary.array.shape and np.array_equal(back.array > 0, binary.array > 0)
    positions = {tuple(round(float(v), 2) for v in f.PlanePositionSequence[0].ImagePositionPatient)
                 for f in seg.PerFrameFunctionalGroupsSequence}
    assert positions <= {tuple(round(float(v), 2) for v in d.ImagePositionPatient) for d in src}


def test_data_scan_pairs_the_seg_with_its_series(case_dir, tmp_path):
    root = tmp_path / "study"
    shutil.copytree(SERIES, root / "series")
    shutil.copytree(case_dir / "dicom", root / "medmae")  # the SEG and the Parametric Map
    assert main(["data", "scan", str(root), "--out", str(tmp_path / "m.csv"), "--no-progress"]) == 0
    (case,) = read_manifest(tmp_path / "m.csv")
    assert case.label.endswith("binary_seg.dcm") and case.image[0].endswith("series")
    assert not (tmp_path / "m.bad.csv").is_file() or len((tmp_path / "m.bad.csv").read_text().splitlines()) <= 1


def _values(ds: pydicom.Dataset):
    for el in ds.iterall():
        if el.VR in TEXT_VRS and el.keyword not in KEEP + GEOMETRY and el.value not in (None, ""):
            for v in (el.value if isinstance(el.value, pydicom.multival.MultiValue) else [el.value]):
                if len(str(v)) >= 4:
                    yield el.keyword, str(v)


def test_no_other_source_header_value_in_outputs(case_dir, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    scored_run(tmp_path, [Case("again", [str(SERIES)], "CT")])
    produced = b"".join(p.read_bytes() for p in (tmp_path / "cases").rglob("*") if p.is_file())
    names = " ".join(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    leaked = {(k, v) for d in _source() for k, v in _values(d) if v.encode() in produced}
    assert not leaked
    src = _source()[0]
    for d in (pydicom.dcmread(p) for p in (tmp_path / "cases" / "again" / "dicom").iterdir()):
        assert d.PatientID == src.PatientID and d.PatientName == src.PatientName  # required to attach
        assert d.PatientBirthDate == "" and d.StudyDate == "" and d.AccessionNumber == "" and d.PatientSex == ""
    for value in (str(src.PatientName), str(src.PatientID)):
        assert value not in caplog.text and value not in names
