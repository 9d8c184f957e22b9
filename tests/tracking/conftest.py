"""Engine tests run tiny models: one intra-op thread is faster than two on a shared 2-core
machine (no OpenMP barrier waits between tiny ops) and keeps timings steady."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _restore_mlflow_http_env(monkeypatch):
    """A tracker sets MLflow's HTTP retry variables for the process; undo it after each test."""
    from medmae.tracking.mlflow_run import HTTP_ENV

    for key in HTTP_ENV:
        monkeypatch.setenv(key, "")  # records the value before the test (or its absence) ...
        monkeypatch.delenv(key)  # ... and leaves the test a clean slate
