"""The demo wires every stage together: phantoms + a real scan -> cache -> MAE -> MLflow."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from medmae.cli.main import main
from medmae.data.cache import list_cases

DATA = Path(__file__).resolve().parents[1] / "data"


def test_demo_end_to_end(tmp_path, monkeypatch, capsys):
    real = tmp_path / "real"
    real.mkdir()
    for name in ("ct_abdomen_3mm.nii.gz", "ct_abdomen_3mm_seg.nii.gz"):
        shutil.copy(DATA / name, real / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rc = main(["demo", "--out", "demo_out", "--steps", "6", "--phantoms", "1", "--real-dir", str(real),
               "train.figure_every=6", "tracking.system_metrics=false", "tracking.log_model=false"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "open the UI" in out and "mlflow ui --backend-store-uri sqlite:///" in out

    cases = list_cases(tmp_path / "demo_out" / "cache", split=None)
    assert sorted(c.case_id for c in cases) == ["abdomen_0000", "brain_0000", "ct_abdomen_3mm"]
    ct = next(c for c in cases if c.case_id == "ct_abdomen_3mm")
    assert np.allclose(np.linalg.norm(ct.affine[:3, :3], axis=0), 2.0)  # demo spacing

    figures = sorted((tmp_path / "demo_out" / "run" / "figures").glob("*.png"))
    assert [f.name for f in figures] == ["step_0000006.png"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("medmae-demo")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["masking.strategy"] == "random"
    assert run.data.params["model.norm_crop_loss"] == "True"
    assert "hidden-token r" in out
    # MLflow gets means over each log window (train.log_every); metrics.jsonl every step
    (logged,) = client.get_metric_history(run.info.run_id, "loss")
    assert logged.step == 6
    # the summary's final loss is the statistic the progress line (and MLflow) shows: the mean
    # over the last log window (here steps 1-6), not some other tail of the run
    final = re.search(r"-> (\d+\.\d+) \(steps 1-6; predict-the-mean baseline", out)
    assert final and float(final.group(1)) == pytest.approx(logged.value, abs=6e-5), out
    (r,) = client.get_metric_history(run.info.run_id, "hidden_corr")
    shown = re.search(r"hidden-token r\s+(-?\d+\.\d+)", out)
    assert r.step == 6 and -1 <= r.value <= 1 and shown and float(shown.group(1)) == pytest.approx(r.value, abs=6e-3)
    records = (tmp_path / "demo_out" / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 6
