"""docs/figures/make_report_screenshots.py makes the report screenshots of docs/anomaly.md."""

import importlib.util
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from report_helpers import brain_case, scored_run

SCRIPT = Path(__file__).resolve().parents[3] / "docs" / "figures" / "make_report_screenshots.py"


def test_screenshots_of_page_and_case(tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")):
        pytest.skip("no Chromium (.ci/run installs it)")
    spec = importlib.util.spec_from_file_location("make_report_screenshots", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = scored_run(tmp_path / "scores", [brain_case()])
    assert module.main([str(run), "--out", str(tmp_path / "shots")]) == 0
    full = mpimg.imread(tmp_path / "shots" / "report_full.png")
    case = mpimg.imread(tmp_path / "shots" / "report_case.png")
    assert full.shape[1] == 640 and full.shape[0] > 1000  # 1280 CSS px at half scale, the whole page
    assert case.shape[1] == 1280 and 900 < case.shape[0] <= 1800
    for img in (full, case):
        assert img[..., :3].std() > 0.1  # not blank: text, montage
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == ["report_full.png", "report_case.png"][::-1]
