"""Odd file names decided at scan time; a manifest that cannot be written says why in one line
(issue 19, items 5 and 6)."""

from __future__ import annotations

import csv
import errno
import os
import shutil

import medmae.atomic as atomic_mod
from ingest_helpers import DATA
from medmae.cli.main import main
from medmae.io.case_id import MAX_CASE_ID
from medmae.io.manifest import read_manifest
from medmae.preprocess.batch import preprocess_manifest
from medmae.preprocess.config import PreprocessConfig

SPINE = DATA / "spine_t2.nii.gz"


def _latin1(root) -> bytes:
    """A file named 'café_t2.nii.gz' in Latin-1 (not UTF-8) under ``root``; returns its name in bytes."""
    name = b"caf\xe9_t2.nii.gz"
    with open(os.fsencode(root) + b"/" + name, "wb") as f:
        f.write(SPINE.read_bytes())
    return name


def test_non_utf8_and_250_character_names(tmp_path, capsys):
    root = tmp_path / "scans"
    root.mkdir()
    shutil.copy(SPINE, root / "plain_t2.nii.gz")
    _latin1(root)
    os.makedirs(os.fsencode(root) + b"/d\xfcsseldorf")
    shutil.copy(SPINE, os.fsencode(root) + b"/d\xfcsseldorf/x_t2.nii.gz")
    long_name = "n" * 243 + ".nii.gz"
    assert len(long_name) == 250
    shutil.copy(SPINE, root / long_name)
    out = tmp_path / "m.csv"
    assert main(["data", "scan", str(root), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    cases = read_manifest(out)  # the manifest was written
    ids = sorted(c.case_id for c in cases)
    assert len(ids) == 2 and "plain_t2" in ids
    (long_id,) = [i for i in ids if i.startswith("nnn")]
    assert len(long_id) == MAX_CASE_ID
    with open(tmp_path / "m.bad.csv", newline="", encoding="utf-8") as f:
        bad = {r["path"]: r["problem"] for r in csv.DictReader(f)}
    assert "not valid UTF-8" in bad[f"{root}/caf\\xe9_t2.nii.gz"]
    assert "folder file name is not valid UTF-8" in bad[f"{root}/d\\xfcsseldorf"]
    assert f"{root}/caf\\xe9_t2.nii.gz" in printed
    cfg = PreprocessConfig(spacing=(3.0, 3.0, 3.0), workers=0)
    cfg.priors.supervoxels = 8
    report = preprocess_manifest(out, tmp_path / "cache", cfg, progress=False)
    assert sorted(d["case_id"] for d in report.done) == ids and not report.bad


def test_manifest_on_a_full_or_read_only_disk_is_one_line(tmp_path, monkeypatch, capsys):
    root = tmp_path / "scans"
    root.mkdir()
    shutil.copy(SPINE, root / "a_t2.nii.gz")
    for code, words in ((errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only file system")):
        def fail(path, writer, code=code):
            raise OSError(code, os.strerror(code), str(path))

        monkeypatch.setattr(atomic_mod, "atomic_write", fail)
        out = tmp_path / "out" / "m.csv"
        assert main(["data", "scan", str(root), "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"{out.parent}: cannot write the manifest: {words}" in err
        assert not out.exists()
