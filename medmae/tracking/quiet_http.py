"""One warning per tracking outage: the HTTP client's own retry chatter is silenced.

While the MLflow server is down, every call made by the tracker's threads makes urllib3
log "Retrying (Retry(total=...)) after connection broken ..." once per retry, and MLflow
log its own retry notes: dozens of lines per minute. The tracker reports an outage once
(and once more when the server is back), so records from *its* threads (and only those:
the user's own MLflow calls keep their messages) below ERROR from these loggers are
dropped, and the HTTP retries themselves are kept short (see :func:`short_http_retries`).
"""

from __future__ import annotations

import logging
import os
import threading

NOISY_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "mlflow.utils.rest_utils",
                 "mlflow.utils.request_utils", "mlflow.tracking._tracking_service.client",
                 "mlflow.store.artifact.http_artifact_repo")
HTTP_ENV = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT",
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER")
_USER_HTTP_ENV = {k for k in HTTP_ENV if k in os.environ}  # set by the user, before any tracker
_installed = threading.Lock()
_threads: set[str] = set()


class _TrackerThreadFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.threadName not in _threads


_FILTER = _TrackerThreadFilter()


def silence_threads(*names: str) -> None:
    """Drop retry chatter logged from threads of these names (idempotent)."""
    with _installed:
        _threads.update(names)
        for name in NOISY_LOGGERS:
            log = logging.getLogger(name)
            if _FILTER not in log.filters:
                log.addFilter(_FILTER)


def short_http_retries(retries: int, timeout_s: float) -> None:
    """MLflow's HTTP defaults (7 retries, exponential back-off, 120 s timeout) hold one call
    for minutes; these keep a failed call to seconds. Variables the user set before medmae
    was imported win."""
    ours = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries), "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(timeout_s))), "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0"}
    for key, value in ours.items():
        if key not in _USER_HTTP_ENV:
            os.environ[key] = value
