"""Tracking tests share the engine tests' helpers (phantom cache, tiny config, one thread)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from training_helpers import one_thread  # noqa: E402, F401  (autouse fixture)


@pytest.fixture(autouse=True)
def _restore_mlflow_http_env(monkeypatch):
    """A tracker sets MLflow's HTTP retry variables for the process; undo it after each test."""
    from medmae.tracking.mlflow_run import HTTP_ENV

    for key in HTTP_ENV:
        monkeypatch.setenv(key, "")  # records the value before the test (or its absence) ...
        monkeypatch.delenv(key)  # ... and leaves the test a clean slate
