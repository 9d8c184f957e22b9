"""A resilient MLflow run: a tracking server that goes down never stops training.

Every MLflow call is queued and made by one background thread, so the training loop
never waits on the network. When a call fails (server down, disk full, bad URI) the
tracker warns once with the reason, keeps the call at the head of its queue, and retries
every ``retry_every_s`` seconds; metrics queued meanwhile are sent in batches when the
server is back. The local ``metrics.jsonl`` (written by the engine) holds every step
whatever happens here. At :meth:`MlflowTracker.finish` the queue gets ``finish_timeout_s``
to drain; whatever is still unsent is reported.

Store: ``tracking.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else an embedded SQLite
store ``sqlite:///<cwd>/mlruns/mlflow.db`` with artifacts in ``<cwd>/mlruns/artifacts``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from medmae.atomic import atomic_write_text
from medmae.tracking.config import TrackingConfig
from medmae.tracking.quiet_http import HTTP_ENV, short_http_retries, silence_threads
from medmae.tracking.store import (EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, MAX_KEY, MAX_PARAM_VALUE,  # noqa: F401
                                   MAX_TAG_VALUE, artifact_root_for, client_for, clip_key, experiment_id,
                                   is_local, model_name, param_values, resolve_tracking_uri, sqlite_path,
                                   ui_command)
from medmae.tracking.store import run_tags_list as _run_tags
from medmae.tracking.system_metrics import PREFIX as SYSTEM_PREFIX
from medmae.tracking.system_metrics import THREAD_NAME as SYSTEM_THREAD
from medmae.tracking.system_metrics import SystemMetricsSampler

logger = logging.getLogger(__name__)

__all__ = ["HTTP_ENV", "MlflowTracker", "Tracker"]
METRICS_PER_BATCH = 1000
THREAD_NAME = "medmae-mlflow"
# MLflow error codes that no retry can cure (the call itself is wrong, or its run is gone).
PERMANENT_ERRORS = frozenset({
    "INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST", "RESOURCE_DOES_NOT_EXIST", "NOT_FOUND",
    "RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS", "INVALID_STATE", "INVALID_STATE_TRANSITION",
    "PERMISSION_DENIED", "FEATURE_DISABLED", "ENDPOINT_NOT_FOUND", "MAX_BLOCK_SIZE_EXCEEDED",
})


def is_permanent(err: Exception) -> bool:
    """True for failures that retrying cannot fix: a missing local file, a rejected call."""
    from mlflow.exceptions import MlflowException

    if isinstance(err, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return True
    return isinstance(err, MlflowException) and err.error_code in PERMANENT_ERRORS


def _import_mlflow() -> None:
    import mlflow  # noqa: F401
    import mlflow.entities  # noqa: F401
    import mlflow.system_metrics.system_metrics_monitor  # noqa: F401
    import mlflow.tracking  # noqa: F401


@dataclass
class _Op:
    """One queued MLflow call; ``fn(client, run_id)``; metric ops carry their values."""

    name: str
    fn: Callable[[Any, str | None], Any] | None = None
    metrics: list = field(default_factory=list)


class Tracker:
    """The tracker interface; this base class records nothing (other ranks, tracking off)."""

    uri: str | None = None
    run_id: str | None = None
    experiment_id: str | None = None
    local_log: Path | None = None
    """The run's local metrics log (named in warnings about what did not reach MLflow)."""
    run_file: Path | None = None
    """Where the MLflow run's id is written once the run exists (see :func:`medmae.tracking.run_file.read_run_file`)."""

    def start(self, params: Mapping[str, Any], tags: Mapping[str, str], run_name: str | None = None) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None: ...

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_model(self, folder: str | os.PathLike, name: str, step: int = 0) -> None: ...

    def wait_for_run(self, timeout_s: float) -> str | None:
        return None

    def finish(self, status: str = "FINISHED") -> bool:
        return True


