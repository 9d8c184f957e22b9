"""Where MLflow runs go and what fits in them: tracking URI, SQLite store layout (created
under a file lock), the UI hint, the experiment (with its MLflow 3 kind), and MLflow's limits
on keys and values."""

from __future__ import annotations

import logging
import os
import threading
import zlib
from pathlib import Path
from typing import Any, Mapping

MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value
MAX_KEY = 250  # MLflow's limit on a param / tag / metric key
MAX_TAG_VALUE = 8000
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""MLflow 3's UI opens such an experiment in its model-training view (not the GenAI one)."""


def resolve_tracking_uri(configured: str | None, root: str | os.PathLike | None = None) -> str:
    """configured URI, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<root>/mlruns/mlflow.db``."""
    if configured:
        return configured
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    store = Path(root or Path.cwd()).resolve() / "mlruns"
    return f"sqlite:///{store / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix):]) if uri.startswith(prefix) else None


STORE_LOCK_TIMEOUT_S = 300.0
"""How long a process waits for another one creating the same SQLite store."""
_ready: set[str] = set()
_ready_lock = threading.Lock()


def ensure_store(uri: str) -> None:
    """Create (or open) an SQLite store once per process, under ``<db>.lock``.

    MLflow creates a new SQLite store's tables on first use, unlocked: two processes doing it
    at once (two `study run`, or a study and a training run on a fresh ``mlruns/``) collide,
    and one fails ("table ... already exists", "Online migration expected to match one row").
    Here the first process creates the tables while the others wait, then find them made.
    Other stores (tracking servers) need nothing.
    """
    db = sqlite_path(uri)
    if db is None or uri in _ready:
        return
    from filelock import FileLock, Timeout
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db.parent.mkdir(parents=True, exist_ok=True)
    with _ready_lock:
        if uri in _ready:
            return
        quiet = logging.getLogger("mlflow.store.db.utils")  # "Creating initial MLflow database tables..."
        level = quiet.level
        quiet.setLevel(max(level, logging.WARNING))
        try:
            with FileLock(f"{db}.lock", timeout=STORE_LOCK_TIMEOUT_S):
                SqlAlchemyStore(uri, artifact_root_for(uri)).engine.dispose()  # creates the tables if missing
        except Timeout:
            raise TimeoutError(f"{db}: another process has held {db}.lock for over {STORE_LOCK_TIMEOUT_S:g} s "
                               "while creating this MLflow store; if no medmae or mlflow process uses it, "
                               "delete the lock file") from None
        finally:
            quiet.setLevel(level)
        _ready.add(uri)


def client_for(uri: str):
    """An ``MlflowClient`` on ``uri``, its SQLite store created safely first (:func:`ensure_store`)."""
    from mlflow.tracking import MlflowClient

    ensure_store(uri)
    return MlflowClient(tracking_uri=uri)


def artifact_root_for(uri: str) -> str | None:
    """Artifacts of an SQLite store go beside the database, in ``artifacts/``."""
    db = sqlite_path(uri)
    return (db.parent / "artifacts").resolve().as_uri() if db else None


def ui_command(uri: str, experiment: str | None = None, run_id: str | None = None) -> str:
    """How to open the MLflow UI on this store: the run's page on a tracking server (its URL),
    else the command that serves the UI on a local store (then browse http://127.0.0.1:5000)."""
    if uri.startswith(("http://", "https://")):
        base = uri.rstrip("/")
        return f"{base}/#/experiments/{experiment}/runs/{run_id}" if experiment and run_id else base
    root = artifact_root_for(uri)
    cmd = f"mlflow ui --backend-store-uri {uri}"
    return f"{cmd} --default-artifact-root {root}" if root else cmd


def experiment_id(client, uri: str, name: str) -> str:
    """Id of experiment ``name``, created (artifacts beside an SQLite store) when missing;
    its MLflow 3 kind is model development unless something else set a kind."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, artifact_location=artifact_root_for(uri),
                                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    if EXPERIMENT_KIND_TAG not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp.experiment_id


def is_local(uri: str) -> bool:
    """An embedded store (SQLite, a folder), not a tracking server."""
    return not uri.startswith(("http://", "https://", "databricks"))


def model_name(run_name: str | None, name: str, step: int) -> str:
    """A Logged Model's name: what made it (the run's name without its start time), what it is,
    and the step: ``pretrain-random-s0-encoder-step6``, ``random-encoder-step1000``."""
    import re

    base = re.sub(r"-\d{8}-\d{6}$", "", run_name or "")
    return "-".join(p for p in (base, name, f"step{step}") if p)


def clip_key(key: str) -> str:
    """``key`` cut to MLflow's limit, with a digest of the whole key (the same in every process)."""
    return key if len(key) <= MAX_KEY else key[: MAX_KEY - 9] + "~" + format(zlib.crc32(key.encode()), "08x")


def param_values(flat: Mapping[str, Any]) -> dict[str, str]:
    """Flattened config -> MLflow params (string values, clipped to MLflow's limits)."""
    out = {}
    for k, v in flat.items():
        text = "null" if v is None else str(v)
        if len(text) > MAX_PARAM_VALUE:
            text = text[: MAX_PARAM_VALUE - 20] + "...[truncated]"
        out[clip_key(k)] = text
    return out


def run_tags_list(tags: Mapping[str, Any]) -> list:
    """Tags -> MLflow RunTags (keys and values clipped to MLflow's limits)."""
    from mlflow.entities import RunTag

    return [RunTag(clip_key(k), str(v)[:MAX_TAG_VALUE]) for k, v in tags.items()]
