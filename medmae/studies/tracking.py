"""The study's MLflow records: one parent run holding the study's summary, and under it
the runs its steps start.

    study-<name>-<time>                      params: the study; metrics: <variant>/<kind>.<metric>
    |                                        (mean over seeds), data-*/preprocess-* counts; summary/
    +- pretrain-<variant>-s<seed>-<time>     the pretraining engine's run (its Logged Model:
    |                                        pretrain-<variant>-s<seed>-encoder-step<N>)
    +- anomaly-<variant>-s<seed>             the anomaly evaluation's run
    +- segmentation-<variant>-s<seed>        segment evaluate's run, and under it its fine-tunes:
       +- finetune-<variant>-s<seed>-<arm>-n<N>-s<seed>
    +- <step> (reused)                       a step finished by an earlier run: its metrics and
                                             ``medmae.engine_run_id``, the run that computed them

Every run is created with ``mlflow.parentRunId`` (MLflow's nesting tag) set, from the
step's ``tracking.tags`` (:meth:`StudyRuns.step_tags`); data, preprocessing and export steps
start no run (their counts are metrics of the parent). Tracking trouble never stops a
study: it is logged as a warning and the study goes on (its results are on disk in
OUT/steps/ and OUT/summary.*).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

from medmae.tracking.provenance import code_tags
from medmae.tracking.store import clip_key

log = logging.getLogger(__name__)

STUDY_TAG = "medmae.study"
RUN_KINDS = frozenset({"pretrain", "anomaly", "segmentation"})
"""Step kinds that start MLflow runs of their own (the others' counts go on the parent)."""


def _client(uri: str):
    from medmae.tracking.store import client_for

    return client_for(uri)  # a new SQLite store is created under a file lock


class StudyRuns:
    """Parent + child runs of one ``medmae study run`` call."""

    def __init__(self, uri: str, experiment: str):
        self.uri, self.experiment = uri, experiment
        self.parent: str | None = None
        self._exp: str | None = None
        self._pending: list = []  # the parent's metrics, logged at the end

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

    def step_tags(self, step_id: str, key: str) -> dict[str, str]:
        """Tags of the runs a step starts: nested under the study's run, named by step and key."""
        if self.parent is None:
            return {}
        return {"mlflow.parentRunId": self.parent, "medmae.step": step_id, "medmae.step_key": key}

    def step(self, step_id: str, kind: str, labels: dict, metrics: dict[str, float], reused: bool, key: str,
             engine_run: str | None) -> None:
        """Record a finished step: a run-less step's counts on the parent (``<step id>.<metric>``);
        a step that ran its engine here: its metrics also on the engine's run (``study.<metric>``);
        a reused step with a run: a small ``<step id> (reused)`` run pointing at it."""
        if self.parent is None:
            return

        def go():
            from mlflow.entities import Metric, Param

            client = _client(self.uri)
            now = int(time.time() * 1000)
            if kind not in RUN_KINDS:
                self._pending += [Metric(clip_key(f"{step_id}.{k}"), float(v), now, 0) for k, v in metrics.items()]
                return
            if not reused:
                if engine_run:
                    client.log_batch(engine_run, metrics=[Metric(f"study.{k}", float(v), now, 0)
                                                          for k, v in metrics.items()])
                return
            tags = {**self.step_tags(step_id, key), "medmae.reused": "true", **code_tags()}
            if engine_run:
                tags["medmae.engine_run_id"] = engine_run
            run = client.create_run(self._exp, run_name=f"{step_id} (reused)", tags=tags)
            client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                             params=[Param(k, str(v)) for k, v in labels.items()])
            client.set_terminated(run.info.run_id, "FINISHED")
        self._safe(f"logging step {step_id}", go)

    def summary(self, rows: list[dict]) -> None:
        """The study's summary as the parent's metrics: ``<variant>/<kind>.<metric>``, the mean
        over seeds (and ``<variant>/seeds``), so that two studies line up in MLflow's compare view."""
        from mlflow.entities import Metric

        from medmae.studies.summary import aggregate

        now = int(time.time() * 1000)
        for agg in aggregate(rows):
            v = agg["variant"]
            self._pending.append(Metric(clip_key(f"{v}/seeds"), float(agg["seeds"]), now, 0))
            self._pending += [Metric(clip_key(f"{v}/{k}"), pair[0], now, 0) for k, pair in agg.items()
                              if isinstance(pair, tuple) and math.isfinite(pair[0])]

    def finish(self, artifacts: list[Path], metrics: dict[str, float], status: str) -> None:
        if self.parent is None:
            return

        def go():
            from mlflow.entities import Metric

            client = _client(self.uri)
            now = int(time.time() * 1000)
            values = [*self._pending, *(Metric(k, float(v), now, 0) for k, v in metrics.items())]
            for i in range(0, len(values), 1000):  # MLflow's limit per call
                client.log_batch(self.parent, metrics=values[i:i + 1000])
            for p in artifacts:
                client.log_artifact(self.parent, str(p), "summary")
            client.set_terminated(self.parent, status)
        self._safe("finishing the study run", go)


