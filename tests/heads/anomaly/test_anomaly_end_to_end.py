"""The real tumour scan (brain1 T1c + mask) through calibrate -> score -> evaluate -> report, by
the command line, with the MNI152 template as the healthy scan; the report checked in Chromium."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medmae.cli.main import main
from medmae.io.manifest import Case, write_manifest

DATA = Path(__file__).resolve().parents[2] / "data"
# brain1 is T1 post-contrast at 6.5 mm slices; the phantom model saw T1 at 3 mm
OVERRIDES = ["score.check_sequence=false", "score.max_spacing_ratio=3", "evaluation.bootstrap=50",
             "calibration.fprs=[0.05]"]
CHECK_JS = """<script>window.addEventListener('load', function () {
  var imgs = [].slice.call(document.images);
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-broken', imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length);
  document.body.setAttribute('data-scores', [].slice.call(document.querySelectorAll('tr.worklist-row'))
    .map(function (r) { return r.dataset.score; }).join(','));
});</script>"""


def browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def rendered(report: Path, tmp: Path) -> dict:
    """Open the report in headless Chromium; return the attributes the check script set on <body>."""
    page = tmp / "checked.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", CHECK_JS + "</body>"), encoding="utf-8")
    dom = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', body))


def test_real_tumour_scan_end_to_end(pretrained, tmp_path, monkeypatch):
    from nilearn.datasets import load_mni152_template

    monkeypatch.chdir(tmp_path)
    mni = tmp_path / "mni152_t1.nii.gz"
    nib.save(load_mni152_template(resolution=2), mni)
    tumour = write_manifest([Case("brain1", [str(DATA / "brain1_t1c.nrrd")], "MR", sequence="t1c",
                                  label=str(DATA / "brain1_tumour.nrrd"))], tmp_path / "tumour.csv")
    run = str(pretrained.run)
    cal = tmp_path / "cal.json"
    assert main(["anomaly", "calibrate", "--model", run, str(mni), "--out", str(cal), "--no-progress", *OVERRIDES]) == 0
    assert main(["anomaly", "score", "--model", run, str(tumour), "--out", "scores", "--calibration", str(cal),
                 "--no-progress", *OVERRIDES]) == 0
    assert main(["anomaly", "score", "--model", run, str(mni), "--out", "healthy", "--calibration", str(cal),
                 "--no-progress", *OVERRIDES]) == 0
    from medmae.io.read import read_volume

    ref = read_volume(DATA / "brain1_t1c.nrrd")
    for name in ("anomaly", "binary", "reconstruction"):
        out = nib.load(tmp_path / "scores" / "cases" / "brain1" / f"{name}.nii.gz")
        assert out.shape == ref.array.shape and np.allclose(out.affine, ref.affine, atol=1e-3)
    assert main(["anomaly", "evaluate", "scores", "--healthy", "healthy", "--out", "eval",
                 "tracking.tracking_uri=sqlite:///" + str(tmp_path / "mlflow.db"), *OVERRIDES]) == 0
    result = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert result["cases"] == 2 and set(result["maps"]) == {"model", "baseline", "combined"}
    # the healthy scan is the calibration scan itself: in-sample, out of every held-out figure
    assert [c["in_sample"] for c in result["case_detail"]] == [False, True]
    for name, m in result["maps"].items():
        assert 0 <= m["metrics"]["voxel_auroc"] <= 1 and m["detection"]["lesions"] >= 1
        assert m["metrics"]["fp_ml_healthy"] is None and m["metrics"]["in_sample_fp_ml_healthy"] is not None
        print(name, {k: round(v, 3) for k, v in m["metrics"].items() if isinstance(v, float)})
    table = (tmp_path / "eval" / "evaluation.md").read_text(encoding="utf-8")
    assert "ORACLE" in table and "intensity baseline" in table and "calibration scans (IN-SAMPLE)" in table
    assert (tmp_path / "eval" / "curves.png").stat().st_size > 1000
    from mlflow.tracking import MlflowClient

    client = MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    (logged,) = client.search_runs([client.get_experiment_by_name("medmae-anomaly").experiment_id])
    assert logged.data.metrics["model.voxel_auroc"] == pytest.approx(result["maps"]["model"]["metrics"]["voxel_auroc"])
    assert {"evaluation.md", "curves.png", "report.html", "report_images"} <= {
        a.path for a in client.list_artifacts(logged.info.run_id)}

    report = tmp_path / "eval" / "report.html"
    text = report.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and str(DATA) not in text  # offline, no paths
    if browser() is None:
        pytest.skip("no Chromium (.ci/run installs it)")
    seen = rendered(report, tmp_path)
    assert int(seen["images"]) == 2 and seen["broken"] == "0"  # montage + curves
    # the worklist of the healthy run: ranked as its scores say
    assert main(["anomaly", "report", "healthy", "--out", "healthy_report.html"]) == 0
    seen = rendered(tmp_path / "healthy_report.html", tmp_path)
    assert seen["broken"] == "0" and int(seen["images"]) == 1
    scores = [float(s) for s in seen["scores"].split(",")]
    assert scores == sorted(scores, reverse=True)
