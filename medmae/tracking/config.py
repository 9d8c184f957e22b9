"""Experiment tracking config (MLflow)."""

from __future__ import annotations

from pydantic import Field

from medmae.config.base import StrictModel


class TrackingConfig(StrictModel):
    enabled: bool = True
    tracking_uri: str | None = None
    """None: $MLFLOW_TRACKING_URI if set, else sqlite:///<cwd>/mlruns/mlflow.db."""
    experiment: str | None = None
    """MLflow experiment; None: the command's own (medmae-pretrain, medmae-finetune,
    medmae-segment-evaluate, ...), filled in when the config is read."""
    run_name: str | None = None
    """Run name prefix (None: the masking strategy); the start time is appended, e.g. ``random-20260101-120000``."""
    system_metrics: bool = True
    """CPU/GPU/memory/disk/network every ``system_metrics_interval_s`` (MLflow's collectors, queued like any
    metric, so they survive a server outage)."""
    system_metrics_interval_s: float = Field(10.0, gt=0)
    log_model: bool = True
    """Log the encoder as an MLflow PyTorch Logged Model of the run (``models:/<model id>``) at the end."""
    log_checkpoint: bool = True
    """Upload the final checkpoint as an artifact."""
    tags: dict[str, str] = {}
    """Extra tags on the run, e.g. ``{project: liver}``; ``mlflow.parentRunId: <run id>`` nests it
    under that run (a study nests every run it starts this way)."""
    retry_every_s: float = Field(60.0, gt=0)
    """After a failed call (server down), wait this long before trying again."""
    finish_timeout_s: float = Field(120.0, ge=0)
    """At the end, wait at most this long for queued calls to reach the server (also when it was never reachable)."""
    http_retries: int = Field(2, ge=0)
    """Default for $MLFLOW_HTTP_REQUEST_MAX_RETRIES (MLflow's own is 7, i.e. minutes per call)."""
    http_timeout_s: float = Field(30.0, gt=0)
    """Default for $MLFLOW_HTTP_REQUEST_TIMEOUT."""
    max_backlog: int = Field(20000, ge=1)
    """Queued calls kept while the server is down; past it, metrics stay only in metrics.jsonl."""

    def default_experiment(self, name: str) -> None:
        """Fill ``experiment`` with the command's default ``name`` when the config left it unset."""
        if self.experiment is None:
            self.experiment = name
