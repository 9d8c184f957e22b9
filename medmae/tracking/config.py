"""Experiment tracking config (MLflow)."""

from __future__ import annotations

from medmae.config.base import StrictModel


class TrackingConfig(StrictModel):
    enabled: bool = True
    tracking_uri: str | None = None
    """None: $MLFLOW_TRACKING_URI if set, else sqlite:///<cwd>/mlruns/mlflow.db."""
    experiment: str = "medmae-pretrain"
    run_name: str | None = None
    system_metrics: bool = True
    log_model: bool = True
