"""The resilient tracker on the embedded SQLite store, and with no server at all."""

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medmae.config.base import flatten
from medmae.training.pretrain_config import PretrainConfig
from medmae.tracking.config import TrackingConfig
from medmae.tracking.mlflow_run import (MAX_KEY, MAX_PARAM_VALUE, MlflowTracker, artifact_root_for, clip_key,
                                        param_values, resolve_tracking_uri, ui_command)


def test_tracking_uri_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_tracking_uri("sqlite:////x/db", tmp_path) == "sqlite:////x/db"
    assert resolve_tracking_uri(None, tmp_path) == "http://tracking.example:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    uri = resolve_tracking_uri(None, tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert artifact_root_for(uri) == (tmp_path.resolve() / "mlruns" / "artifacts").as_uri()
    assert artifact_root_for("http://h:5000") is None
    assert ui_command(uri) == f"mlflow ui --backend-store-uri {uri} --default-artifact-root {artifact_root_for(uri)}"
    # a tracking server is already serving the UI: its URL (the run's page when known)
    assert ui_command("http://127.0.0.1:5000/") == "http://127.0.0.1:5000"
    assert ui_command("http://h:5000", "3", "ab12") == "http://h:5000/#/experiments/3/runs/ab12"


def test_params_fit_mlflow_limits():
    flat = flatten(PretrainConfig())
    values = param_values({**flat, "long.value": "x" * 7000, "k" * 300: 1, "none": None})
    assert values["train.steps"] == "1000" and values["model.patch_size"] == "[16, 16, 16]"
    assert values["none"] == "null"
    assert len(values["long.value"]) <= MAX_PARAM_VALUE and values["long.value"].endswith("[truncated]")
    long_key = clip_key("k" * 300)
    assert len(long_key) <= MAX_KEY and values[long_key] == "1"
    assert clip_key("k" * 300) != clip_key("k" * 299 + "j")  # clipped keys stay distinct
    # ... and the same in every process (a resumed run must find its own clipped keys)
    other = subprocess.run([sys.executable, "-c", "from medmae.tracking.mlflow_run import clip_key; "
                            "print(clip_key('k' * 300))"], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"})
    assert other.stdout.strip() == long_key


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_no_server_at_all_warns_once_and_never_raises(caplog, tmp_path):
    cfg = TrackingConfig(tracking_uri=f"http://127.0.0.1:{_closed_port()}", retry_every_s=0.2,
                         finish_timeout_s=3, http_retries=2, http_timeout_s=1, max_backlog=3,
                         system_metrics_interval_s=0.2)
    caplog.set_level(logging.DEBUG)
    t0 = time.monotonic()
    tracker = MlflowTracker(cfg)
    tracker.local_log = tmp_path / "run" / "metrics.jsonl"
    tracker.start({"a": 1}, {"b": "c"})
    for step in range(10):
        tracker.log_metrics({"loss": 1.0 / (step + 1)}, step)
    time.sleep(0.5)
    assert tracker.finish() is False
    assert time.monotonic() - t0 < 20 and tracker.run_id is None  # bounded by tracking.finish_timeout_s
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    ours = [r.getMessage() for r in warnings if r.name == "medmae.tracking.mlflow_run"]
    assert sum(m.startswith("MLflow call 'start run'") for m in ours) == 1  # once, whatever the retries
    assert any("backlog is full" in m for m in ours)
    waiting = [m for m in ours if "waiting up to 3 s (tracking.finish_timeout_s)" in m]
    assert len(waiting) == 1 and str(tracker.local_log) in waiting[0]  # says where the local log is
    assert any("could not be sent" in m and str(tracker.local_log) in m for m in ours)
    assert [r.getMessage() for r in warnings if r.name != "medmae.tracking.mlflow_run"] == []  # no retry noise
    assert tracker.failures >= 1 and "Connection refused" in tracker.last_error


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def test_resumed_run_continues_the_same_mlflow_run(store, tmp_path):
    from mlflow.tracking import MlflowClient

    cfg = TrackingConfig(tracking_uri=store, experiment="resume-test", system_metrics=False)
    (tmp_path / "note.txt").write_text("hello")
    first = MlflowTracker(cfg)
    first.start({"train.steps": 10, "train.lr": 0.1}, {"masking.strategy": "random"})
    first.log_metrics({"loss": 2.0}, 5)
    first.log_artifact(tmp_path / "note.txt", "notes")
    assert first.finish("KILLED") is True

    second = MlflowTracker(cfg, resume_run_id=first.run_id)
    second.start({"train.steps": 20, "train.lr": 0.1}, {})
    second.log_metrics({"loss": 1.0}, 10)
    assert second.finish() is True
    assert second.run_id == first.run_id

    client = MlflowClient(store)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.steps"] == "10"  # params are immutable in MLflow ...
    assert run.data.tags["resume.changed.train.steps"] == "20"  # ... so the change is a tag
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, "loss")] == [(5, 2.0), (10, 1.0)]
    assert [a.path for a in client.list_artifacts(first.run_id, "notes")] == ["notes/note.txt"]
    root = Path(store[len("sqlite:///"):]).parent / "artifacts"  # beside the database
    assert (root / first.run_id / "artifacts" / "notes" / "note.txt").read_text() == "hello"

    unknown = MlflowTracker(cfg, resume_run_id="0" * 32)  # a checkpoint from another store
    unknown.start({}, {})
    assert unknown.finish() is True and unknown.run_id not in (None, first.run_id)


