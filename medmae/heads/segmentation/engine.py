"""The fine-tuning loop: step-based, like pretraining, reusing its pieces.

Per optimizer step: labelled crops -> class indices (class map) -> SegmentationViT ->
DiceCE -> clip -> AdamW (layer-wise LR) with warm-up + cosine. During the first
``decoder_only_steps`` (always, with ``encoder: frozen``) the encoder runs without
gradients. Rank 0 writes:

    OUT/config.yaml, OUT/metrics.jsonl (one record per step), OUT/init_report.txt
    OUT/checkpoints/          latest.pt + last K (atomic; medmae.training.checkpoint)
    OUT/val/step_*.json       validation tables (Dice, HD95 per class and per case)
    OUT/model/                the trained segmenter (medmae.heads.segmentation.bundle)
    OUT/mlflow_run.json       the MLflow run's id, once created (a resumed run continues it)

``train.resume`` continues from ``latest.pt`` with the same crops and losses, step for step;
a checkpoint made with other :data:`RESUME_KEYS` (steps, learning rate, seed, model, classes,
crop, init) is refused with the keys that differ, since its schedule or weights would not
continue. One run per ``train.out_dir`` (``OUT/.medmae-train.lock``, medmae.training.lock).
SIGTERM / Ctrl-C stop after the step in progress, with a checkpoint, the MLflow run marked
KILLED (medmae.training.signals).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from monai.losses import DiceCELoss
from torch import nn

from medmae.atomic import atomic_write_text
from medmae.config.base import flatten, save_config
from medmae.heads.segmentation.bundle import save_bundle
from medmae.heads.segmentation.classmap import lookup_table, output_ids, to_classes
from medmae.heads.segmentation.config import FinetuneConfig
from medmae.heads.segmentation.data import build_train_loader, iter_val, train_cases, val_cases
from medmae.heads.segmentation.infer import predict_volume
from medmae.heads.segmentation.init import EncoderInit, init_encoder
from medmae.heads.segmentation.metrics import SegScores
from medmae.heads.segmentation.model import SegmentationViT
from medmae.heads.segmentation.optim import apply_lr, build_finetune_optimizer
from medmae.tracking.metrics_log import MetricsLog
from medmae.tracking.mlflow_run import MlflowTracker, Tracker, read_run_file
from medmae.tracking.provenance import run_tags
from medmae.training.checkpoint import CheckpointDir, load_checkpoint
from medmae.training.distributed import DistInfo, gather_objects, init_distributed, mean_across_ranks, shutdown, wrap_ddp
from medmae.training.lock import out_dir_lock
from medmae.training.precision import autocast, grad_scaler, resolve_precision
from medmae.training.preflight import refuse_changed_resume
from medmae.training.progress import Progress
from medmae.training.rng import capture_rng, restore_rng, seed_everything, to_plain
from medmae.training.schedule import WarmupCosine
from medmae.training.signals import GracefulStop, StopRequested, protect_workers

logger = logging.getLogger(__name__)

RUN_FILE = "mlflow_run.json"
RESUME_KEYS = ("train.steps", "train.lr", "train.seed", "model.", "data.classes", "data.label_map",
               "data.crop_size", "init.")
"""Config keys a fine-tuning checkpoint's schedule, crops and weights depend on: a resume with
another value of any of them is refused (a changed train.steps would make a hybrid schedule)."""


@dataclass
class FinetuneResult:
    out_dir: Path
    steps: int
    start_step: int
    losses: list[float] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)
    """Per validation: {"step", "table": {class: {dice, hd95, ...}}}."""
    model_dir: Path | None = None
    checkpoint: Path | None = None
    init: EncoderInit | None = None
    train_cases: list[str] = field(default_factory=list)
    run_id: str | None = None
    tracking_uri: str | None = None
    tracking_ok: bool = True
    model: SegmentationViT | None = None


def finetune(cfg: FinetuneConfig, tracker: Tracker | None = None) -> FinetuneResult:
    """Run (or resume) fine-tuning as ``cfg`` says; every rank calls it under torchrun."""
    info = init_distributed(cfg.train.device)
    try:
        with out_dir_lock(Path(cfg.train.out_dir).resolve(), info, "fine-tuning run"), GracefulStop() as stop:
            return _finetune(cfg, info, tracker, stop)
    finally:
        shutdown(info)


class _Run:
    """The stateful pieces of a fine-tuning run and its checkpoint dict."""

    def __init__(self, cfg: FinetuneConfig, info: DistInfo):
        t = cfg.train
        self.cfg, self.info = cfg, info
        seed_everything(t.seed)
        self.init = init_encoder(cfg.init, cfg.model.encoder, cfg.data.crop_size)
        if info.is_main:
            logger.info(self.init.summary())
        self.model = SegmentationViT(self.init.encoder, cfg.data.num_classes, cfg.model.feature_size,
                                     cfg.model.norm, cfg.model.res_block).to(info.device)
        self.depth = self.model.encoder.depth
        self.optimizer = build_finetune_optimizer(self.model, self.depth, t.weight_decay, t.layer_decay,
                                                  t.encoder == "frozen", t.betas)
        self.schedule = WarmupCosine(t.lr, t.steps, min(t.warmup_steps, t.steps), t.min_lr)
        self.precision = resolve_precision(t.precision, info.device)
        self.scaler = grad_scaler(self.precision, info.device)
        seed_everything(t.seed + info.rank)
        self.cases = train_cases(cfg.data)
        self.loader = build_train_loader(cfg.data, self.cases, t.seed, info.rank, info.world_size)
        self.lut = lookup_table(cfg.data.classes)
        d = cfg.data
        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=cfg.loss.lambda_dice,
                                  lambda_ce=cfg.loss.lambda_ce)
        self._wrapped: tuple[bool, nn.Module] | None = None
        self.label_key = d.label_map

    def encoder_trains(self, step: int) -> bool:
        t = self.cfg.train
        return t.encoder == "full" and step >= t.decoder_only_steps

    def train_model(self, step: int) -> nn.Module:
        """The (DDP/compiled) module for ``step``; rebuilt when the encoder starts training, so
        DDP only waits for gradients of parameters that get them."""
        trains = self.encoder_trains(step)
        if self._wrapped is None or self._wrapped[0] != trains:
            if self.cfg.train.encoder == "full":
                self.model.encoder.requires_grad_(trains)
            m = wrap_ddp(self.model, self.info)
            self._wrapped = (trains, torch.compile(m) if self.cfg.train.compile else m)
        return self._wrapped[1]

    def step(self, step: int) -> tuple[torch.Tensor, float, float | None]:
        """One optimizer step; returns (loss 0-dim tensor, lr, grad norm or None)."""
        t, device = self.cfg.train, self.info.device
        lr = self.schedule(step)
        apply_lr(self.optimizer, lr)
        model = self.train_model(step)
        batch = next(self.loader)
        x = batch["image"].to(device, non_blocking=True)
        y = to_classes(batch[self.label_key].to(device), self.lut)
        with autocast(self.precision, device):
            logits = model(x, encoder_grad=self.encoder_trains(step))
        loss = self.loss_fn(logits.float(), y)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = float(nn.utils.clip_grad_norm_(params, t.grad_clip)) if t.grad_clip is not None else None
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), lr, norm

    def checkpoint(self, step: int, preprocess: dict | None, run_id: str | None) -> dict | None:
        ranks = gather_objects({"rng": capture_rng(), "loader": to_plain(self.loader.state_dict())}, self.info)
        if not self.info.is_main:
            return None
        return {"step": int(step), "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None, "ranks": ranks,
                "world_size": self.info.world_size, "config": self.cfg.model_dump(mode="json"),
                "preprocess": preprocess, "mlflow_run_id": run_id}

    def restore(self, state: dict) -> int:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        ranks = state.get("ranks") or []
        if state.get("world_size") == self.info.world_size and len(ranks) == self.info.world_size:
            restore_rng(ranks[self.info.rank]["rng"])
            self.loader.load_state_dict(ranks[self.info.rank]["loader"])
        else:
            logger.warning("checkpoint written by %s ranks, this run has %d: crops restart from fresh seeds",
                           state.get("world_size"), self.info.world_size)
        return int(state["step"])

    def validate(self, step: int, out_dir: Path) -> dict | None:
        """Sliding-window Dice/HD95 on the validation split (rank 0); None without cases."""
        cases = val_cases(self.cfg.data, self.cfg.val.max_cases)
        if not cases:
            return None
        v = self.cfg.val
        scores = SegScores(list(self.cfg.data.classes))
        for case_id, image, ref, spacing in iter_val(cases, self.label_key, self.lut):
            pred = predict_volume(self.model, image, self.cfg.data.crop_size, self.info.device, self.precision,
                                  v.overlap, v.sw_batch_size, v.mode)
            scores.add(pred, ref, spacing, case_id)
        result = {"step": step, "table": scores.table(), "cases": scores.cases, "metrics": scores.flat()}
        atomic_write_text(out_dir / "val" / f"step_{step:07d}.json", json.dumps(result, indent=1) + "\n")
        return result


def _cache_preprocess(cache_dir: str) -> dict | None:
    p = Path(cache_dir) / "config.yaml"
    return yaml.safe_load(p.read_text()) if p.is_file() else None


def _finetune(cfg: FinetuneConfig, info: DistInfo, tracker: Tracker | None, stop: GracefulStop) -> FinetuneResult:
    t = cfg.train
    out_dir = Path(t.out_dir).resolve()
    ckpts = CheckpointDir(out_dir / "checkpoints", t.keep_last)
    state = load_checkpoint(ckpts.latest) if t.resume and ckpts.latest.exists() else None
    if state is not None:
        refuse_changed_resume(t.out_dir, state.get("config") or {}, cfg.model_dump(mode="json"),
                              int(state.get("step", 0)), RESUME_KEYS)
    run = _Run(cfg, info)
    protect_workers(run.loader)  # a SIGTERM to the process group leaves the loader's workers running
    start = run.restore(state) if state is not None else 0
    preprocess = _cache_preprocess(cfg.data.cache_dir)
    log = MetricsLog(out_dir / "metrics.jsonl") if info.is_main else None
    if tracker is None:
        tracker = _make_tracker(cfg, info, state, out_dir)
    tracker.local_log, tracker.run_file = out_dir / "metrics.jsonl", out_dir / RUN_FILE
    result = FinetuneResult(out_dir, start, start, init=run.init, train_cases=[c.case_id for c in run.cases],
                            tracking_uri=tracker.uri, model=run.model)
    if info.is_main:
        log.truncate_after(start)
        _start_tracking(tracker, cfg, run, info, out_dir, start)
    crops = cfg.data.batch_size * info.world_size
    progress = Progress(t.steps, start, crops)
    window: list[tuple[int, torch.Tensor, float, float | None]] = []
    status = "FAILED"
    try:
        run.model.train()
        for step in range(start, t.steps):
            loss, lr, norm = run.step(step)
            done = step + 1
            window.append((done, loss, lr, norm))
            last = done == t.steps
            if done % t.log_every == 0 or done % t.checkpoint_every == 0 or last:
                result.losses += _flush(window, info, log, tracker, progress)
                window = []
            if info.is_main and (done % t.val_every == 0 or last):
                val = run.validate(done, out_dir)
                if val is not None:
                    result.val.append(val)
                    tracker.log_metrics(val["metrics"], done)
                    tracker.log_artifact(out_dir / "val" / f"step_{done:07d}.json", "val")
                    logger.info("validation at step %d: %s", done, _val_line(val["table"]))
            checkpoint_now = done % t.checkpoint_every == 0 or last
            if checkpoint_now:
                ck = run.checkpoint(done, preprocess, tracker.run_id)
                if ck is not None:
                    result.checkpoint = ckpts.save(done, ck)
            result.steps = done
            if not last and (signum := stop.requested(info)):
                result.losses += _flush(window, info, log, tracker, progress) if window else []
                window = []
                _stop_now(signum, done, checkpoint_now, run, preprocess, tracker, ckpts, result)
        if info.is_main:
            result.model_dir = _save_model(run, cfg, out_dir, preprocess)
            tracker.log_artifacts(result.model_dir, "model")
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if log is not None:
            log.close()
        result.tracking_ok = tracker.finish(status)
        result.run_id = tracker.run_id
    return result


def _stop_now(signum: int, done: int, checkpointed: bool, run: _Run, preprocess: dict | None, tracker: Tracker,
              ckpts: CheckpointDir, result: FinetuneResult) -> None:
    """A signal arrived: checkpoint the steps done (unless just done), then raise StopRequested."""
    if not checkpointed:
        ck = run.checkpoint(done, preprocess, tracker.run_id)
        if ck is not None:
            result.checkpoint = ckpts.save(done, ck)
    if run.info.is_main:
        logger.warning("stopped after step %d of %d; checkpoint %s (run the same command to resume)", done,
                       run.cfg.train.steps, result.checkpoint)
    raise StopRequested(signum, done, result.checkpoint)


def _make_tracker(cfg: FinetuneConfig, info: DistInfo, state: dict | None, out_dir: Path) -> Tracker:
    """Rank 0's MLflow tracker; a resumed run continues its MLflow run (named by the checkpoint,
    or by OUT/mlflow_run.json when the checkpoint was written before the run was created)."""
    if not (info.is_main and cfg.tracking.enabled):
        return Tracker()
    tracker = MlflowTracker(cfg.tracking)
    if state is not None:
        tracker.resume_run_id = state.get("mlflow_run_id") or read_run_file(out_dir / RUN_FILE, tracker.uri)
    return tracker


def _flush(window, info: DistInfo, log: MetricsLog | None, tracker: Tracker, progress: Progress) -> list[float]:
    """Steps since the last flush -> metrics.jsonl, the progress line and the tracker."""
    losses = mean_across_ranks(torch.stack([w[1].float() for w in window]), info).cpu().tolist()
    records = [{"step": s, "loss": loss, "lr": lr, **({"grad_norm": n} if n is not None else {})}
               for (s, _, lr, n), loss in zip(window, losses)]
    for r in records:
        if not math.isfinite(r["loss"]):
            raise FloatingPointError(f"fine-tuning diverged: loss {r['loss']} at step {r['step']} (lower train.lr)")
    if log is not None:
        log.write(records)
        mean = float(np.mean(losses))
        logger.info(progress.line(records[-1]["step"], mean, records[-1]["lr"]))
        tracker.log_metrics({"loss": mean, "lr": records[-1]["lr"], "crops_per_s": progress.crops_per_s},
                            records[-1]["step"])
    return losses


def _val_line(table: dict) -> str:
    return "  ".join(f"{k} Dice {v['dice']:.3f}" + (f" HD95 {v['hd95']:.1f}mm" if "hd95" in v else "")
                     for k, v in table.items())


def _start_tracking(tracker: Tracker, cfg: FinetuneConfig, run: _Run, info: DistInfo, out_dir: Path,
                    start: int) -> None:
    """config.yaml, init_report.txt, params (with the load report's numbers) and tags."""
    config_path = save_config(cfg, out_dir / "config.yaml")
    report_path = atomic_write_text(out_dir / "init_report.txt", run.init.summary() + "\n")
    params = flatten(cfg)
    r = run.init.report
    params.update({"init.kind": run.init.kind, "init.loaded_fraction": run.init.loaded_fraction,
                   "data.train_cases": len(run.cases), "derived.precision": run.precision,
                   "derived.world_size": info.world_size, "derived.threads": torch.get_num_threads()})
    if r is not None:
        params.update({"init.loaded": len(r.loaded), "init.missing": len(r.missing),
                       "init.unexpected": len(r.unexpected), "init.mismatched": len(r.mismatched)})
    tags = run_tags(cfg.data.cache_dir, info.device, info.world_size, {"head": "segmentation",
                                                                      "out_dir": str(out_dir)})
    if start:
        tags["resumed_from_step"] = str(start)
    tracker.start(params, tags)
    tracker.log_artifact(config_path)
    tracker.log_artifact(report_path)
    atomic_write_text(out_dir / "train_cases.txt", "\n".join(c.case_id for c in run.cases) + "\n")
    tracker.log_artifact(out_dir / "train_cases.txt")


def _save_model(run: _Run, cfg: FinetuneConfig, out_dir: Path, preprocess: dict | None) -> Path:
    d = cfg.data
    info = {"classes": d.classes, "output_ids": output_ids(d.classes).tolist(), "label_map": d.label_map,
            "crop_size": list(d.crop_size), "preprocess": preprocess, "norm": cfg.model.norm,
            "res_block": cfg.model.res_block, "init": run.init.kind, "init_loaded_fraction": run.init.loaded_fraction,
            "val": cfg.val.model_dump(mode="json"), "steps": cfg.train.steps}
    return save_bundle(run.model, out_dir / "model", info)
