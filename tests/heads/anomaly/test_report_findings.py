"""The report on a real scan (brain1 T1c, tumour mask): findings table, healthy percentile wording,
acquisition and protocol lines, version line, settings collapsed; any case id survives."""

import json
import re
import shutil

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medmae.heads.anomaly.report import write_report
from medmae.io.manifest import Case
from report_helpers import DATA, brain_case, scored_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scored")
    odd = [brain_case("brain1"), brain_case("odd $frac{x$ <b>id<b> & 'q'"), brain_case("second-case")]
    scored_run(out, odd)
    healthy = scored_run(tmp_path_factory.mktemp("healthy"),
                         [Case("spine", [str(DATA / "spine_t2.nii.gz")], "MR", sequence="t2")])
    return out, healthy


@pytest.fixture(scope="module")
def page(run, tmp_path_factory):
    """The report of the three cases, the spine scan as healthy reference, 3 healthy scans enough."""
    out, healthy = run
    path = tmp_path_factory.mktemp("report") / "report.html"
    return write_report(out, path, healthy_runs=[healthy], min_healthy=3).read_text(encoding="utf-8")


def _rows(text: str) -> list[list[str]]:
    return [re.findall(r"<td>([^<]*)</td>", row) for row in re.findall(r"<tr class='finding'[^>]*>(.*?)</tr>", text)]


def test_findings_table_measures_components_on_the_source_grid(run, page, tmp_path):
    out, healthy = run
    section = page[page.index('id="case-1"'):page.index('id="case-2"')]
    rows = _rows(section)
    peaks = [float(r[3]) for r in rows]
    assert len(rows) >= 3 and peaks == sorted(peaks, reverse=True)
    folder = out / "cases" / "brain1"
    img = nib.load(folder / "anomaly.nii.gz")
    amap = np.asarray(img.dataobj, np.float32)
    lab, n = ndimage.label(np.asarray(nib.load(folder / "binary.nii.gz").dataobj) > 0, np.ones((3, 3, 3), bool))
    top = int(np.argmax(ndimage.maximum(amap, lab, np.arange(1, n + 1)))) + 1
    ijk = np.unravel_index(int(np.argmax(np.where(lab == top, amap, -np.inf))), amap.shape)
    first = rows[0]
    assert [int(v) for v in first[7].split(", ")] == list(ijk)
    ras = img.affine[:3, :3] @ np.asarray(ijk, float) + img.affine[:3, 3]
    assert [float(v) for v in first[5].split(", ")] == pytest.approx(ras, abs=0.06)
    assert [float(v) for v in first[6].split(", ")] == pytest.approx(ras * [-1, -1, 1], abs=0.06)
    voxel_ml = abs(np.linalg.det(img.affine[:3, :3])) / 1000
    assert float(first[2]) == pytest.approx((lab == top).sum() * voxel_ml, abs=0.006)
    assert float(first[3]) == pytest.approx(amap[ijk], rel=1e-3)
    assert float(first[4]) == pytest.approx(amap[lab == top].mean(), rel=1e-3)
    assert first[8] == f"{ijk[2] + 1} of {amap.shape[2]}"
    # the healthy percentile says how many healthy scans it rests on
    assert "above 3 of 3 healthy scans" in page
    few = write_report(healthy, tmp_path / "few.html", healthy_runs=[healthy], min_healthy=10).read_text(encoding="utf-8")
    assert "insufficient: calibrated on 3 healthy scans, fewer than 10" in few and "above 3 of 3" not in few
    assert "protocol differs" not in few  # the reference scan itself matches its own protocol