def test_calls_no_retry_can_fix_are_dropped_not_retried_forever(store, tmp_path, caplog):
    from mlflow.tracking import MlflowClient

    caplog.set_level(logging.WARNING, logger="medmae.tracking.mlflow_run")
    cfg = TrackingConfig(tracking_uri=store, experiment="reject-test", system_metrics=False, retry_every_s=60,
                         finish_timeout_s=20)
    tracker = MlflowTracker(cfg)
    tracker.start({}, {})
    tracker.log_artifact(tmp_path / "missing.png", "figures")  # e.g. deleted before the upload
    tracker.log_metrics({"loss": 0.5}, 1)
    assert tracker.finish() is False  # not everything was logged ...
    assert tracker.failures == 0  # ... but nothing was retried (a retry waits retry_every_s=60)
    assert tracker.rejected == 1
    client = MlflowClient(store)
    assert client.get_run(tracker.run_id).data.metrics == {"loss": 0.5}
    assert any("rejected and is dropped" in r.getMessage() for r in caplog.records)

    client.delete_experiment(client.get_experiment_by_name("reject-test").experiment_id)
    refused = MlflowTracker(cfg)  # a run cannot be created in a deleted experiment
    refused.start({}, {})
    refused.log_metrics({"loss": 0.5}, 1)
    assert refused.finish() is False and refused.run_id is None
    assert any("refused to create the run" in r.getMessage() for r in caplog.records)


