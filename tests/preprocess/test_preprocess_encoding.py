"""Cache files are read as UTF-8 whatever the process locale: a library (GDCM's DICOM writer
in SimpleITK) or a cluster's LANG=C can switch it to ASCII, and a case id or a source path
with a non-ASCII letter (a folder named for a site, e.g. "Zürich") must still read back."""

import json
import locale

import pytest

from medmae.atomic import atomic_write_text
from medmae.preprocess.cache import INDEX, open_case, read_index


@pytest.fixture
def ascii_locale():
    old = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C")
    except locale.Error:
        pytest.skip("no C locale")
    if locale.getpreferredencoding(False).lower().replace("-", "") == "utf8":
        pytest.skip("this interpreter reads UTF-8 under every locale (UTF-8 mode)")
    yield
    locale.setlocale(locale.LC_CTYPE, old)


def test_index_and_meta_with_non_ascii_text_read_back_under_an_ascii_locale(tmp_path, ascii_locale):
    case = tmp_path / "cases" / "zurich_01"
    case.mkdir(parents=True)
    atomic_write_text(case / "meta.json", json.dumps({"source": "/data/Zürich/t2.nii.gz"}, ensure_ascii=False))
    atomic_write_text(tmp_path / INDEX, "case_id,source\nzurich_01,/data/Zürich/t2.nii.gz\n")
    assert read_index(tmp_path) == [{"case_id": "zurich_01", "source": "/data/Zürich/t2.nii.gz"}]
    assert open_case(case).meta["source"] == "/data/Zürich/t2.nii.gz"
