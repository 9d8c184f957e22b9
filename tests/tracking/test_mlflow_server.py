"""Pretraining against a real `mlflow server` on loopback: what is logged reads back through
MlflowClient; when the server dies mid-run, training finishes, warns, and the local log is whole."""

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from medmae.tracking.metrics_log import read_metrics
from medmae.tracking.provenance import git_commit
from medmae.training import engine
from medmae.training.engine import pretrain
from training_helpers import make_phantom_cache, tiny_config

START_TIMEOUT_S = 120


class Server:
    """An `mlflow server` in its own process group, killed (whole group) by :meth:`kill`."""

    def __init__(self, root: Path, port: int | None = None):
        """A server on ``root``'s store; ``port`` (a free one by default) restarts a killed server."""
        if port is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = root / f"server-{time.monotonic_ns()}.log"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                 "--artifacts-destination", str(root / "artifacts")],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.kill()
        pytest.fail(f"mlflow server not healthy after {START_TIMEOUT_S} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("mlflow_server"))
    try:
        srv.wait_healthy()
        yield srv
    finally:
        srv.kill()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_phantom_cache(tmp_path_factory.mktemp("cache"), n=3, shape=(40, 40, 40))


def _cfg(cache, out, uri, *extra):
    return tiny_config(cache, out, "train.steps=6", "train.warmup_steps=1", "train.log_every=2",
                       "train.figure_every=3", "train.checkpoint_every=3", "train.lr_per_256=0.05", "data.batch_size=2",
                       f"tracking.tracking_uri={uri}", "tracking.experiment=server-test",
                       "tracking.system_metrics=true", "tracking.system_metrics_interval_s=3600", *extra)


def test_run_reads_back_through_the_server(server, cache, tmp_path, monkeypatch):
    import mlflow.pytorch
    from mlflow.tracking import MlflowClient

    result = pretrain(_cfg(cache, tmp_path / "run", server.uri))
    assert result.tracking_ok and result.run_id
    client = MlflowClient(server.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"

    params = run.data.params
    assert params["train.steps"] == "6" and params["model.patch_size"] == "[8, 8, 8]"
    assert params["derived.effective_batch"] == "2" and params["derived.precision"] == "fp32"
    tags = run.data.tags
    assert tags["masking.strategy"] == "random" and tags["version.torch"] == torch.__version__
    assert tags["device"].startswith("cpu") and len(tags["data.cache_digest"]) == 64
    package_dir = Path(engine.__file__).parents[1]
    if git_commit(package_dir) is not None:  # a checkout (others may commit meanwhile: HEAD or before)
        logged = tags["mlflow.source.git.commit"]
        assert subprocess.run(["git", "-C", str(package_dir), "merge-base", "--is-ancestor", logged, "HEAD"]).returncode == 0

    local = read_metrics(tmp_path / "run" / "metrics.jsonl")
    history = client.get_metric_history(result.run_id, "loss")
    assert [m.step for m in history] == [2, 4, 6]
    for m in history:
        pair = [r["loss"] for r in local if m.step - 2 < r["step"] <= m.step]
        assert m.value == pytest.approx(sum(pair) / 2, rel=1e-6)
    assert {"mean_predictor_loss", "lr", "loss_over_mean_predictor", "crops_per_s", "grad_norm"} <= set(run.data.metrics)
    # one sample, however short the run and however loaded the machine: the interval (1 h) never
    # elapses, so it is the one taken at the end (medmae.tracking.system_metrics)
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)

    def listing(path=None):
        return {a.path for a in client.list_artifacts(result.run_id, path)}

    assert {"config.yaml", "data", "figures", "checkpoints"} <= listing()
    assert listing("figures") == {"figures/step_0000003.png", "figures/step_0000006.png"}
    assert listing("checkpoints") == {"checkpoints/step_0000006.pt"}
    assert {"data/fingerprint.json", "data/preprocess"} <= listing("data")

    # MLflow 3: the encoder is a Logged Model of the run (the UI's "Logged models"), loadable
    # by models:/<id> without unpickling (pt2 export) and registrable
    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.source_run_id == result.run_id and model.name == "random-encoder-step6" and model.status == "READY"
    assert output.step == 6
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    encoder = mlflow.pytorch.load_model(f"models:/{model.model_id}")
    x = torch.randn(3, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(encoder(x), result.model.encoder.eval()(x), atol=1e-5)
    version = mlflow.register_model(f"models:/{model.model_id}", "medmae-encoder-test")
    assert version.version == "1"


def test_server_dying_mid_run_does_not_stop_training(server, cache, tmp_path, monkeypatch, caplog):
    real_step = engine._train_step

    def kill_at_step_3(cfg, parts, model, info, precision, step):
        if step == 3:
            server.kill()
        return real_step(cfg, parts, model, info, precision, step)

    monkeypatch.setattr(engine, "_train_step", kill_at_step_3)
    caplog.set_level(logging.WARNING, logger="medmae.tracking.mlflow_run")
    t0 = time.monotonic()
    result = pretrain(_cfg(cache, tmp_path / "run", server.uri, "train.steps=8", "tracking.retry_every_s=1",
                           "tracking.finish_timeout_s=3", "tracking.http_retries=0"))
    assert time.monotonic() - t0 < 90
    assert result.steps == 8 and not result.tracking_ok
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 9))
    assert result.checkpoint == tmp_path / "run" / "checkpoints" / "step_0000008.pt"
    assert (tmp_path / "run" / "figures" / "step_0000006.png").is_file()
    ours = [r.getMessage() for r in caplog.records if r.name == "medmae.tracking.mlflow_run"]
    failed = [m for m in ours if m.startswith("MLflow call")]
    assert len(failed) == 1, ours  # warned once, with the reason ...
    assert "Connection refused" in failed[0] or "Max retries" in failed[0]
    assert any("could not be sent" in m for m in ours)  # ... and said what was left unsent


