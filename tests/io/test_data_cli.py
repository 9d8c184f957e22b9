"""`medmae data scan` end to end through medmae.cli.main.main."""

from __future__ import annotations

import csv
import logging
import shutil

from ingest_helpers import DATA, IDENTITY_STRINGS, THREE, copy_series
from medmae.cli.main import main
from medmae.io.manifest import read_manifest


def _tree(root):
    (root / "scans/mri").mkdir(parents=True)
    shutil.copy(DATA / "spine_t2.nii.gz", root / "scans/mri/spine_t2.nii.gz")
    shutil.copy(DATA / "spine_t2_cordseg.nii.gz", root / "scans/mri/spine_t2_cordseg.nii.gz")
    shutil.copy(DATA / "brain1_t1c.nrrd", root / "scans/mri/brain1_t1c.nrrd")
    copy_series(THREE, root / "scans/ct/patient_a")
    (root / "scans/bad.nii.gz").write_text("hello")
    return root / "scans"


def test_scan_writes_manifest_and_bad_list(tmp_path, capsys, caplog):
    scans = _tree(tmp_path)
    out = tmp_path / "manifest.csv"
    with caplog.at_level(logging.DEBUG):
        rc = main(["data", "scan", str(scans), "--out", str(out), "--val-fraction", "0.4", "--seed", "1", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "3 case(s): CT 1, MR 2; splits: train 2, val 1; 1 with a label map" in printed
    assert "1 bad file(s):" in printed and "bad.nii.gz: not a readable NIfTI" in printed
    rows = list(csv.DictReader(out.open()))
    assert [r["case_id"] for r in rows] == ["ct__patient_a_s0", "mri__brain1_t1c", "mri__spine_t2"]
    assert rows[2]["image"] == "scans/mri/spine_t2.nii.gz" and rows[2]["label"] == "scans/mri/spine_t2_cordseg.nii.gz"
    assert [r["modality"] for r in rows] == ["CT", "MR", "MR"] and rows[1]["sequence"] == "t1c"
    cases = read_manifest(out)
    assert cases[0].image == [str(scans / "ct/patient_a")]
    bad = list(csv.DictReader((tmp_path / "manifest.bad.csv").open()))
    assert [b["path"].rsplit("/", 1)[-1] for b in bad] == ["bad.nii.gz"]
    everything = out.read_text() + printed + caplog.text + (tmp_path / "manifest.bad.csv").read_text()
    assert not [s for s in IDENTITY_STRINGS if s in everything]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.bad.csv", "manifest.csv", "scans"]


def test_scan_of_only_bad_files_fails_cleanly(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in/x.nii.gz").write_text("nope")
    out = tmp_path / "out/m.csv"
    assert main(["data", "scan", str(tmp_path / "in"), "--out", str(out), "--no-progress"]) == 2
    assert "no usable scans found" in capsys.readouterr().err
    assert not out.exists() and (tmp_path / "out/m.bad.csv").exists()


def test_missing_dir_and_bare_group(tmp_path, capsys):
    assert main(["data", "scan", str(tmp_path / "nope"), "--out", str(tmp_path / "m.csv")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["data"]) == 2
    assert "scan" in capsys.readouterr().out