class MlflowTracker(Tracker):
    """One MLflow run fed through a background thread (see the module docstring).

    ``resume_run_id`` continues that run when the store has it (a resumed training run).
    """

    def __init__(self, cfg: TrackingConfig, resume_run_id: str | None = None,
                 root: str | os.PathLike | None = None):
        self.cfg = cfg
        self.uri = resolve_tracking_uri(cfg.tracking_uri, root)
        self.run_id = None
        self.resume_run_id = resume_run_id
        self._ops: deque[_Op] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._abandon = False
        self._down = False
        self._dropped = 0
        self.failures = 0
        self.rejected = 0
        self.last_error: str | None = None
        self._monitor: SystemMetricsSampler | None = None
        self._monitor_off = False
        self._logged_through = -1  # a resumed run's last training step already in MLflow
        self._run_name: str | None = None
        _import_mlflow()  # here, not in two threads at once (mlflow's imports are not thread-safe)
        self._prepare_store()
        silence_threads(THREAD_NAME, SYSTEM_THREAD)
        self._thread = threading.Thread(target=self._work, name=THREAD_NAME, daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- public API (any thread)
    def start(self, params: Mapping[str, Any], tags: Mapping[str, str], run_name: str | None = None) -> None:
        """Queue the run's creation (or resumption) with its params and tags."""
        name = run_name or self.cfg.run_name
        self._run_name = name
        self._put(_Op("start run", lambda client, _: self._start_run(client, dict(params), dict(tags), name)))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = [Metric(clip_key(k), float(v), now, int(step)) for k, v in metrics.items()]
        if len(self._ops) >= self.cfg.max_backlog:
            if not self._dropped:
                logger.warning("MLflow backlog is full (%d calls); further metrics are kept only in "
                               "the local metrics.jsonl until the server is back", self.cfg.max_backlog)
            self._dropped += 1
            return
        self._put(_Op("log metrics", metrics=values))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        path = str(path)
        self._put(_Op(f"log artifact {Path(path).name}",
                      lambda client, run: client.log_artifact(run, path, artifact_path)))

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str | None = None) -> None:
        folder = str(folder)
        self._put(_Op(f"log artifacts {Path(folder).name}/",
                      lambda client, run: client.log_artifacts(run, folder, artifact_path)))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        values = _run_tags(tags)
        self._put(_Op("set tags", lambda client, run: client.log_batch(run, tags=values)))

    def log_model(self, folder: str | os.PathLike, name: str, step: int = 0) -> None:
        """Queue a saved MLflow model folder as a Logged Model of the run (see encoder_model),
        named for the run and the step (:func:`model_name`: ``pretrain-random-s0-encoder-step6``)."""
        from medmae.tracking.encoder_model import log_logged_model

        folder = str(folder)
        name = model_name(self.cfg.run_name or self._run_name, name, step)
        self._put(_Op(f"log model {name}", lambda client, run: log_logged_model(client, run, folder, name, step)))

    def finish(self, status: str = "FINISHED") -> bool:
        """End the run; waits up to ``finish_timeout_s`` for the queue. True when all was sent."""
        self._stop_monitor()  # before "end run" is queued, so that no sample follows it
        self._put(_Op("end run", lambda client, run: self._end_run(client, run, status)))
        deadline = time.monotonic() + self.cfg.finish_timeout_s
        # a local store that is merely slow (a busy SQLite file) is waited for quietly; a failed
        # call has warned already, and what is still unsent at the deadline is reported below
        slow_server = self.run_id is None and not is_local(self.uri)
        if (self._down or slow_server) and self._ops and self.cfg.finish_timeout_s > 0:
            logger.warning("MLflow at %s %s: waiting up to %g s (tracking.finish_timeout_s) for it before "
                           "ending; every step is in %s", self.uri,
                           "is unreachable" if self._down else "has not answered yet", self.cfg.finish_timeout_s,
                           self._where())
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            while self._ops and time.monotonic() < deadline:
                self._cond.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            unsent = len(self._ops)
            self._abandon = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
        self._stop_monitor()  # started meanwhile by a late run creation
        if unsent or self._dropped:
            logger.warning("MLflow: %d queued calls could not be sent to %s and %d metric batches were "
                           "dropped from the full backlog (last error: %s); every step is in %s",
                           unsent, self.uri, self._dropped, self.last_error, self._where())
        return not (unsent or self._dropped or self.rejected)

    def wait_for_run(self, timeout_s: float) -> str | None:
        """The run's id once created, waiting at most ``timeout_s`` (None: not created by then,
        or refused)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.run_id is None and not self._abandon and time.monotonic() < deadline:
                self._cond.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            return self.run_id

    def _where(self) -> str:
        return str(self.local_log) if self.local_log else "the run's local metrics.jsonl"

    # ---------------------------------------------------------------- worker thread
    def _put(self, op: _Op) -> None:
        with self._cond:
            if self._abandon:
                return
            self._ops.append(op)
            self._cond.notify_all()

    def _prepare_store(self) -> None:
        db = sqlite_path(self.uri)
        if db is not None:
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # read-only working directory: the worker's calls will fail and warn
                self._failed("create the store folder", e)
        elif self.uri.startswith(("http://", "https://")):
            short_http_retries(self.cfg.http_retries, self.cfg.http_timeout_s)

    def _work(self) -> None:
        client = None
        while True:
            with self._cond:
                while not self._ops and not self._stopping:
                    self._cond.wait()
                if not self._ops or self._abandon:
                    return
                batch = self._take_batch()
            try:
                if client is None:
                    client = client_for(self.uri)  # a new SQLite store is created under a file lock
                self._run(client, batch)
            except Exception as e:
                if is_permanent(e):  # retrying cannot help: drop the call (all calls, if it was the run's creation)
                    self._reject(batch, e)
                    continue
                self._failed(batch[0].name, e)  # server down or busy: warn once, keep the call, retry later
                with self._cond:
                    if not self._abandon:
                        self._cond.wait(timeout=0.5 if self._stopping else self.cfg.retry_every_s)
                continue
            self._pop(len(batch))
            if self._down:
                self._down = False
                logger.warning("MLflow at %s is reachable again; sending the queued calls", self.uri)

    def _pop(self, n: int) -> None:
        with self._cond:
            for _ in range(n):
                self._ops.popleft()
            self._cond.notify_all()

    def _reject(self, batch: list[_Op], err: Exception) -> None:
        self.rejected += len(batch)
        reason = f"{type(err).__name__}: {err}".replace("\n", " ")[:500]
        if batch[0].name == "start run":
            logger.warning("MLflow refused to create the run in %s (%s); nothing is sent to MLflow for "
                           "this run, every step is in the local metrics.jsonl", self.uri, reason)
            with self._cond:
                self.rejected += len(self._ops) - len(batch)
                self._ops.clear()
                self._abandon = True
                self._cond.notify_all()
            return
        logger.warning("MLflow call '%s' was rejected and is dropped (%s)", batch[0].name, reason)
        self._pop(len(batch))

    def _take_batch(self) -> list[_Op]:
        """The head op, or the run of metric ops at the head (up to one log_batch's worth)."""
        head = self._ops[0]
        if head.fn is not None:
            return [head]
        batch, n = [], 0
        for op in self._ops:
            if op.fn is not None or n + len(op.metrics) > METRICS_PER_BATCH and batch:
                break
            batch.append(op)
            n += len(op.metrics)
        return batch

    def _run(self, client, batch: list[_Op]) -> None:
        if self.run_id is None and batch[0].name != "start run":
            raise RuntimeError("no MLflow run (its creation has not succeeded yet)")
        if batch[0].fn is not None:
            batch[0].fn(client, self.run_id)
            return
        # a resumed run re-trains the steps after its checkpoint: MLflow keeps the points it has
        metrics = [m for op in batch for m in op.metrics
                   if m.step > self._logged_through or m.key.startswith(SYSTEM_PREFIX)]
        if metrics:
            client.log_batch(self.run_id, metrics=metrics)

    def _failed(self, what: str, err: Exception) -> None:
        self.failures += 1
        reason = f"{type(err).__name__}: {err}".replace("\n", " ")
        self.last_error = reason[:500]
        if not self._down:
            self._down = True
            logger.warning("MLflow call '%s' to %s failed (%s); training goes on, every step stays "
                           "in the local metrics.jsonl, and the call is retried every %g s",
                           what, self.uri, self.last_error, self.cfg.retry_every_s)
        else:
            logger.debug("MLflow still unreachable (%s)", self.last_error)

    def _start_run(self, client, params: dict, tags: dict, run_name: str | None) -> None:
        from mlflow.entities import Param

        from medmae.tracking.provenance import code_tags

        tags = {**code_tags(), **self.cfg.tags, **tags}  # every run says what code made it, and its parent
        run = self._find_resumable(client)
        system_step = 0
        if run is None:
            run = client.create_run(experiment_id(client, self.uri, self.cfg.experiment or "medmae"), run_name=run_name,
                                    tags=dict(self.cfg.tags))  # nested from the start
            existing = {}
        else:
            client.update_run(run.info.run_id, status="RUNNING")
            existing = run.data.params
            self._logged_through, system_step = _last_steps(client, run)
        run_id = run.info.run_id
        self.experiment_id = run.info.experiment_id
        values = param_values({k: v for k, v in params.items() if not k.startswith("tracking.tags.")})  # tags already
        new = [Param(k, v) for k, v in values.items() if k not in existing]
        changed = {f"resume.changed.{k}": v for k, v in values.items() if k in existing and existing[k] != v}
        client.log_batch(run_id, params=new, tags=_run_tags({**tags, **changed}))  # MLflow splits it up
        self.run_id = run_id
        if self.run_file is not None:
            atomic_write_text(self.run_file, json.dumps({"tracking_uri": self.uri, "run_id": run_id,
                                                         "experiment_id": self.experiment_id}) + "\n")
        if self.cfg.system_metrics and self._monitor is None:
            self._start_monitor(system_step)

    def _find_resumable(self, client):
        if not self.resume_run_id:
            return None
        from mlflow.exceptions import MlflowException

        try:
            return client.get_run(self.resume_run_id)
        except MlflowException:  # a checkpoint from another store: start a new run
            logger.info("MLflow run %s is not in %s; starting a new run", self.resume_run_id, self.uri)
            return None

    def _stop_monitor(self) -> None:
        with self._cond:
            monitor, self._monitor = self._monitor, None
            self._monitor_off = True
        if monitor is not None:
            monitor.stop()

    def _start_monitor(self, first_step: int) -> None:
        with self._cond:
            if self._monitor_off:
                return
        try:
            self._monitor = SystemMetricsSampler(self.log_metrics, self.cfg.system_metrics_interval_s,
                                                 first_step).start()
        except Exception as e:  # psutil missing, or an unsupported platform
            logger.warning("MLflow system metrics are off (%s: %s)", type(e).__name__, e)
            self._monitor = None

    def _end_run(self, client, run_id: str, status: str) -> None:
        client.set_terminated(run_id, status=status)


def _last_steps(client, run) -> tuple[int, int]:
    """(last training step, next system-metrics step) already logged in a resumed run."""
    train, system = -1, -1
    for key in run.data.metrics:
        last = max((m.step for m in client.get_metric_history(run.info.run_id, key)), default=-1)
        if key.startswith(SYSTEM_PREFIX):
            system = max(system, last)
        else:
            train = max(train, last)
    return train, system + 1
