"""The pretraining loop: one readable, step-based function (in the spirit of nanoGPT).

Per optimizer step, for each of ``grad_accum`` micro-batches on every rank:
    batch -> MaskContext -> (token scores) -> mask -> model(x, mask, valid) -> backward
    -> strategy.update(ctx, mask, token_loss)
then clip, AdamW step, LR from the warm-up + cosine schedule. Rank 0 writes everything:

    OUT/config.yaml            resolved config
    OUT/metrics.jsonl          one record per step (loss, predict-the-mean baseline, lr, ...)
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
import yaml
from torch import nn

from medmae.config.base import flatten, save_config
from medmae.config.schema import PretrainConfig
from medmae.data.config import LoaderConfig
from medmae.data.loader import build_loader
from medmae.masking.build import build_masking
from medmae.masking.context import build_context
from medmae.models import build_mae
from medmae.preprocess.signature import cache_signature
from medmae.tracking.figures import save_reconstruction_figure
from medmae.tracking.metrics_log import MetricsLog
from medmae.tracking.mlflow_run import MlflowTracker, Tracker, read_run_file
from medmae.tracking.provenance import run_tags
from medmae.training.baseline import mean_baseline
from medmae.training.checkpoint import CheckpointDir, load_checkpoint
from medmae.training.correlation import hidden_correlation
from medmae.training.distributed import DistInfo, init_distributed, shutdown, wrap_ddp
from medmae.training.lock import out_dir_lock
from medmae.training.optim import build_optimizer
from medmae.training.precision import autocast, grad_scaler, resolve_precision
from medmae.training.preflight import preflight
from medmae.training.progress import Progress
from medmae.training.rng import seed_everything
from medmae.training.robust_loss import trimmed_loss
from medmae.training.schedule import WarmupCosine, scaled_lr
from medmae.training.signals import GracefulStop, StopRequested, protect_workers
from medmae.training.state import TrainParts
from medmae.training.steplog import StepLog, StepNumbers

logger = logging.getLogger(__name__)

RUN_FILE = "mlflow_run.json"


@dataclass
class PretrainResult:
    """What a finished run produced (paths on rank 0; other ranks get the same paths)."""

    out_dir: Path
    steps: int
    start_step: int
    losses: list[float] = field(default_factory=list)
    """Per-step masked-token loss of the steps this call ran (mean over ranks)."""
    baselines: list[float] = field(default_factory=list)
    """Per-step predict-the-mean baseline (see medmae.training.baseline)."""
    correlations: list[float] = field(default_factory=list)
    """Per-step Pearson r of reconstruction and truth on hidden tokens (medmae.training.correlation)."""
    checkpoint: Path | None = None
    figures: list[Path] = field(default_factory=list)
    tracking_uri: str | None = None
    run_id: str | None = None
    experiment_id: str | None = None
    tracking_ok: bool = True
    model: nn.Module | None = None
    """The trained MaskedAutoencoder3D (plain module)."""
    masking: nn.Module | None = None
    """The masking strategy, with its learned state (adversarial generator, EMA teacher)."""


def pretrain(cfg: PretrainConfig, tracker: Tracker | None = None) -> PretrainResult:
    """Run (or resume) pretraining as ``cfg`` says; see the module docstring.

    Under torchrun every rank calls this; the process group is created here from the
    environment (and destroyed at the end if created here). ``tracker`` replaces the
    MLflow tracker rank 0 would make from ``cfg.tracking``.

    One run at a time per ``train.out_dir`` (see medmae.training.lock); SIGTERM / Ctrl-C
    stop after the step in progress with a checkpoint (see medmae.training.signals).
    """
    info = init_distributed(cfg.train.device)
    try:
        with out_dir_lock(Path(cfg.train.out_dir).resolve(), info), GracefulStop() as stop:
            return _pretrain(cfg, info, tracker, stop)
    finally:
        shutdown(info)


def _pretrain(cfg: PretrainConfig, info: DistInfo, tracker: Tracker | None, stop: GracefulStop) -> PretrainResult:
    t, device = cfg.train, info.device
    out_dir = Path(t.out_dir).resolve()
    ckpts = CheckpointDir(out_dir / "checkpoints", t.keep_last)
    state = load_checkpoint(ckpts.latest) if t.resume and ckpts.latest.exists() else None
    preflight(cfg, state)

    # ---- build: identical model init on every rank, then each rank's own random stream
    seed_everything(t.seed)
    model = build_mae(cfg.model, cfg.data.crop_size).to(device)
    strategy = build_masking(cfg.masking, patch_size=cfg.model.patch_size, in_channels=cfg.model.in_channels,
                             total_steps=t.steps).to(device)
    precision = resolve_precision(t.precision, device)
    crops_per_step = cfg.data.batch_size * t.grad_accum * info.world_size
    if t.warmup_steps > t.steps and info.is_main:
        logger.warning("train.warmup_steps=%d exceeds train.steps=%d: warming up over all %d steps",
                       t.warmup_steps, t.steps, t.steps)
    schedule = WarmupCosine(scaled_lr(t.base_lr, crops_per_step), t.steps, min(t.warmup_steps, t.steps), t.min_lr)
    mask_rng = torch.Generator(device=device)
    mask_rng.manual_seed(t.seed + info.rank)
    seed_everything(t.seed + info.rank)
    parts = TrainParts(
        model=model, strategy=strategy, schedule=schedule,
        optimizer=build_optimizer(model, schedule.peak_lr, t.weight_decay, t.betas),
        scaler=grad_scaler(precision, device),
        loader=build_loader(_data_read(cfg, info), seed=t.seed, rank=info.rank, world_size=info.world_size,
                            device=device),
        mask_rng=mask_rng,
    )
    protect_workers(parts.loader)  # a SIGTERM to the process group leaves the workers running
    start = parts.restore(state, info) if state is not None else 0
    if start >= t.steps:
        logger.info("checkpoint %s is at step %d >= train.steps=%d: nothing to do", ckpts.latest, start, t.steps)
    elif start and info.is_main:
        logger.info("resuming from step %d of %d (checkpoint %s)", start, t.steps, ckpts.latest)
    train_model = wrap_ddp(model, info)
    if t.compile:
        train_model = torch.compile(train_model)

    # ---- outputs and tracking (rank 0 only)
    preprocess = _cache_preprocess_config(cfg.data.cache_dir)
    data_signature = cache_signature(cfg.data.cache_dir)
    log = MetricsLog(out_dir / "metrics.jsonl") if info.is_main else None
    if tracker is None:
        tracker = _make_tracker(cfg, info, state, out_dir)
    tracker.local_log, tracker.run_file = out_dir / "metrics.jsonl", out_dir / RUN_FILE
    if info.is_main:
        log.truncate_after(start)
        _start_tracking(tracker, cfg, info, out_dir, precision, schedule, crops_per_step, start)
    result = PretrainResult(out_dir=out_dir, steps=start, start_step=start, tracking_uri=tracker.uri, model=model,
                            masking=strategy)

    steplog = StepLog(info, log, tracker, Progress(t.steps, start, crops_per_step))
    status = "FAILED"
    try:
        train_model.train()
        for step in range(start, t.steps):
            lr = schedule.apply(parts.optimizer, step)
            loss, baseline, corr, grad_norm, masking, last = _train_step(cfg, parts, train_model, info, precision, step)
            done = step + 1
            steplog.add(StepNumbers(done, lr, loss, baseline, grad_norm, masking, corr))
            checkpoint_now = done % t.checkpoint_every == 0 or done == t.steps
            if done % t.log_every == 0 or done == t.steps:
                steplog.report()
            if info.is_main and (done % t.figure_every == 0 or done == t.steps):
                result.figures.append(_figure(out_dir, done, model, last, t.figure_samples, cfg))
                tracker.log_artifact(result.figures[-1], "figures")
            if checkpoint_now:
                steplog.sync()  # the local log reaches the checkpoint's step before it is written
                ck = parts.checkpoint(done, info, cfg.model_dump(mode="json"), preprocess, tracker.run_id)
                if ck is not None:
                    ck["data"] = data_signature
                    result.checkpoint = ckpts.save(done, ck)
            result.steps = done
            if done < t.steps and (signum := stop.requested(info)):
                _stop_now(signum, done, checkpoint_now, steplog, parts, info, cfg, preprocess, tracker, ckpts,
                          result)
        if start >= t.steps and ckpts.latest.exists():
            result.checkpoint = ckpts.latest
        if info.is_main:
            _log_final(tracker, cfg, model, result)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        result.losses, result.baselines, result.correlations = steplog.losses, steplog.baselines, steplog.correlations
        if log is not None:
            log.close()
        result.tracking_ok = tracker.finish(status)
        result.run_id, result.experiment_id = tracker.run_id, tracker.experiment_id
    return result


def _stop_now(signum: int, done: int, checkpointed: bool, steplog: StepLog, parts: TrainParts, info: DistInfo,
              cfg: PretrainConfig, preprocess: dict | None, tracker: Tracker, ckpts: CheckpointDir,
              result: PretrainResult) -> None:
    """A signal arrived: report and checkpoint the steps done, then raise StopRequested (every rank)."""
    steplog.report()
    if not checkpointed:
        ck = parts.checkpoint(done, info, cfg.model_dump(mode="json"), preprocess, tracker.run_id)
        if ck is not None:
            result.checkpoint = ckpts.save(done, ck)
    if info.is_main:
        logger.warning("stopped after step %d of %d; checkpoint %s (run the same command to resume)", done,
                       cfg.train.steps, result.checkpoint)
    raise StopRequested(signum, done, result.checkpoint)


def _train_step(cfg: PretrainConfig, parts: TrainParts, train_model: nn.Module, info: DistInfo,
                precision: str, step: int):
    """One optimizer step over ``grad_accum`` micro-batches.

    Returns (loss, baseline, hidden-token correlation) 0-dim device tensors averaged over
    micro-batches, the
    gradient norm (before clipping; None without clipping), the strategy's metrics, and
    the last micro-batch ``(batch, ctx, mask, out)`` for figures.
    """
    t, m, device = cfg.train, cfg.masking, info.device
    losses, baselines, corrs, metrics = [], [], [], []
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
        baselines.append(mean_baseline(out.target, mask, ctx.valid, cfg.model.norm_pix_loss))
        corrs.append(hidden_correlation(out.pred, out.target, mask, ctx.valid))
    if parts.scaler is not None:
        parts.scaler.unscale_(parts.optimizer)
    grad_norm = None
    if t.grad_clip is not None:
        grad_norm = nn.utils.clip_grad_norm_(parts.model.parameters(), t.grad_clip).detach()
    if parts.scaler is not None:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        parts.optimizer.step()
    parts.optimizer.zero_grad(set_to_none=True)
    parts.strategy.after_optimizer_step(parts.model)  # EMA teachers: once per optimizer step
    keys = {k for d in metrics for k in d}
    mean_metrics = {k: sum(float(d[k]) for d in metrics if k in d) / sum(k in d for d in metrics) for k in keys}
    means = [torch.stack(v).mean() for v in (losses, baselines, corrs)]
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


def _cache_preprocess_config(cache_dir: str) -> dict | None:
    p = Path(cache_dir) / "config.yaml"
    return yaml.safe_load(p.read_text()) if p.is_file() else None


def _make_tracker(cfg: PretrainConfig, info: DistInfo, state: dict | None, out_dir: Path) -> Tracker:
    """Rank 0's MLflow tracker; a resumed run continues its MLflow run (named by the checkpoint,
    or by OUT/mlflow_run.json when the checkpoint was written before the run was created)."""
    if not (info.is_main and cfg.tracking.enabled):
        return Tracker()
    tracker = MlflowTracker(cfg.tracking)
    if state is not None:
        tracker.resume_run_id = state.get("mlflow_run_id") or read_run_file(out_dir / RUN_FILE, tracker.uri)
    return tracker


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