def test_mlflow3_ui_sees_a_model_training_run(store, tmp_path):
    """Experiment kind, source and git tags, and the run name, read back through MlflowClient."""
    from mlflow.tracking import MlflowClient

    from medmae.tracking.provenance import code_tags, git_commit

    cfg = TrackingConfig(tracking_uri=store, experiment="kind-test", system_metrics=False)
    tracker = MlflowTracker(cfg)
    tracker.start({}, code_tags(), run_name="random-20260101-120000")
    assert tracker.finish() is True
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("kind-test")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    run = client.get_run(tracker.run_id)
    assert run.info.run_name == "random-20260101-120000"
    tags = run.data.tags
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
    package = Path(__file__).resolve().parents[2] / "medmae"
    found = git_commit(package)
    if found is not None:  # a git checkout
        assert tags["mlflow.source.git.commit"] == found[0]
        branch = subprocess.run(["git", "-C", str(package), "rev-parse", "--abbrev-ref", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        assert tags.get("mlflow.source.git.branch", "HEAD") == branch
    # an experiment made before (no kind) gets it; a kind set by someone else is kept
    client.set_experiment_tag(exp.experiment_id, "mlflow.experimentKind", "genai_development")
    other = MlflowTracker(cfg)
    other.start({}, {})
    assert other.finish() is True
    assert client.get_experiment(exp.experiment_id).tags["mlflow.experimentKind"] == "genai_development"


def test_a_run_shorter_than_one_interval_gets_one_system_sample():
    """Deterministic system metrics: a sample at stop when the interval never elapsed."""
    from medmae.tracking.system_metrics import SystemMetricsSampler

    logged = []
    sampler = SystemMetricsSampler(lambda values, step: logged.append((step, values)), 3600, first_step=5).start()
    sampler.stop()
    assert [step for step, _ in logged] == [5]
    assert "system/cpu_utilization_percentage" in logged[0][1]
    sampler.stop()
    assert len(logged) == 1  # once


def test_configured_tags_nest_a_run_and_every_run_says_what_code_made_it(store):
    """tracking.tags (how a study nests its runs) are on the run from its creation; the source,
    git and version tags are on every run, also when the caller passes none (a head's run)."""
    from mlflow.tracking import MlflowClient

    parent = MlflowTracker(TrackingConfig(tracking_uri=store, experiment="nest-test", system_metrics=False))
    parent.start({}, {})
    assert parent.finish() is True
    cfg = TrackingConfig(tracking_uri=store, experiment="nest-test", system_metrics=False, run_name="anomaly-x",
                         tags={"mlflow.parentRunId": parent.run_id, "project": "liver"})
    child = MlflowTracker(cfg)
    child.start({}, {"medmae.head": "anomaly"})
    assert child.finish() is True
    tags = MlflowClient(store).get_run(child.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.run_id and tags["project"] == "liver"
    assert tags["medmae.head"] == "anomaly" and tags["mlflow.runName"] == "anomaly-x"
    assert tags["version.torch"] and tags["version.medmae"] and tags["mlflow.source.name"]


def test_logged_models_are_named_for_the_run_and_step():
    from medmae.tracking.store import model_name

    assert model_name("pretrain-random-s0-20261207-102507", "encoder", 6) == "pretrain-random-s0-encoder-step6"
    assert model_name("pretrain-random-s0", "encoder", 6) == "pretrain-random-s0-encoder-step6"
    assert model_name(None, "encoder", 1000) == "encoder-step1000"


def test_a_slow_local_store_is_waited_for_quietly(store, caplog, monkeypatch):
    """The run is created only after finish() began waiting (a busy SQLite file): no
    'has not answered yet' warning for a local store, and everything arrives."""
    from mlflow.tracking import MlflowClient

    from medmae.tracking.store import is_local

    assert is_local(store) and is_local("file:///tmp/mlruns") and not is_local("http://127.0.0.1:5000")
    caplog.set_level(logging.INFO, logger="medmae.tracking.mlflow_run")
    original = MlflowTracker._start_run

    def late_start(self, *args):
        with self._cond:  # until finish() is waiting for the queue
            while not self._stopping:
                self._cond.wait(timeout=1.0)
        return original(self, *args)

    monkeypatch.setattr(MlflowTracker, "_start_run", late_start)
    tracker = MlflowTracker(TrackingConfig(tracking_uri=store, experiment="slow-test", system_metrics=False,
                                           finish_timeout_s=60))
    tracker.start({}, {})
    tracker.log_metrics({"loss": 1.0}, 1)
    assert tracker.finish() is True
    assert MlflowClient(store).get_run(tracker.run_id).data.metrics == {"loss": 1.0}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_new_local_store_is_created_quietly(tmp_path, capfd):
    """No "Creating initial MLflow database tables..." lines from MLflow on a fresh ./mlruns."""
    from medmae.tracking.store import client_for

    client = client_for(f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}")
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert "database tables" not in capfd.readouterr().err
