"""A run that logs after the work is done ends KILLED (not RUNNING for good) when SIGTERM
comes while it logs, FAILED on an error, FINISHED otherwise: checked in a real SQLite store."""

import signal

import mlflow
import pytest

from medmae.heads.anomaly.results import log_to_mlflow
from medmae.interrupts import Interrupted
from medmae.tracking.config import TrackingConfig
from medmae.tracking.mlflow_run import MlflowTracker, Tracker
from medmae.tracking.run_end import ending


class Recorder(Tracker):
    def __init__(self):
        self.ended = []

    def finish(self, status="FINISHED"):
        self.ended.append(status)
        return status == "FINISHED"


@pytest.mark.parametrize("raise_, status", [(None, "FINISHED"), (Interrupted(signal.SIGTERM), "KILLED"),
                                            (KeyboardInterrupt(), "KILLED"), (OSError("disk"), "FAILED")])
def test_ending_ends_with_the_status_of_how_the_block_stopped(raise_, status):
    t = Recorder()
    if raise_ is None:
        with ending(t) as end:
            pass
    else:
        with pytest.raises(type(raise_)), ending(t) as end:
            raise raise_
    assert t.ended == [status] and end.status == status and end.ok == (status == "FINISHED")


def test_sigterm_while_logging_anomaly_results_leaves_the_run_killed(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = TrackingConfig(tracking_uri=uri, experiment="anomaly-test", system_metrics=False)
    (tmp_path / "evaluation.json").write_text("{}")

    def sigterm(self, path, artifact_path=None):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(MlflowTracker, "log_artifact", sigterm)
    data = {"cases": 2, "maps": {"model": {"metrics": {"auroc": 0.9}}}}
    with pytest.raises(Interrupted):
        log_to_mlflow(cfg, data, {"config": {}, "model": {"digest": "d" * 12}}, tmp_path)
    (run,) = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("anomaly-test").experiment_id])
    assert run.info.status == "KILLED" and run.data.metrics["model.auroc"] == 0.9
