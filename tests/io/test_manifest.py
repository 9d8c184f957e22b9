"""The manifest CSV: round trip, path resolution, clear errors with the line number."""

import hashlib

import pytest

from medmae.io.manifest import Case, read_manifest, sha256_of, write_manifest


def test_round_trip_and_relative_paths(tmp_path):
    cases = [Case("a", ["img/a_t1.nii.gz", "img/a_t2.nii.gz"], "MR", sequence="t1", anatomy="lab/a.nii.gz"),
             Case("b", ["img/b.nii.gz"], "CT", label="lab/b.nii.gz", split="val", sha256="ab" * 32)]
    path = write_manifest(cases, tmp_path / "m.csv")
    assert read_manifest(path, resolve=False) == cases
    a, b = read_manifest(path)
    assert a.image == [str(tmp_path / "img/a_t1.nii.gz"), str(tmp_path / "img/a_t2.nii.gz")]
    assert a.label == "" and a.anatomy == str(tmp_path / "lab/a.nii.gz")
    assert b.split == "val" and b.sha256 == "ab" * 32
    assert [p.name for p in a.source_paths()] == ["a_t1.nii.gz", "a_t2.nii.gz", "a.nii.gz"]


@pytest.mark.parametrize("body, message", [
    ("case_id,image\nx,x.nii\n", "lacks column(s) modality"),
    ("case_id,image,modality\nx,x.nii,PET\n", "line 2: case x: modality must be one of"),
    ("case_id,image,modality\nx,,CT\n", "line 2: case x: no image path"),
    ("case_id,image,modality\nx,x.nii,CT\nx,y.nii,MR\n", "line 3: duplicate case_id 'x'"),
])
def test_bad_manifest_names_file_and_line(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(ValueError) as e:
        read_manifest(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(ValueError, match="cannot read manifest"):
        read_manifest(tmp_path / "none.csv")


def test_sha256_covers_every_file_of_a_folder(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "2.dcm").write_bytes(b"two")
    (tmp_path / "s" / "1.dcm").write_bytes(b"one")
    (tmp_path / "label.nii").write_bytes(b"lab")
    expected = hashlib.sha256(b"onetwolab").hexdigest()
    assert sha256_of([tmp_path / "s", tmp_path / "label.nii"]) == expected
    (tmp_path / "s" / "2.dcm").write_bytes(b"tw0")
    assert sha256_of([tmp_path / "s", tmp_path / "label.nii"]) != expected
