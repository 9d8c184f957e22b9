"""SIGTERM stops every long command as Ctrl-C does: exit 143, one line naming the command,
the study's parent MLflow run KILLED; one `study run` per output folder.

The batch commands are tested in-process: their work is replaced by a function that sends
SIGTERM to this process, as a scheduler would mid-batch. A fallback handler is installed
first, so a command without the wiring fails its assertion instead of killing pytest.
Fine-tuning's graceful stop (checkpoint of the step in progress) is tested in
tests/heads/segmentation/test_seg_finetune.py, pretraining's in tests/training/test_run_safety.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch

from medmae.cli.main import main
from medmae.interrupts import Interrupted, sigterm_interrupts

STUDY = Path(__file__).resolve().parents[1] / "studies" / "tiny_study.yaml"


@pytest.fixture
def fallback_handler():
    """A SIGTERM handler that only records (restored afterwards): what a command without
    SIGTERM handling would leave in place here."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    yield seen
    signal.signal(signal.SIGTERM, previous)


def _sigterm_self(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
    return None


def test_sigterm_interrupts_raises_in_the_main_thread_and_restores_the_handler(fallback_handler):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as err:
        with sigterm_interrupts():
            _sigterm_self()
    assert err.value.exit_code == 143 and str(err.value) == "stopped by SIGTERM"
    assert isinstance(err.value, KeyboardInterrupt)  # every `except KeyboardInterrupt` cleanup runs
    assert signal.getsignal(signal.SIGTERM) is before and not fallback_handler


def _child_terminates_itself():
    import time

    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)  # reached only if the child survived its SIGTERM


def test_a_forked_child_still_dies_of_sigterm(fallback_handler):
    """A worker forked while the command's handler is set dies of SIGTERM as it would have
    without medmae (it does not raise the command's Interrupted, nor ignore the signal)."""
    import multiprocessing

    with sigterm_interrupts():
        child = multiprocessing.get_context("fork").Process(target=_child_terminates_itself)
        child.start()
        child.join(30)
    assert child.exitcode == -signal.SIGTERM and not fallback_handler


def test_a_second_sigterm_during_a_graceful_stop_still_exits_143(fallback_handler):
    from medmae.training.distributed import DistInfo
    from medmae.training.signals import GracefulStop

    with sigterm_interrupts():
        outer = signal.getsignal(signal.SIGTERM)
        with GracefulStop() as stop:
            _sigterm_self()  # the first: a flag, the step in progress goes on
            assert stop.requested(DistInfo(0, 1, 0, torch.device("cpu"))) == signal.SIGTERM
            with pytest.raises(Interrupted) as err:
                _sigterm_self()  # the second: at once
        assert err.value.exit_code == 143 and "second SIGTERM" in str(err.value)
        assert signal.getsignal(signal.SIGTERM) is outer  # the command's handler is back
    assert not fallback_handler


BATCH = {
    "anomaly score": (["anomaly", "score", "--model", "m", "a.nii.gz", "--out", "o"],
                      "medmae.heads.anomaly.run.score_inputs"),
    "anomaly calibrate": (["anomaly", "calibrate", "--model", "m", "a.nii.gz"],
                          "medmae.heads.anomaly.run.calibrate_inputs"),
    "segment": (["segment", "--model", "m", "--out", "o", "--device", "cpu", "a.nii.gz"],
                "medmae.heads.segmentation.bundle.load_bundle"),
    "segment evaluate": (["segment", "evaluate", "out_dir=o"], "medmae.heads.segmentation.evaluate.run_evaluation"),
}


@pytest.mark.parametrize("command", sorted(BATCH))
def test_batch_commands_exit_143_with_one_line(command, monkeypatch, capsys, fallback_handler, tmp_path):
    argv, target = BATCH[command]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(target, _sigterm_self)
    assert main(argv) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"medmae {command}: stopped by SIGTERM (exit 143)"), err
    assert not fallback_handler  # the command's handler took it, and put the previous one back after
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL


def test_study_run_marks_its_parent_run_killed(monkeypatch, tmp_path, capsys, fallback_handler):
    from mlflow.tracking import MlflowClient

    from medmae.studies import kinds
    from medmae.studies.runner import LOCK

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setitem(kinds.KINDS, "data", _sigterm_self)  # the first step is interrupted
    out = tmp_path / "study"
    assert main(["study", "run", str(STUDY), "--out", str(out), "--tracking-uri", uri]) == 143
    assert "medmae study run: stopped by SIGTERM (exit 143)" in capsys.readouterr().err
    client = MlflowClient(uri)
    (parent,) = client.search_runs([client.get_experiment_by_name("medmae-study-tiny").experiment_id])
    assert parent.info.status == "KILLED" and parent.data.metrics["steps_run"] == 0
    assert not (out / LOCK).exists() and not list(out.glob("steps/*/result.json"))


def test_second_study_run_on_the_same_folder_stops_before_running(tmp_path, capsys, monkeypatch):
    from medmae.studies import kinds
    from medmae.studies.runner import LOCK

    out = tmp_path / "study"
    out.mkdir()
    ran = []
    monkeypatch.setitem(kinds.KINDS, "data", lambda *a: ran.append(a) or {})
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                            "started": psutil.Process(holder.pid).create_time()}))
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        assert main(["study", "run", str(STUDY), "--out", str(out), "--tracking-uri", uri]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and str(out) in err and "study run" in err, err
        assert not ran and not (out / "steps").exists() and not (tmp_path / "mlflow.db").exists()
    finally:
        holder.kill()
        holder.wait()
