"""`anomaly score` killed (SIGKILL) while writing a case leaves no half-written case folder:
each folder is written whole under a hidden temporary name and renamed; the next run removes
the temporary, and a complete folder from an earlier run stays as it was."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.run import score_inputs
from medmae.io.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[3]
KILLED = """
import os, signal, sys
import medmae.heads.anomaly.outputs as outputs
from medmae.heads.anomaly.config import AnomalyConfig
from medmae.heads.anomaly.run import score_inputs

def killed(*args, **kwargs):  # the maps are written, the preview is not: die here
    os.kill(os.getpid(), signal.SIGKILL)

outputs._write_preview = killed
score_inputs([sys.argv[1]], sys.argv[2], sys.argv[3], AnomalyConfig(), progress=False)
"""


def killed_score(scan: str, model: Path, out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLED, scan, str(model), str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_killed_score_leaves_no_half_written_case_folder(pretrained, tmp_path, monkeypatch):
    scan = read_manifest(pretrained.healthy_test)[0].image[0]
    out = tmp_path / "out"
    killed_score(scan, pretrained.run, out)
    entries = list((out / "cases").iterdir())
    assert entries and all(p.name.startswith(".") and p.name.endswith(".tmp") for p in entries)
    assert any((p / "anomaly.nii.gz").is_file() for p in entries)  # it was killed mid-case
    result = score_inputs([scan], pretrained.run, out, AnomalyConfig(), progress=False)
    (case_id,) = [r["case_id"] for r in result.records]
    assert [p.name for p in (out / "cases").iterdir()] == [case_id]  # the temporary is gone
    folder = out / "cases" / case_id
    record = (folder / "case.json").read_bytes()
    import medmae.heads.anomaly.outputs as outputs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "_write_preview", interrupted)  # a re-score stopped mid-case
    try:
        score_inputs([scan], pretrained.run, out, AnomalyConfig(), progress=False)
    except KeyboardInterrupt:
        pass
    assert [p.name for p in (out / "cases").iterdir()] == [case_id]
    assert (folder / "case.json").read_bytes() == record and (folder / "preview.npz").is_file()
    assert (folder / "grid.npz").is_file()
