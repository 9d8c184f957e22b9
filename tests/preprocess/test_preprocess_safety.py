"""Preprocess against hostile manifests, stale caches and full disks (issue 19, items 1, 3, 6)."""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np
import pytest

import medmae.preprocess.cache as cache_mod
from medmae.cli.main import main
from medmae.preprocess.cache import CASES, read_index
from medmae.io.manifest import Case, write_manifest
from medmae.preprocess.batch import preprocess_manifest
from medmae.preprocess.output import OutputError

from pp_helpers import SPINE, small_config


def _victim(tmp_path):
    victim = tmp_path / "victim_project"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    return victim


def test_hostile_case_ids_never_touch_a_folder_outside_the_cache(tmp_path, capsys):
    victim = _victim(tmp_path)
    cache = tmp_path / "work" / "cache"
    rows = [("ok", SPINE), ("../../../victim_project", SPINE), (str(victim), SPINE), ("..", SPINE)]
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,image,modality\n" + "".join(f'"{c}",{p},MR\n' for c, p in rows))
    code = main(["preprocess", str(manifest), "--out", str(cache), "--workers", "0", "--no-progress",
                 "spacing=[3,3,3]", "priors.supervoxels=8"])
    out = capsys.readouterr().out
    assert code == 0
    assert sorted(os.listdir(victim)) == ["thesis.tex"] and (victim / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in (cache / CASES).iterdir()) == ["ok"]
    assert [r["case_id"] for r in read_index(cache)] == ["ok"]
    for cid in ("../../../victim_project", str(victim), ".."):
        assert f"bad {cid}: {manifest}: manifest line" in out
    assert out.count("path separator") == 2 and "names a folder above" in out


def test_symlinked_case_folder_is_not_replaced(tmp_path):
    """A case folder that is a link to somewhere else is refused before anything is replaced."""
    victim = _victim(tmp_path)
    cache = tmp_path / "cache"
    (cache / CASES).mkdir(parents=True)
    (cache / CASES / "spine").symlink_to(victim)
    manifest = write_manifest([Case("spine", [str(SPINE)], "MR")], tmp_path / "m.csv")
    report = preprocess_manifest(manifest, cache, small_config(), progress=False)
    assert sorted(os.listdir(victim)) == ["thesis.tex"]
    (bad,) = report.bad
    assert "outside the output folder" in bad["problem"] and bad["path"] == str(cache / CASES / "spine")


def _run(manifest, cache):
    return preprocess_manifest(manifest, cache, small_config(), progress=False)


def test_stale_cache_is_never_reused(tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    a, b = shutil.copy(SPINE, src / "a.nii.gz"), shutil.copy(SPINE, src / "b.nii.gz")
    import nibabel as nib

    from medmae.io.scan import scan_folder

    cases, _ = scan_folder(src, progress=False)  # sha256 as `data scan` records it
    manifest = write_manifest(cases, tmp_path / "m.csv")
    cache = tmp_path / "cache"
    first = _run(manifest, cache)
    assert len(first.done) == 2
    again = _run(manifest, cache)
    assert len(again.skipped) == 2 and not again.done  # unchanged: skipped by size and mtime
    os.utime(a, ns=(1, 1))  # touched, same bytes: hashed, still skipped
    assert len(_run(manifest, cache).skipped) == 2
    img = nib.load(a)
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[::-1].copy(), img.affine), str(a))  # replaced
    os.remove(b)  # deleted
    third = _run(manifest, cache)
    assert [d["case_id"] for d in third.done] == ["a"] and not third.skipped
    (gone,) = third.bad
    assert gone["path"] == str(b) and "source vanished" in gone["problem"]
    assert [r["case_id"] for r in read_index(cache)] == ["a"]
    assert not (cache / CASES / "b").exists()
    meta = json.loads((cache / CASES / "a" / "meta.json").read_text())
    from medmae.io.manifest import sha256_of

    assert meta["source_sha256"] == sha256_of([a]) != cases[0].sha256  # the bytes read, not the scan's
    assert "changed since `data scan`" in caplog.text
    assert "done 1, skipped 0 (unchanged), bad 1" in third.lines()[0]


def test_source_changed_while_read_is_refused(tmp_path, monkeypatch):
    src = shutil.copy(SPINE, tmp_path / "a.nii.gz")
    manifest = write_manifest([Case("a", [str(src)], "MR")], tmp_path / "m.csv")
    import medmae.preprocess.case as case_mod

    real = case_mod.read_channels

    def read_then_touch(paths):
        out = real(paths)
        os.utime(src, ns=(5, 5))  # another program writes it meanwhile
        return out

    monkeypatch.setattr(case_mod, "read_channels", read_then_touch)
    (bad,) = _run(manifest, tmp_path / "cache").bad
    assert "changed while it was being read" in bad["problem"] and bad["path"] == str(src)


