"""A corpus of 80+ broken or awkward inputs generated on the fly (issue 6, item 9; issue 19).

Every broken input is reported with its file and the reason, the batch goes on (the good
cases come through), and preprocessing leaves no half-written cache entry behind (nor
touches anything outside the cache). Run with -s to see the count of inputs tried.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

import medmae.io.dicom as dicom_mod
import medmae.io.header_checks as header_mod
import medmae.io.image_file as image_file_mod
from broken_corpus import SPINE, SPINE_SEG, Expect, scan_corpus
from broken_corpus19 import manifest_rows, scan_inputs
from ingest_helpers import DATA, save_nifti
from medmae.cli.main import main
from medmae.cli.data import shown
from medmae.preprocess.cache import CASES, read_index
from medmae.io.manifest import Case, read_manifest, write_manifest
from medmae.preprocess.batch import preprocess_manifest
from medmae.preprocess.config import PreprocessConfig


def _deny(monkeypatch, root):
    """Sessions run as root, where chmod 000 stops nothing: refuse reads by patching instead."""
    real_open, real_scandir = open, os.scandir

    def guarded(file, *a, **k):
        if str(file) == str(root / "locked/secret_t2.nii.gz") or str(file).endswith("dicom/unreadable/02.dcm"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)

    def scandir(path="."):
        if str(path) == str(root / "closed"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(image_file_mod, "open", guarded, raising=False)
    monkeypatch.setattr(dicom_mod, "open", guarded, raising=False)
    monkeypatch.setattr(os, "scandir", scandir)


def _matches(expect: Expect, path: str) -> bool:
    want = str(expect.path)
    return path.startswith(want) if want.endswith("#") else path == want


def _preprocess_corpus(tmp_path) -> tuple[list[Case], dict[str, str]]:
    """Cases that pass a scan but fail in preprocessing (files changed after the scan...)."""
    d = tmp_path / "pp"
    d.mkdir()
    arr, aff = np.asanyarray(nib.load(SPINE).dataobj), nib.load(SPINE).affine
    # gone.nii.gz: listed in the manifest, deleted since
    data = SPINE.read_bytes()
    (d / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    flat = np.zeros(arr.shape, np.int16)
    flat[10:50, 10:45, 10:40] = 100  # a body of one constant value: nothing to z-score
    save_nifti(d / "flat.nii.gz", flat, aff)
    save_nifti(d / "zero.nii.gz", np.zeros(arr.shape, np.int16), aff)
    save_nifti(d / "empty_mask.nii.gz", np.zeros(arr.shape, np.uint8), aff)
    big = arr.astype(np.float32)
    big[3, 3, 3] = -3e38
    save_nifti(d / "overflow.nii.gz", big, aff)
    save_nifti(d / "huge_labels.nii.gz", np.full(arr.shape, 40000, np.int32), aff)
    shifted = aff.copy()
    shifted[:3, 3] += 7.0  # the label moved 7 mm: another grid
    save_nifti(d / "shifted_seg.nii.gz", np.asanyarray(nib.load(SPINE_SEG).dataobj), shifted)
    cases = [Case("good", [str(SPINE)], "MR"),
             Case("gone", [str(d / "gone.nii.gz")], "MR"), Case("cut", [str(d / "cut.nii.gz")], "MR"),
             Case("flat", [str(d / "flat.nii.gz")], "MR"), Case("zero", [str(d / "zero.nii.gz")], "MR"),
             Case("nomask", [str(SPINE)], "MR", mask=str(d / "empty_mask.nii.gz")),
             Case("overflow", [str(d / "overflow.nii.gz")], "MR"),
             Case("huge", [str(SPINE)], "MR", anatomy=str(d / "huge_labels.nii.gz")),
             Case("shifted", [str(SPINE)], "MR", label=str(d / "shifted_seg.nii.gz"))]
    reasons = {"gone": (d / "gone.nii.gz", "no such file"), "cut": (d / "cut.nii.gz", "corrupt or truncated"),
               "flat": (d / "flat.nii.gz", "constant intensity"), "zero": (d / "zero.nii.gz", "constant image"),
               "nomask": (d / "empty_mask.nii.gz", "mask is empty"),
               "overflow": (d / "overflow.nii.gz", "near the float limit"),
               "huge": (d / "huge_labels.nii.gz", "do not fit int16"),
               "shifted": (d / "shifted_seg.nii.gz", "does not match its image")}
    return cases, reasons


def test_broken_input_corpus(tmp_path, monkeypatch, capsys):
    root = tmp_path / "corpus"
    expects = scan_corpus(root) + scan_inputs(root, tmp_path / "outside")
    monkeypatch.setattr(header_mod, "GZIP_SLACK", 1024)  # a 1 MB stream beyond its header is a bomb
    shutil.copy(SPINE, root / "good_t2.nii.gz")
    shutil.copy(DATA / "ct_abdomen_3mm.nii.gz", root / "good_ct.nii.gz")
    _deny(monkeypatch, root)
    out = tmp_path / "manifest.csv"
    assert main(["data", "scan", str(root), "--out", str(out), "--no-progress", "--channels", "echo1,echo2"]) == 0
    printed = capsys.readouterr().out
    with open(tmp_path / "manifest.bad.csv", newline="") as f:
        bad = [(r["path"], r["problem"]) for r in csv.DictReader(f)]
    cases = read_manifest(out)
    images = [p for c in cases for p in c.image]
    for e in expects:
        if e.ok:
            key = "#" if str(e.path).endswith("#") else ""
            real = Expect(e.name, Path(os.path.realpath(str(e.path).rstrip("#")) + key))
            assert any(_matches(real, p) for p in images), f"{e.name}: {e.path} did not become a case"
            continue
        found = [problem for path, problem in bad if _matches(e, path)]
        assert found, f"{e.name}: {e.path} not reported; bad list: {bad}"
        assert any(e.reason in problem for problem in found), f"{e.name}: {found} lacks {e.reason!r}"
        assert any(shown(path) in printed for path, _ in bad if _matches(e, path)), f"{e.name} not printed"
    ids = {c.case_id for c in cases}
    assert {"good_t2", "good_ct", "mc3__pat"} <= ids  # the batch went on
    assert not any("Traceback" in p for _, p in bad)

    pp_cases, reasons = _preprocess_corpus(tmp_path)
    manifest = write_manifest([c for c in cases if c.case_id in ("good_t2", "odd__noqform_t2")] + pp_cases,
                              tmp_path / "pp.csv")
    cache = tmp_path / "cache"
    rows, why19 = manifest_rows(tmp_path / "pp19", cache)
    with open(manifest, "a", newline="") as f:  # rows no Case would hold: written as a hand would
        csv.writer(f, lineterminator="\n").writerows([[cid, image, modality] + [""] * 6 for cid, image, modality in rows])
    reasons.update({cid: (path or manifest, reason) for cid, (path, reason) in why19.items()})
    cfg = PreprocessConfig(spacing=(3.0, 3.0, 3.0), workers=0)
    cfg.priors.supervoxels = 16
    report = preprocess_manifest(manifest, cache, cfg, progress=False)
    got = {b["case_id"]: b for b in report.bad}
    for cid, (path, reason) in reasons.items():
        assert got[cid]["path"] == str(path) and reason.lower() in got[cid]["problem"].lower(), (cid, got.get(cid))
    done = sorted(s["case_id"] for s in report.done)
    assert done == ["good", "good_t2", "odd__noqform_t2"]
    assert sorted(p.name for p in (cache / CASES).iterdir()) == sorted(done + ["linked"])  # nothing of the bad cases
    assert os.listdir(tmp_path / "pp19" / "victim") == ["keep.txt"]  # the linked folder was not replaced
    assert sorted(os.listdir(tmp_path)) == ["cache", "corpus", "manifest.bad.csv", "manifest.csv", "outside", "pp",
                                            "pp.csv", "pp19"]  # hostile ids wrote nothing beside the cache
    assert not [p for p in cache.rglob("*") if p.name.startswith(".") and p.name != ".preprocess.lock"]
    assert all((cache / CASES / c / "meta.json").is_file() and (cache / CASES / c / "image.npy").is_file()
               for c in done)
    assert sorted(r["case_id"] for r in read_index(cache)) == done
    tried = len(expects) + len(reasons)
    print(f"broken-input corpus: {tried} inputs tried ({len(expects)} at scan, {len(reasons)} at preprocess; "
          f"{sum(e.ok for e in expects)} awkward but usable)")
    assert tried > 80
