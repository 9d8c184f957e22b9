"""Per-step numbers: kept on the device between syncs, then logged.

Each optimizer step adds its loss, mean-predictor loss and hidden-token correlation
(medmae.training.correlation) as 0-dim device tensors
(no host sync per step). :meth:`StepLog.sync` averages them over ranks in one all-reduce,
writes one record per step to ``metrics.jsonl`` (rank 0) and raises if the loss diverged;
:meth:`StepLog.report` prints the progress line and sends the means since the previous
report to the tracker.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from medmae.tracking.metrics_log import MetricsLog
from medmae.tracking.mlflow_run import Tracker
from medmae.training.distributed import DistInfo, mean_across_ranks
from medmae.training.progress import Progress

logger = logging.getLogger("medmae.training.engine")


@dataclass
class StepNumbers:
    """One optimizer step's outputs (``step`` = steps done, 1-based)."""

    step: int
    lr: float
    loss: torch.Tensor
    mean_predictor: torch.Tensor | None = None
    """Loss of predicting the mean (medmae.training.mean_predictor; pretraining; None: not measured)."""
    grad_norm: torch.Tensor | float | None = None
    masking: dict[str, float] = field(default_factory=dict)
    correlation: torch.Tensor | None = None
    """Pearson r of reconstruction and truth on hidden valid voxels (None: not measured)."""


class StepLog:
    """See the module docstring; ``log`` is None on ranks other than 0."""

    def __init__(self, info: DistInfo, log: MetricsLog | None, tracker: Tracker, progress: Progress,
                 lr_key: str = "lr_per_256"):
        self.info, self.log, self.tracker, self.progress = info, log, tracker, progress
        self.lr_key = lr_key
        """The learning-rate key a diverged run is told to lower (train.lr_per_256 or train.peak_lr)."""
        self._window: list[StepNumbers] = []
        self._unreported: list[dict[str, Any]] = []
        self.losses: list[float] = []
        self.mean_predictor: list[float] = []
        self.correlations: list[float] = []

    def add(self, numbers: StepNumbers) -> None:
        self._window.append(numbers)

    def sync(self) -> None:
        """Steps added since the last sync -> host records (every rank must call it)."""
        if not self._window:
            return
        rows = torch.stack([_row(s) for s in self._window])  # W 3
        rows = mean_across_ranks(rows, self.info).cpu().tolist()
        records = []
        for s, (loss, base, corr) in zip(self._window, rows):
            rec = {"step": s.step, "loss": loss, "lr": s.lr}
            if s.mean_predictor is not None:
                rec["mean_predictor_loss"] = base
            if s.correlation is not None:
                rec["hidden_corr"] = corr
            if s.grad_norm is not None:
                rec["grad_norm"] = float(s.grad_norm)
            rec.update({f"masking/{k}": v for k, v in s.masking.items()})
            records.append(rec)
        self._window = []
        self.losses += [r["loss"] for r in records]
        self.mean_predictor += [r["mean_predictor_loss"] for r in records if "mean_predictor_loss" in r]
        self.correlations += [r["hidden_corr"] for r in records if "hidden_corr" in r]
        if self.log is not None:
            self.log.write(records)
            self._unreported += records
        for r in records:
            if not math.isfinite(r["loss"]):
                raise FloatingPointError(f"training diverged: loss is {r['loss']} at step {r['step']} "
                                         f"(lower train.{self.lr_key}, or keep train.grad_clip on)")

    def report(self) -> None:
        """Progress line and tracker metrics: means over the steps since the last report (rank 0)."""
        self.sync()
        records, self._unreported = self._unreported, []
        if not records:
            return
        last = records[-1]
        mean = {k: sum(r[k] for r in records if k in r) / sum(k in r for r in records) for k in last if k != "step"}
        logger.info(self.progress.line(last["step"], mean["loss"], last["lr"], mean.get("mean_predictor_loss"),
                                       mean.get("hidden_corr")))
        mean["lr"] = last["lr"]
        if "mean_predictor_loss" in mean:
            m = mean["mean_predictor_loss"]
            mean["loss_over_mean_predictor"] = mean["loss"] / m if m > 0 else float("nan")
        mean["crops_per_s"] = self.progress.crops_per_s
        self.tracker.log_metrics({k: v for k, v in mean.items() if math.isfinite(v)}, last["step"])


def _row(s: StepNumbers) -> torch.Tensor:
    """(3,) float32 on the loss's device: loss, mean-predictor loss, correlation (nan when not measured)."""
    nan = torch.full_like(s.loss, float("nan"))
    corr = s.correlation if s.correlation is not None else nan
    base = s.mean_predictor if s.mean_predictor is not None else nan
    return torch.stack([s.loss.float(), base.float(), corr.float()])
