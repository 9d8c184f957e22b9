"""Run safety: one run per out_dir, SIGTERM stops with a checkpoint and a KILLED MLflow run,
a resume is announced and MLflow gets no second point for a step it already has."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from medmae.cli.main import main
from medmae.pidlock import FolderBusyError, folder_lock
from medmae.tracking.metrics_log import read_metrics
from medmae.training import engine
from medmae.training.checkpoint import load_checkpoint
from medmae.training.engine import pretrain
from medmae.training.lock import LOCK
from training_helpers import TINY, make_phantom_cache, tiny_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_phantom_cache(tmp_path_factory.mktemp("cache"), n=3, shape=(40, 40, 40))


def _lock_held_by(folder: Path, proc: subprocess.Popen) -> None:
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK).write_text(json.dumps({"pid": proc.pid, "host": socket.gethostname(),
                                           "started": psutil.Process(proc.pid).create_time()}))


def test_second_run_on_the_same_out_dir_stops_with_a_clear_message(cache, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock_held_by(out, holder)
        args = ["pretrain", *TINY, f"data.cache_dir={cache}", f"train.out_dir={out}", "train.steps=2",
                "train.warmup_steps=1", "data.batch_size=2", "tracking.enabled=false"]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert str(out) in err and f"pid {holder.pid}" in err and "train.out_dir" in err, err
        assert not (out / "metrics.jsonl").exists() and not (out / "config.yaml").exists()  # nothing written
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its stale lock is taken over, and released at the end
    assert main(args) == 0
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    assert not (out / LOCK).exists()


def test_folder_lock_rejects_a_live_holder_and_reused_pids(tmp_path):
    with folder_lock(tmp_path, "x.lock", "job") as lock:
        info = json.loads(lock.read_text())
        assert info["pid"] == os.getpid()
        with pytest.raises(FolderBusyError, match="already holds"):
            with folder_lock(tmp_path, "x.lock", "job"):
                pass
    assert not (tmp_path / "x.lock").exists()
    # our own pid, but "started" long before this process did: a pid reused since -> stale
    (tmp_path / "x.lock").write_text(json.dumps({"pid": os.getpid(), "host": info["host"], "started": 1.0}))
    with folder_lock(tmp_path, "x.lock", "job"):
        pass
    stale = dict(info, pid=os.getppid(), started=0.0)  # the parent started after "0.0": reused pid
    (tmp_path / "y.lock").write_text(json.dumps(stale))
    with folder_lock(tmp_path, "y.lock", "job"):
        pass


def _wait_for(predicate, timeout, proc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    out, err = proc.communicate(timeout=30) if proc.poll() is not None else ("", "")
    pytest.fail(f"condition not met (exit {proc.returncode}):\n{err[-3000:]}")


def test_sigterm_checkpoints_marks_the_run_killed_and_exits_nonzero(cache, tmp_path):
    from mlflow.tracking import MlflowClient

    out, store = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    # as a scheduler does it: SIGTERM to the whole process group, a DataLoader worker included
    tiny = [a for a in TINY if not a.startswith("data.workers=")] + ["data.workers=1"]
    cmd = [sys.executable, "-m", "medmae", "pretrain", *tiny, f"data.cache_dir={cache}", f"train.out_dir={out}",
           "train.steps=500", "train.warmup_steps=1", "train.log_every=1", "train.checkpoint_every=1000",
           "train.figure_every=1000", "data.batch_size=2", f"tracking.tracking_uri={store}",
           "tracking.experiment=sigterm", "tracking.log_model=false", "tracking.log_checkpoint=false"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        log = out / "metrics.jsonl"
        _wait_for(lambda: log.exists() and len(read_metrics(log)) >= 2, 150, proc)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "SIGTERM received" in err and "stopped by SIGTERM" in err and "killed by signal" not in err
    done = read_metrics(out / "metrics.jsonl")[-1]["step"]
    assert 2 <= done < 500
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["step"] == done  # the step in progress, finished
    assert not (out / LOCK).exists()
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("sigterm").experiment_id])
    assert run.info.status == "KILLED"
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == done


def test_resume_is_announced_and_mlflow_gets_no_duplicate_points(cache, tmp_path, monkeypatch, caplog):
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def cfg():
        return tiny_config(cache, tmp_path / "run", "train.steps=7", "train.warmup_steps=1", "train.log_every=2",
                           "train.checkpoint_every=3", "train.figure_every=100", "data.batch_size=2",
                           f"tracking.tracking_uri={store}", "tracking.log_model=false",
                           "tracking.log_checkpoint=false", "tracking.experiment=resume")

    real_step = engine._train_step

    def killed_at_5(cfg, parts, model, info, precision, step):
        if step == 5:  # a hard stop (no checkpoint): MLflow has steps 2 and 4, the checkpoint is at 3
            raise KeyboardInterrupt
        return real_step(cfg, parts, model, info, precision, step)

    monkeypatch.setattr(engine, "_train_step", killed_at_5)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg())
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    before = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")}
    assert sorted(before) == [2, 4] and run.info.status == "KILLED"
    assert re.fullmatch(r"random-\d{8}-\d{6}", run.info.run_name), run.info.run_name  # strategy and time

    monkeypatch.setattr(engine, "_train_step", real_step)
    caplog.set_level(logging.INFO, logger="medmae.training.engine")
    resumed = pretrain(cfg())
    assert resumed.start_step == 3 and resumed.run_id == run.info.run_id
    assert any("resuming from step 3 of 7" in r.getMessage() for r in caplog.records)
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [2, 4, 6, 7]  # step 4 once, with the value logged before the kill
    assert {m.step: m.value for m in history}[4] == before[4]
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
