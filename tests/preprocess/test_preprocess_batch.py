"""preprocess_manifest: parallel run with a bad case, re-runs, config changes, crashes, locking."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from medmae.config.base import load_config
from medmae.preprocess.cache import list_cases, read_index
from medmae.io.manifest import Case
from medmae.preprocess.batch import LOCK, CacheBusyError, preprocess_manifest
from medmae.preprocess.config import PreprocessConfig

from pp_helpers import CT, MR, ct_case, mr_case, small_config, truncated_copy


@pytest.fixture
def three_cases(tmp_path, manifest_factory):
    """Manifest of CT, MR and a truncated copy of the CT; returns (manifest, bad file)."""
    bad = truncated_copy(CT, tmp_path / "broken_ct.nii.gz")
    cases = [ct_case(split="train"), mr_case(split="val"), Case("broken", [str(bad)], "CT")]
    return manifest_factory(cases), bad


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_parallel_batch_reports_bad_case_and_processes_the_rest(tmp_path, three_cases):
    manifest, bad = three_cases
    cache = tmp_path / "cache"
    cfg = small_config()
    report = preprocess_manifest(manifest, cache, cfg, workers=2, progress=False)
    assert sorted(s["case_id"] for s in report.done) == ["ct", "mr"] and not report.skipped
    assert [b["case_id"] for b in report.bad] == ["broken"]
    rows = _read_csv(cache / "report.csv")
    assert rows == [{"case_id": "broken", "path": str(bad), "problem": report.bad[0]["problem"]}]
    assert "truncated" in rows[0]["problem"] or "corrupt" in rows[0]["problem"]

    index = read_index(cache)
    assert [(r["case_id"], r["split"], r["modality"], r["channels"]) for r in index] == [
        ("ct", "train", "CT", "1"), ("mr", "val", "MR", "1")]
    assert index[0]["spacing"] == "3x3x3" and index[0]["shape"].count("x") == 2
    assert [c.case_id for c in list_cases(cache, split="val")] == ["mr"]
    assert load_config(PreprocessConfig, cache / "config.yaml") == cfg
    fp = json.loads((cache / "fingerprint.json").read_text())
    assert set(fp) == {"CT", "MR"} and fp["CT"]["cases"] == 1
    assert -200 < fp["CT"]["intensity"][0]["mean"] < 200  # HU inside the body: soft tissue, fat, air
    assert not (cache / LOCK).exists()
    assert not list((cache / "cases").glob(".*"))


def test_rerun_skips_and_changed_config_reprocesses(tmp_path, three_cases):
    manifest, _ = three_cases
    cache = tmp_path / "cache"
    cfg = small_config()
    first = preprocess_manifest(manifest, cache, cfg, workers=0, progress=False)
    stamp = os.stat(cache / "cases" / "ct" / "image.npy").st_mtime_ns

    again = preprocess_manifest(manifest, cache, cfg, workers=0, progress=False)
    assert (len(again.done), len(again.skipped), len(again.bad)) == (0, 2, 1)
    assert "skipped 2" in again.lines()[0] and "bad broken" in again.lines()[1]
    assert os.stat(cache / "cases" / "ct" / "image.npy").st_mtime_ns == stamp
    assert [r["case_id"] for r in read_index(cache)] == ["ct", "mr"]
    assert json.loads((cache / "fingerprint.json").read_text())["CT"]["cases"] == 1
    assert [s["shape"] for s in sorted(again.skipped, key=lambda s: s["case_id"])] == \
        [s["shape"] for s in sorted(first.done, key=lambda s: s["case_id"])]

    changed = small_config()
    changed.priors.supervoxels = 32
    third = preprocess_manifest(manifest, cache, changed, workers=0, progress=False)
    assert (len(third.done), len(third.skipped)) == (2, 0)
    sv = np.load(cache / "cases" / "ct" / "supervoxels.npy")
    assert 16 <= sv.max() <= 64
    assert load_config(PreprocessConfig, cache / "config.yaml").priors.supervoxels == 32


def test_changed_source_reprocesses(tmp_path, manifest_factory):
    img = tmp_path / "mr.nii.gz"
    img.write_bytes(MR.read_bytes())
    manifest = manifest_factory([Case("mr", [str(img)], "MR")])
    cache = tmp_path / "cache"
    preprocess_manifest(manifest, cache, small_config(), workers=0, progress=False)
    from medmae.io.read import read_volume
    from pp_helpers import save_nifti

    vol = read_volume(MR)
    save_nifti(vol.array[::-1].copy(), vol.affine, img)  # same name, new content
    report = preprocess_manifest(manifest, cache, small_config(), workers=0, progress=False)
    assert len(report.done) == 1 and not report.skipped


def test_interrupted_write_leaves_no_case(tmp_path, manifest_factory, monkeypatch):
    """Ctrl-C while a case's files are being written: no case folder, no temporaries."""
    import medmae.preprocess.cache as cache_mod

    calls = {"n": 0}
    real_save = np.save

    def save_then_interrupt(path, arr):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_save(path, arr)

    monkeypatch.setattr(cache_mod.np, "save", save_then_interrupt)
    manifest = manifest_factory([mr_case()])
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        preprocess_manifest(manifest, cache, small_config(), workers=0, progress=False)
    assert not (cache / "cases" / "mr").exists()
    assert not list((cache / "cases").iterdir())
    assert not (cache / LOCK).exists() and not (cache / "index.csv").exists()


