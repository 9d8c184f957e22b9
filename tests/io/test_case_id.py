"""Case ids: one rule for every manifest reader (issue 19, item 1)."""

from __future__ import annotations

import pytest

from medmae.heads.inputs import cases_from_inputs
from medmae.io.case_id import MAX_CASE_ID, case_id_problem, inside, safe_case_id
from medmae.io.manifest import Case, read_manifest, read_manifest_rows

from ingest_helpers import DATA

HOSTILE = {
    "../../../victim_project": "path separator",
    "/abs/victim": "path separator",
    "a/b": "path separator",
    "a\\b": "path separator",
    "..": "names a folder above",
    ".": "names a folder above",
    ".hidden.tmp": "starts with '.'",
    "x" * (MAX_CASE_ID + 1): f"longer than {MAX_CASE_ID}",
    "": "empty case_id",
    " pad": "white space",
    "tab\there": "control characters",
    "bad\udcffbyte": "not valid UTF-8",
}


@pytest.mark.parametrize("cid, why", HOSTILE.items())
def test_hostile_ids_are_refused_with_the_reason(cid, why):
    assert why in case_id_problem(cid)
    with pytest.raises(ValueError, match="case_id|empty"):
        Case(cid, ["x.nii"], "CT")


@pytest.mark.parametrize("cid", ["sub-01_ses-1", "BraTS_001", "a.b-c", "x" * MAX_CASE_ID, "ünï cödé 1"])
def test_ordinary_ids_pass(cid):
    assert case_id_problem(cid) == ""


def test_safe_case_id_from_file_names():
    assert safe_case_id("../../etc/passwd") == "_._.._etc_passwd"  # no separator, no leading '.'
    long_a, long_b = safe_case_id("a" * 250 + "1"), safe_case_id("a" * 250 + "2")
    assert len(long_a) == MAX_CASE_ID and long_a != long_b and not case_id_problem(long_a)
    assert not case_id_problem(safe_case_id("bad\udcffname"))
    assert safe_case_id("") == "case"


def test_inside_refuses_escapes_and_symlinks(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert inside(out, out / "case1") == out / "case1"
    for escape in (out / ".." / "victim", out, tmp_path / "victim"):
        with pytest.raises(ValueError, match="outside the output folder"):
            inside(out, escape)
    (tmp_path / "victim").mkdir()
    (out / "linked").symlink_to(tmp_path / "victim")
    with pytest.raises(ValueError, match="outside the output folder"):
        inside(out, out / "linked")


def _manifest(tmp_path, ids):
    path = tmp_path / "m.csv"
    rows = "".join(f'"{cid}",{DATA / "spine_t2.nii.gz"},MR\n' for cid in ids)
    path.write_text("case_id,image,modality\n" + rows, encoding="utf-8")
    return path


def test_manifest_rows_refused_one_by_one(tmp_path):
    path = _manifest(tmp_path, ["good", "../../../victim_project", "/abs", "also_good"])
    cases, refused = read_manifest_rows(path)
    assert [c.case_id for c in cases] == ["good", "also_good"]
    assert [(line, cid) for line, cid, _ in refused] == [(3, "../../../victim_project"), (4, "/abs")]
    assert all("path separator" in why for _, _, why in refused)
    with pytest.raises(ValueError, match=r"line 3: case_id '../../../victim_project' holds a path separator"):
        read_manifest(path)


def test_manifest_with_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("case_id,image,modality\nbom,x.nii.gz,CT\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    (case,) = read_manifest(path, resolve=False)
    assert case.case_id == "bom"


def test_heads_inputs_refuse_hostile_rows_and_go_on(tmp_path):
    """`anomaly score` and `segment` read their manifests through cases_from_inputs."""
    path = _manifest(tmp_path, ["ok", "x/../../escape", "y/nested"])
    cases, bad = cases_from_inputs([path])
    assert [c.case_id for c in cases] == ["ok"]
    assert [p for p, _ in bad] == [str(path)] * 2
    assert all("refused" in why and "path separator" in why for _, why in bad)
    (tmp_path / "notes.csv").write_text("just,some\n1,2\n")
    cases, bad = cases_from_inputs([tmp_path / "notes.csv", DATA / "spine_t2.nii.gz"])
    assert len(cases) == 1 and "lacks column(s)" in bad[0][1]