def test_every_case_id_is_shown_or_explained(run, page, tmp_path):
    out, _ = run
    assert page.count("class=\"worklist-row\"") == 3
    assert "odd $frac{x$ &lt;b&gt;id&lt;b&gt; &amp; &#x27;q&#x27;" in page and "<b>id<b>" not in page
    assert ">second-case<" in page
    # a case folder lost after scoring: a line says so, the rest is reported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "cases" / "second-case")
    (copy / "cases" / "brain1" / "preview.npz").unlink()
    (copy / "cases" / "odd $frac{x$ <b>id<b> & 'q'" / "preview.npz").write_bytes(b"PK\x03\x04 truncated")
    page = write_report(copy, tmp_path / "r2.html").read_text(encoding="utf-8")
    assert "case second-case: listed in scores.csv but its case folder is missing" in page
    assert "case brain1 (#" in page and "preview.npz" in page
    assert "case odd $frac{x$ &lt;b&gt;id&lt;b&gt; &amp; &#x27;q&#x27; (#" in page and "BadZipFile" in page
    assert str(copy) not in page


def test_acquisition_protocol_version_and_settings(run, page):
    out, healthy = run
    assert "modality MR, sequence t1c" in page
    assert "source grid 256 x 256 x 25 voxels of 0.781 x 0.781 x 6.5 mm" in page
    assert "resampled to 3 x 3 x 3 mm, intensity zscore" in page
    assert "protocol differs: sequence t1c not among the reference scans&#x27; (t2)" in page
    assert "protocol differs: voxel spacing" in page and "protocol differs: field of view" in page
    assert re.search(r"<p id='version'>medmae [^;]+; report written \d{4}-\d\d-\d\d \d\d:\d\d UTC", page)
    assert "<details id='settings'><summary>" in page and "radiological convention" in page
    acq = json.loads((out / "cases" / "brain1" / "acquisition.json").read_text())
    assert acq["field_of_view_mm"] == pytest.approx([200.0, 200.0, 162.5], abs=0.1) and not acq["dicom"]


def test_uncalibrated_run_lists_three_distinct_hotspots(tmp_path):
    """Three hotspots, highest first (the first at the map's maximum), peaks >= 20 mm apart,
    each located by source voxel indices and RAS / LPS mm that agree with the NIfTI affine."""
    run = scored_run(tmp_path / "scores", [brain_case()], calibrated=False)
    page = write_report(run, tmp_path / "report.html").read_text(encoding="utf-8")
    rows = _rows(page)
    ref = nib.load(run / "cases" / "brain1" / "anomaly.nii.gz")
    amap = np.asarray(ref.dataobj, np.float32)
    body = np.asarray(nib.load(run / "cases" / "brain1" / "body.nii.gz").dataobj) > 0
    assert len(rows) == 3 and all(r[1] == "hotspot" for r in rows)
    assert float(rows[0][3]) == pytest.approx(amap[body].max(), rel=1e-3)
    peaks = [float(r[3]) for r in rows]
    assert peaks == sorted(peaks, reverse=True)
    ras = [np.array([float(v) for v in r[5].split(", ")]) for r in rows]
    for r, world in zip(rows, ras):
        ijk = np.array([int(v) for v in r[7].split(", ")])
        assert np.allclose(nib.affines.apply_affine(ref.affine, ijk), world, atol=0.06)
        assert np.allclose([float(v) for v in r[6].split(", ")], world * [-1, -1, 1], atol=0.06)
        assert float(r[3]) == pytest.approx(amap[tuple(ijk)], rel=1e-3) and body[tuple(ijk)]
    assert min(np.linalg.norm(a - b) for i, a in enumerate(ras) for b in ras[i + 1:]) >= 20.0 - 0.1
    assert "<td>not calibrated</td>" in page


def test_hotspots_are_distinct_regions():
    from medmae.heads.anomaly.findings import find_regions

    m = np.zeros((60, 30, 30), np.float32)
    body = np.ones(m.shape, bool)
    for x, v in ((10, 9.0), (13, 8.0), (30, 5.0), (50, 4.0), (55, 3.9)):  # 13 is 3 mm from 10: same place
        m[x - 1:x + 2, 14:17, 14:17] = v
    found = find_regions(m, None, body, np.diag([1.0, 1.0, 1.0, 1.0]))
    assert [f.voxel[0] for f in found] == [9, 29, 49] and [f.peak for f in found] == [9.0, 5.0, 4.0]
    assert found[0].volume_ml == pytest.approx(54 / 1000)  # the half-maximum region joins the blobs at 10 and 13