def test_killed_worker_leftovers_are_cleaned_next_run(tmp_path, manifest_factory):
    """A process killed mid-write (os._exit, as by SIGKILL/OOM) leaves only a .tmp sibling,
    which the next run removes before processing the case normally."""
    manifest = manifest_factory([mr_case()])
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import os, numpy as np
        import medmae.preprocess.cache as cache_mod
        from medmae.io.manifest import read_manifest
        from medmae.preprocess.case import preprocess_case
        from medmae.preprocess.config import PreprocessConfig
        real_save = np.save
        def save_then_die(path, arr):
            real_save(path, arr)
            os._exit(9)
        cache_mod.np.save = save_then_die
        cfg = PreprocessConfig.model_validate_json({small_config().model_dump_json()!r})
        preprocess_case(read_manifest({str(manifest)!r})[0], cfg, {str(cache)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    leftovers = list((cache / "cases").glob(".mr.*.tmp"))
    assert len(leftovers) == 1 and (leftovers[0] / "image.npy").exists()
    assert not (cache / "cases" / "mr").exists()

    report = preprocess_manifest(manifest, cache, small_config(), workers=0, progress=False)
    assert len(report.done) == 1
    assert not list((cache / "cases").glob(".*")) and (cache / "cases" / "mr" / "meta.json").exists()


def test_live_lock_refuses_and_stale_lock_is_taken_over(tmp_path, manifest_factory):
    manifest = manifest_factory([mr_case()])
    cache = tmp_path / "cache"
    cache.mkdir()
    parent = os.getppid()  # alive, and not us
    (cache / LOCK).write_text(str(parent))
    with pytest.raises(CacheBusyError, match=str(parent)):
        preprocess_manifest(manifest, cache, small_config(), workers=0, progress=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (cache / LOCK).write_text(dead)
    report = preprocess_manifest(manifest, cache, small_config(), workers=0, progress=False)
    assert len(report.done) == 1 and not (cache / LOCK).exists()


def test_missing_file_and_blank_sha(tmp_path, manifest_factory):
    manifest = manifest_factory([mr_case(), Case("gone", [str(tmp_path / "nope.nii.gz")], "MR")])
    report = preprocess_manifest(manifest, tmp_path / "cache", small_config(), workers=0, progress=False)
    assert [b["case_id"] for b in report.bad] == ["gone"]
    assert report.bad[0]["path"] == str(tmp_path / "nope.nii.gz")
    assert len(report.done[0]["source_sha256"]) == 64