def test_full_disk_stops_the_batch_names_the_folder_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    cases = [Case(f"c{i}", [str(SPINE)], "MR") for i in range(4)]
    manifest = write_manifest(cases, tmp_path / "m.csv")
    cache = tmp_path / "cache"
    assert main(["preprocess", str(manifest), "--out", str(cache), "--workers", "0", "--no-progress",
                 "spacing=[3,3,3]", "priors.supervoxels=8"]) == 0
    index_before = (cache / "index.csv").read_text()
    saves = []

    def full(path, arr, *a, **k):  # the second case's write finds the disk full
        saves.append(path)
        raise OSError(errno.ENOSPC, "No space left on device")

    (SPINE_COPY := tmp_path / "s.nii.gz").write_bytes(SPINE.read_bytes())
    write_manifest([Case(f"n{i}", [str(SPINE_COPY)], "MR") for i in range(3)] + cases, manifest)
    monkeypatch.setattr(cache_mod.np, "save", full)
    code = main(["preprocess", str(manifest), "--out", str(cache), "--workers", "0", "--no-progress",
                 "spacing=[3,3,3]", "priors.supervoxels=8"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"{cache}: no space left on device while writing case n0" in captured.err
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1
    assert len(saves) == 1  # stopped at once: no other case tried to write
    assert "stopped:" in captured.out
    assert (cache / "index.csv").read_text() == index_before  # previous index kept
    assert not [p for p in cache.rglob(".*") if p.name != ".preprocess.lock"]  # nothing half-written
    assert sorted(p.name for p in (cache / CASES).iterdir()) == ["c0", "c1", "c2", "c3"]


def test_short_write_without_errno_on_a_full_disk(tmp_path, monkeypatch):
    """numpy's '155550 requested and 66528 written' carries no errno: free space decides."""
    import medmae.io.errors as errors_mod
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(errors_mod.shutil, "disk_usage", lambda p: usage(3 << 20, 3 << 20, 0))
    monkeypatch.setattr(cache_mod.np, "save", lambda *a, **k: (_ for _ in ()).throw(
        OSError("155550 requested and 66528 written")))
    manifest = write_manifest([Case("a", [str(SPINE)], "MR"), Case("b", [str(SPINE)], "MR")], tmp_path / "m.csv")
    report = _run(manifest, tmp_path / "cache")
    assert isinstance(report.stopped, OutputError) and "no space left on device" in str(report.stopped)
    assert not report.bad and not report.done


def test_read_only_output_folder_is_one_line(tmp_path, monkeypatch, capsys):
    manifest = write_manifest([Case("a", [str(SPINE)], "MR")], tmp_path / "m.csv")
    real_open = os.open

    def read_only(path, flags, *a, **k):  # sessions may run as root, where chmod stops nothing
        if str(path).startswith(str(tmp_path / "ro")) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a, **k)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", read_only)
    code = main(["preprocess", str(manifest), "--out", str(tmp_path / "ro"), "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert f"{tmp_path / 'ro'}: read-only file system" in err and "Traceback" not in err


def test_two_slice_series_below_the_minimum_extent(tmp_path):
    """Issue 19, item 10: a 2-slice series is refused, not cached as a mostly-padding volume."""
    from pp_helpers import DATA

    two = tmp_path / "two"
    two.mkdir()
    for name in ("01.dcm", "02.dcm"):
        shutil.copy(DATA / "dicom" / "ct_3slice_series" / name, two / name)
    manifest = write_manifest([Case("two", [str(two)], "CT"), Case("spine", [str(SPINE)], "MR")], tmp_path / "m.csv")
    report = _run(manifest, tmp_path / "cache")
    (bad,) = report.bad
    assert bad["path"] == str(two) and "2 mm along axis 2, below min_extent_mm=10" in bad["problem"]
    assert [d["case_id"] for d in report.done] == ["spine"]
    cfg = small_config()
    cfg.min_extent_mm = 1.0
    report = preprocess_manifest(manifest, tmp_path / "cache", cfg, progress=False)
    assert not report.bad and [d["case_id"] for d in report.skipped] == ["spine"]  # extent is no hash input
    cfg.min_extent_mm = 53.0  # a cached case below a raised minimum is not skipped into the index
    report = preprocess_manifest(manifest, tmp_path / "cache", cfg, progress=False)
    assert sorted(b["case_id"] for b in report.bad) == ["spine", "two"]


def test_extent_counts_millimetres_not_voxels(tmp_path):
    import nibabel as nib

    from pp_helpers import save_nifti

    img = nib.load(SPINE)
    thin = save_nifti(np.asanyarray(img.dataobj)[:, :, :20], np.diag([1.0, 1.0, 0.4, 1.0]), tmp_path / "thin.nii.gz")
    manifest = write_manifest([Case("thin", [str(thin)], "MR")], tmp_path / "m.csv")
    (bad,) = _run(manifest, tmp_path / "cache").bad
    assert "20 voxel(s) x 0.4 mm = 8 mm along axis 2" in bad["problem"]
