"""File names with ; quotes commas spaces and newlines survive `data scan` -> `preprocess` (issue 6, item 4)."""

from __future__ import annotations

import csv
import json
import shutil

from ingest_helpers import DATA
from medmae.cli.main import main
from medmae.preprocess.cache import read_index
from medmae.io.manifest import Case, decode_paths, encode_paths, read_manifest, write_manifest

ODD = 'spine t2; "v1", a\nb'  # every character a naive manifest splits or breaks on


def test_odd_names_survive_scan_and_preprocess(tmp_path, capsys):
    scans = tmp_path / "scans"
    (scans / "odd").mkdir(parents=True)
    shutil.copy(DATA / "spine_t2.nii.gz", scans / f"odd/{ODD}.nii.gz")
    shutil.copy(DATA / "spine_t2_cordseg.nii.gz", scans / f"odd/{ODD}_cordseg.nii.gz")
    nn = scans / "Dataset002_Odd/imagesTr"
    nn.mkdir(parents=True)
    for ch in range(2):  # a two-channel nnU-Net case whose name holds ; , " and a newline
        shutil.copy(DATA / "spine_t2.nii.gz", nn / f'p;1, "q"\nr_{ch:04d}.nii.gz')
    (nn.parent / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T2", "1": "T2"}}))
    manifest = tmp_path / "manifest.csv"
    assert main(["data", "scan", str(scans), "--out", str(manifest), "--no-progress"]) == 0
    cases = {c.case_id: c for c in read_manifest(manifest)}
    assert len(cases) == 2, capsys.readouterr().out
    odd = next(c for c in cases.values() if len(c.image) == 1)
    pair = next(c for c in cases.values() if len(c.image) == 2)
    assert odd.image == [str(scans / f"odd/{ODD}.nii.gz")] and odd.label == str(scans / f"odd/{ODD}_cordseg.nii.gz")
    assert pair.image == [str(nn / f'p;1, "q"\nr_{ch:04d}.nii.gz') for ch in range(2)]
    assert pair.sequences == ["t2", "t2"]  # every channel's sequence is recorded
    cache = tmp_path / "cache"
    argv = ["preprocess", str(manifest), "--out", str(cache), "--workers", "0", "--no-progress",
            "spacing=[3,3,3]", "priors.supervoxels=16"]
    assert main(argv) == 0
    assert "bad 0" in capsys.readouterr().out
    index = {r["case_id"]: r for r in read_index(cache)}
    assert set(index) == set(cases)
    assert int(index[pair.case_id]["channels"]) == 2 and int(index[odd.case_id]["channels"]) == 1


def test_encoding_round_trip_and_old_manifests(tmp_path):
    for paths in (["a.nii.gz"], ["a;b.nii.gz"], ["[x].nii"], ["t1.nii", 'x, "y"\n.nii', "z;w.nii"]):
        assert decode_paths(encode_paths(paths)) == paths
    assert encode_paths(["plain.nii.gz"]) == "plain.nii.gz"  # a single ordinary path stays readable
    old = tmp_path / "old.csv"  # written before JSON lists and the mask column
    old.write_text("case_id,image,modality,sequence,label,anatomy,split,sha256\nc1,a.nii.gz;b.nii.gz,MR,t1,,,train,\n")
    (case,) = read_manifest(old, resolve=False)
    assert case.image == ["a.nii.gz", "b.nii.gz"] and case.mask == ""
    new = write_manifest([Case("c2", ['x;"y",\nz.nii', "w.nii"], "MR", mask="brain mask.nii")], tmp_path / "new.csv")
    rows = list(csv.DictReader(new.open(newline="")))
    assert json.loads(rows[0]["image"]) == ['x;"y",\nz.nii', "w.nii"] and rows[0]["mask"] == "brain mask.nii"
    assert read_manifest(new, resolve=False)[0].image == ['x;"y",\nz.nii', "w.nii"]