def _wait_until(condition, timeout_s: float = 120.0) -> None:
    """Poll ``condition`` until true; fail after ``timeout_s`` (a bound for a hung run, not a timing)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(0.05)


def test_system_metrics_survive_an_outage_with_one_warning(tmp_path, caplog):
    """A server that goes away and comes back on the same port and store: the sampler keeps
    sampling, the samples are sent once the server is back, and the outage is one warning
    (plus one "reachable again"), not a stream of HTTP retry warnings."""
    from mlflow.tracking import MlflowClient

    from medmae.tracking.config import TrackingConfig
    from medmae.tracking.mlflow_run import MlflowTracker

    first = Server(tmp_path)
    first.wait_healthy()
    caplog.set_level(logging.DEBUG)
    cfg = TrackingConfig(tracking_uri=first.uri, experiment="outage", system_metrics_interval_s=0.5,
                         retry_every_s=0.5, http_retries=2, http_timeout_s=2, finish_timeout_s=60)
    tracker = MlflowTracker(cfg)
    try:
        tracker.start({"a": 1}, {}, run_name="outage-test")
        _wait_until(lambda: tracker.run_id is not None and tracker._monitor is not None)
        sampler = tracker._monitor
        _wait_until(lambda: sampler.step >= 2)  # conditions, not durations: a loaded machine only waits longer
        first.kill()
        killed_at = sampler.step
        _wait_until(lambda: sampler.step >= killed_at + 4)  # samples taken while the server is down
        down_until = int(time.time() * 1000)
        second = Server(tmp_path, first.port)  # same store, same address
        try:
            second.wait_healthy()
            back_at = sampler.step
            _wait_until(lambda: sampler.step >= back_at + 2)  # samples after the server is back
            assert tracker.finish() is True
            client = MlflowClient(second.uri)
            history = client.get_metric_history(tracker.run_id, "system/cpu_utilization_percentage")
            name = client.get_run(tracker.run_id).info.run_name
        finally:
            second.kill()
    finally:
        first.kill()
    steps = [m.step for m in history]
    assert steps == list(range(len(steps))) and len(steps) >= 8, steps  # none lost, none twice
    assert sum(m.timestamp < down_until for m in history) >= 4  # the outage's samples were kept ...
    assert sum(m.timestamp > down_until for m in history) >= 2  # ... and sampling went on after it
    assert name == "outage-test"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    ours = [r.getMessage() for r in warnings if r.name == "medmae.tracking.mlflow_run"]
    assert sum(m.startswith("MLflow call") for m in ours) == 1, ours
    assert sum("reachable again" in m for m in ours) == 1, ours
    noise = [f"{r.name}: {r.getMessage()}" for r in warnings if r.name != "medmae.tracking.mlflow_run"]
    assert not noise, noise[:5]

