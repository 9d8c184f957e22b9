"""The pretraining loop: one readable, step-based function (in the spirit of nanoGPT).

Per optimizer step, for each of ``grad_accum`` micro-batches on every rank:
    batch -> MaskContext -> (token scores) -> mask -> model(x, mask, valid) -> backward
    -> strategy.update(ctx, mask, token_loss)
then clip, AdamW step, LR from the warm-up + cosine schedule. Rank 0 writes everything:

    OUT/config.yaml            resolved config
    OUT/metrics.jsonl          one record per step (loss, mean_predictor_loss, lr, ...)
    OUT/checkpoints/           latest.pt + the last K step files (see medmae.training.state)
    OUT/figures/step_*.png     input / mask / reconstruction montages
    OUT/mlflow_model/encoder/  the encoder as an MLflow model (logged as a Logged Model of the run;
                               encoder_weights/ instead, weights only, if it cannot be exported)
    OUT/mlflow_run.json        the MLflow run's id, once created (a resumed run continues it)
    OUT/.medmae-train.lock     held while the run lives (one run per folder)

A killed run restarted with ``train.resume: true`` continues from ``latest.pt`` with the
same losses, step for step, as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medmae.config.base import flatten, save_config
from medmae.training.pretrain_config import PretrainConfig
from medmae.data.config import LoaderConfig
from medmae.data.loader import build_loader
from medmae.masking.build import build_masking
from medmae.masking.context import build_context
from medmae.models import build_mae
from medmae.preprocess.signature import cache_signature
from medmae.tracking.figures import save_reconstruction_figure
from medmae.tracking.mlflow_run import Tracker
from medmae.tracking.provenance import run_tags
from medmae.training.mean_predictor import mean_predictor_loss
from medmae.training.correlation import hidden_correlation
from medmae.training.distributed import DistInfo, wrap_ddp
from medmae.training.loop import RunResult, RunState, run_task
from medmae.training.optim import build_optimizer, optimizer_step
from medmae.training.precision import autocast, grad_scaler, resolve_precision
from medmae.training.preflight import RESUME_KEYS, preflight
from medmae.training.rng import seed_everything
from medmae.training.robust_loss import trimmed_loss
from medmae.training.schedule import WarmupCosine, scaled_lr
from medmae.training.signals import protect_workers
from medmae.training.state import TrainParts
from medmae.training.steplog import StepNumbers

logger = logging.getLogger(__name__)



@dataclass
class PretrainResult(RunResult):
    """What a pretraining run produced (``losses``: the masked-token loss)."""

    mean_predictor: list[float] = field(default_factory=list)
    """Per-step loss of predicting the mean (see medmae.training.mean_predictor)."""
    correlations: list[float] = field(default_factory=list)
    """Per-step Pearson r of reconstruction and truth on hidden tokens (medmae.training.correlation)."""
    figures: list[Path] = field(default_factory=list)
    model: nn.Module | None = None
    """The trained MaskedAutoencoder3D (plain module)."""
    masking: nn.Module | None = None
    """The masking strategy, with its learned state (adversarial generator, EMA teacher)."""

    def fill(self, run: RunState) -> None:
        super().fill(run)
        if run.steplog is not None:
            self.mean_predictor, self.correlations = run.steplog.mean_predictor, run.steplog.correlations


def pretrain(cfg: PretrainConfig, tracker: Tracker | None = None) -> PretrainResult:
    """Run (or resume) pretraining as ``cfg`` says; see the module docstring.

    Under torchrun every rank calls this; the process group is created here from the
    environment (and destroyed at the end if created here). ``tracker`` replaces the
    MLflow tracker rank 0 would make from ``cfg.tracking``.

    The run loop (resume check, ``train.out_dir`` lock, SIGTERM / Ctrl-C checkpoint, cadence,
    MLflow) is medmae.training.loop's, shared with fine-tuning; this module supplies the
    MAE's build, step, checkpoint, figures and final encoder.
    """
    result = PretrainResult(out_dir=Path(cfg.train.out_dir).resolve(), steps=0, start_step=0)

    def build(run: RunState) -> tuple[PretrainTask, int]:
        preflight(cfg)  # the resume check is the loop's; these are the data checks
        task = PretrainTask(cfg, run)
        result.model, result.masking, result.figures = task.parts.model, task.parts.strategy, task.figures
        return task, task.start

    run_task(cfg, RESUME_KEYS, "pretraining run", tracker, build, result.fill)
    return result


class PretrainTask:
    """The MAE's part of the run loop (a medmae.training.loop.Task): build and restore, step,
    checkpoint dict, figures, tracking params, final encoder."""

    def __init__(self, cfg: PretrainConfig, run: RunState):
        t, info, device = cfg.train, run.info, run.info.device
        self.cfg, self.info, self.out_dir, self.preprocess = cfg, info, run.out_dir, run.preprocess
        self.tracker, self.steps = run.tracker, t.steps
        # identical model init on every rank, then each rank's own random stream
        seed_everything(t.seed)
        model = build_mae(cfg.model, cfg.data.crop_size).to(device)
        strategy = build_masking(cfg.masking, patch_size=cfg.model.patch_size, in_channels=cfg.model.in_channels,
                                 total_steps=t.steps).to(device)
        self.precision = resolve_precision(t.precision, device)
        self.crops_per_step = cfg.data.batch_size * t.grad_accum * info.world_size
        if t.warmup_steps > t.steps and info.is_main:
            logger.warning("train.warmup_steps=%d exceeds train.steps=%d: warming up over all %d steps",
                           t.warmup_steps, t.steps, t.steps)
        self.schedule = WarmupCosine(scaled_lr(t.lr_per_256, self.crops_per_step), t.steps,
                                     min(t.warmup_steps, t.steps), t.min_lr)
        mask_rng = torch.Generator(device=device)
        mask_rng.manual_seed(t.seed + info.rank)
        seed_everything(t.seed + info.rank)
        self.parts = TrainParts(
            model=model, strategy=strategy, schedule=self.schedule,
            optimizer=build_optimizer(model, self.schedule.peak_lr, t.weight_decay, t.betas),
            scaler=grad_scaler(self.precision, device),
            loader=build_loader(_data_read(cfg, info), seed=t.seed, rank=info.rank, world_size=info.world_size,
                                device=device),
            mask_rng=mask_rng,
        )
        protect_workers(self.parts.loader)  # a SIGTERM to the process group leaves the workers running
        self.start = self.parts.restore(run.state, info) if run.state is not None else 0
        self.train_model = wrap_ddp(model, info)
        if t.compile:
            self.train_model = torch.compile(self.train_model)
        self.train_model.train()
        self.data_signature = cache_signature(cfg.data.cache_dir)
        self.figures: list[Path] = []
        self._last = None

    def step(self, step: int) -> StepNumbers:
        lr = self.schedule.apply(self.parts.optimizer, step)
        loss, mean_pred, corr, grad_norm, masking, self._last = _train_step(self.cfg, self.parts, self.train_model,
                                                                           self.info, self.precision, step)
        return StepNumbers(step + 1, lr, loss, mean_pred, grad_norm, masking, corr)

    def after_step(self, done: int, last: bool) -> None:
        t = self.cfg.train
        if self.info.is_main and (done % t.figure_every == 0 or last):
            self.figures.append(_figure(self.out_dir, done, self.parts.model, self._last, t.figure_samples, self.cfg))
            self.tracker.log_artifact(self.figures[-1], "figures")

    def checkpoint(self, done: int, run_id: str | None) -> dict | None:
        ck = self.parts.checkpoint(done, self.info, self.cfg.model_dump(mode="json"), self.preprocess, run_id)
        if ck is not None:
            ck["data"] = self.data_signature
        return ck

    def start_tracking(self, tracker: Tracker, start: int) -> None:
        _start_tracking(tracker, self.cfg, self.info, self.out_dir, self.precision, self.schedule,
                        self.crops_per_step, start)

    def finish(self, tracker: Tracker, run: RunState) -> None:
        done = PretrainResult(out_dir=run.out_dir, steps=run.steps, start_step=run.start, checkpoint=run.checkpoint)
        _log_final(tracker, self.cfg, self.parts.model, done)


def _train_step(cfg: PretrainConfig, parts: TrainParts, train_model: nn.Module, info: DistInfo,
                precision: str, step: int):
    """One optimizer step over ``grad_accum`` micro-batches.

    Returns (loss, mean-predictor loss, hidden-token correlation) 0-dim device tensors averaged over
    micro-batches, the
    gradient norm (before clipping; None without clipping), the strategy's metrics, and
    the last micro-batch ``(batch, ctx, mask, out)`` for figures.
    """
    t, m, device = cfg.train, cfg.masking, info.device
    losses, mean_preds, corrs, metrics = [], [], [], []
    for micro in range(t.grad_accum):
        batch = next(parts.loader)
        ctx = build_context(batch, cfg.model.patch_size, m.foreground_only, m.foreground_min_fraction, device,
                            min_valid_tokens=m.foreground_min_tokens)
        with autocast(precision, device):
            if parts.strategy.needs_scores:
                ctx.token_scores = parts.strategy.score_tokens(parts.model, ctx.image, ctx.valid, parts.mask_rng,
                                                               step)
            mask = parts.strategy(ctx, step, parts.mask_rng)
            sync = contextlib.nullcontext()
            if info.distributed and micro < t.grad_accum - 1:
                sync = train_model.no_sync()
            with sync:
                out = train_model(ctx.image, mask, ctx.valid)
                loss = (out.loss if not t.trim_fraction else
                        trimmed_loss(out.pred, out.target, mask, ctx.valid, t.trim_fraction)) / t.grad_accum
                (parts.scaler.scale(loss) if parts.scaler is not None else loss).backward()
        metrics.append(parts.strategy.update(ctx, mask, out.token_loss.detach(), step))
        losses.append(out.loss.detach())
        mean_preds.append(mean_predictor_loss(out.target, mask, ctx.valid, cfg.model.norm_pix_loss))
        corrs.append(hidden_correlation(out.pred, out.target, mask, ctx.valid))
    grad_norm = optimizer_step(parts.optimizer, parts.scaler, parts.model.parameters(), t.grad_clip)
    parts.strategy.after_optimizer_step(parts.model)  # EMA teachers: once per optimizer step
    keys = {k for d in metrics for k in d}
    mean_metrics = {k: sum(float(d[k]) for d in metrics if k in d) / sum(k in d for d in metrics) for k in keys}
    means = [torch.stack(v).mean() for v in (losses, mean_preds, corrs)]
    return (*means, grad_norm, mean_metrics, (batch, ctx, mask, out))


def _data_read(cfg: PretrainConfig, info: DistInfo) -> LoaderConfig:
    """``cfg.data`` with only the priors the masking reads (and "body"): a map no strategy
    reads is neither loaded, cropped, flipped nor reduced to tokens (random masking on the
    demo's four maps: 42 -> 33 ms per step on 2 CPU threads)."""
    read = set(cfg.masking.maps_read())
    keep = [p for p in cfg.data.priors if p == "body" or p in read]
    skipped = [p for p in cfg.data.priors if p not in keep]
    if skipped and info.is_main:
        logger.info("data.priors %s: not read by %s masking, not loaded", skipped, cfg.masking.strategy)
    return cfg.data.model_copy(update={"priors": keep}) if skipped else cfg.data


@torch.no_grad()
def _figure(out_dir: Path, step: int, model: nn.Module, last, samples: int, cfg: PretrainConfig) -> Path:
    """Montage of the last micro-batch: input, mask, reconstruction with visible patches pasted."""
    batch, ctx, mask, out = last
    recon = model.reconstruct(out.pred.detach(), ctx.image, mask, ctx.valid)
    ids = batch.get("case_id")
    return save_reconstruction_figure(
        out_dir / "figures" / f"step_{step:07d}.png", ctx.image, recon, mask, ctx.valid,
        cfg.model.patch_size, titles=list(ids) if ids is not None else None, max_samples=samples,
        suptitle=f"step {step}  masking: {cfg.masking.strategy} ({cfg.masking.ratio:.0%})")


def _start_tracking(tracker: Tracker, cfg: PretrainConfig, info: DistInfo, out_dir: Path, precision: str,
                    schedule: WarmupCosine, crops_per_step: int, start: int) -> None:
    """Write OUT/config.yaml; queue the run's params, tags, config and data fingerprint."""
    config_path = save_config(cfg, out_dir / "config.yaml")
    params: dict[str, Any] = flatten(cfg)
    params.update({"derived.effective_batch": crops_per_step, "derived.peak_lr": schedule.peak_lr,
                   "derived.world_size": info.world_size, "derived.precision": precision,
                   "derived.threads": torch.get_num_threads()})
    tags = run_tags(cfg.data.cache_dir, info.device, info.world_size,
                    {"masking.strategy": cfg.masking.strategy, "out_dir": str(out_dir)})
    if start:
        tags["resumed_from_step"] = str(start)
    name = f"{cfg.tracking.run_name or cfg.masking.strategy}-{time.strftime('%Y%m%d-%H%M%S')}"
    tracker.start(params, tags, run_name=name)  # runs told apart by strategy (or tracking.run_name) and time
    tracker.log_artifact(config_path)
    for name in ("fingerprint.json", "config.yaml"):
        p = Path(cfg.data.cache_dir) / name
        if p.is_file():
            tracker.log_artifact(p, "data" if name == "fingerprint.json" else "data/preprocess")


def _log_final(tracker: Tracker, cfg: PretrainConfig, model: nn.Module, result: PretrainResult) -> None:
    """Queue the final checkpoint and the encoder model (saved locally first)."""
    if cfg.tracking.log_checkpoint and result.checkpoint is not None:
        tracker.log_artifact(result.checkpoint, "checkpoints")
    if cfg.tracking.enabled and cfg.tracking.log_model:
        from medmae.tracking.encoder_model import save_encoder_model

        saved = save_encoder_model(model.encoder, result.out_dir / "mlflow_model", cfg.model.in_channels,
                                   cfg.data.crop_size)
        if saved.is_model:
            tracker.log_model(saved.path, "encoder", step=result.steps)  # an MLflow 3 Logged Model of the run
        else:  # not exportable: weights only, as plain artifacts (never a pickled model)
            tracker.log_artifacts(saved.path, saved.path.name)
