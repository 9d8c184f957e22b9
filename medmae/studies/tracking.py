"""The study's MLflow records: one parent run, a nested run per step, the summary artifacts.

Step runs carry ``mlflow.parentRunId`` (MLflow's nesting tag), so the UI shows them under
the study's run. The pretraining engine's own run is nested the same way. Tracking trouble
never stops a study: it is logged as a warning and the study goes on (its results are on
disk in OUT/steps/ and OUT/summary.*).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STUDY_TAG = "medmae.study"


def _client(uri: str):
    from medmae.tracking.store import client_for

    return client_for(uri)  # a new SQLite store is created under a file lock


class StudyRuns:
    """Parent + child runs of one ``medmae study run`` call."""

    def __init__(self, uri: str, experiment: str):
        self.uri, self.experiment = uri, experiment
        self.parent: str | None = None
        self._exp: str | None = None

    def _safe(self, what: str, fn, *a, **kw):
        try:
            return fn(*a, **kw)
        except Exception as e:  # noqa: BLE001 - tracking must not stop the study
            log.warning("study tracking: %s failed (%s: %s); results stay on disk", what, type(e).__name__, e)
            return None

    def start(self, name: str, tags: dict[str, str], params: dict[str, Any]) -> str | None:
        def go():
            from mlflow.entities import Param

            from medmae.tracking.mlflow_run import experiment_id, param_values, sqlite_path

            db = sqlite_path(self.uri)
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
            client = _client(self.uri)
            self._exp = experiment_id(client, self.uri, self.experiment)
            run = client.create_run(self._exp, run_name=f"study-{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                    tags={STUDY_TAG: name, **tags})
            client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in param_values(params).items()])
            return run.info.run_id
        self.parent = self._safe("starting the study run", go)
        return self.parent

    def step(self, step_id: str, labels: dict, metrics: dict[str, float], reused: bool, key: str,
             engine_run: str | None) -> None:
        if self.parent is None:
            return

        def go():
            from mlflow.entities import Metric, Param, RunTag

            client = _client(self.uri)
            tags = {"mlflow.parentRunId": self.parent, "medmae.step": step_id, "medmae.step_key": key,
                    "medmae.reused": str(reused).lower()}
            if engine_run:
                tags["medmae.engine_run_id"] = engine_run
                if not reused:
                    client.set_tag(engine_run, "mlflow.parentRunId", self.parent)
            run = client.create_run(self._exp, run_name=step_id, tags=tags)
            now = int(time.time() * 1000)
            client.log_batch(run.info.run_id,
                             metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                             params=[Param(k, str(v)) for k, v in labels.items()],
                             tags=[RunTag("mlflow.runName", step_id)])
            client.set_terminated(run.info.run_id, "FINISHED")
        self._safe(f"logging step {step_id}", go)

    def finish(self, artifacts: list[Path], metrics: dict[str, float], status: str) -> None:
        if self.parent is None:
            return

        def go():
            from mlflow.entities import Metric

            client = _client(self.uri)
            now = int(time.time() * 1000)
            client.log_batch(self.parent, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
            for p in artifacts:
                client.log_artifact(self.parent, str(p), "summary")
            client.set_terminated(self.parent, status)
        self._safe("finishing the study run", go)


def find_study_runs(uri: str, name: str | None = None) -> list:
    """Parent runs of studies (newest first), of one study when ``name`` is given."""
    client = _client(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    if not exps:
        return []
    filt = f"tags.`{STUDY_TAG}` = '{name}'" if name else f"tags.`{STUDY_TAG}` LIKE '%'"
    return client.search_runs(exps, filter_string=filt, order_by=["attributes.start_time DESC"])


def download_summary(uri: str, run_id: str, dst: Path) -> Path:
    return Path(_client(uri).download_artifacts(run_id, "summary/summary.md", str(dst)))