RECORD = "mlflow_run.json"
"""OUT/mlflow_run.json: the study's name, MLflow store and latest parent run."""


def study_store(spec, root: Path, option: str | None) -> str:
    """The study's MLflow store: ``option`` (--tracking-uri), else the study file's
    ``tracking_uri`` (a relative sqlite path taken from the file's folder ``root``), else
    $MLFLOW_TRACKING_URI or ./mlruns/mlflow.db."""
    from medmae.tracking.store import resolve_tracking_uri, sqlite_path

    if option or not spec.tracking_uri:
        return resolve_tracking_uri(option)
    db = sqlite_path(spec.tracking_uri)
    if db is not None and not db.is_absolute():
        return f"sqlite:///{(root / db).resolve()}"
    return spec.tracking_uri


def record_store(out: Path, name: str, uri: str, runs: "StudyRuns") -> None:
    from medmae.atomic import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / RECORD, json.dumps({"study": name, "tracking_uri": uri, "run_id": runs.parent,
                                                "experiment": runs.experiment}, indent=1) + "\n")


def locate_study(target: str, option: str | None) -> tuple[str, str]:
    """``medmae study show TARGET`` -> (study name, MLflow store). TARGET is a study's output
    folder (its mlflow_run.json names both), a study file (its name; its ``tracking_uri``, else
    the store recorded in its output folder, else the default), or a study's name."""
    from medmae.config.base import ConfigError, load_config
    from medmae.studies.spec import StudySpec
    from medmae.tracking.store import resolve_tracking_uri

    path = Path(target)
    if path.is_file():
        spec = load_config(StudySpec, path)
        record = Path(spec.out.format(name=spec.name)) / RECORD
        if option or spec.tracking_uri or not record.is_file():
            return spec.name, study_store(spec, path.resolve().parent, option)
    elif (path / RECORD).is_file():
        record = path / RECORD
    elif not re.fullmatch(r"[A-Za-z0-9_.-]+", target):  # a path, not a study's name
        what = f"not a study's output folder (no {RECORD})" if path.is_dir() else "no such file or folder"
        raise ConfigError(f"{path}: {what}; give the study file, its output folder, or its name "
                          "(with --tracking-uri)")
    else:
        return target, resolve_tracking_uri(option)
    info = json.loads(record.read_text(encoding="utf-8"))
    return info["study"], option or info["tracking_uri"]


def find_study_runs(uri: str, name: str | None = None) -> list:
    """Parent runs of studies (newest first), of one study when ``name`` is given."""
    client = _client(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    if not exps:
        return []
    filt = f"tags.`{STUDY_TAG}` = '{name}'" if name else f"tags.`{STUDY_TAG}` LIKE '%'"
    return client.search_runs(exps, filter_string=filt, order_by=["attributes.start_time DESC"])


def download_summary(uri: str, run_id: str, dst: Path) -> Path:
    """The run's summary.md, fetched without MLflow's progress bar (one small file)."""
    import os

    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        return Path(_client(uri).download_artifacts(run_id, "summary/summary.md", str(dst)))
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before
