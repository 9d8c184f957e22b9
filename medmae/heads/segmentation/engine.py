"""The fine-tuning task: step-based, run by the loop pretraining uses (medmae.training.loop).

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
crop, init, loss) is refused with the keys that differ, since its schedule or weights would not
continue. One run per ``train.out_dir`` (``OUT/.medmae-train.lock``, medmae.training.lock).
SIGTERM / Ctrl-C stop after the step in progress, with a checkpoint, the MLflow run marked
KILLED (medmae.training.signals). All of that is the shared loop's; this module supplies the
segmenter, its loss, batch, validation and final model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from monai.losses import DiceCELoss
from torch import nn
from tqdm import tqdm

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
from medmae.training.optim import optimizer_step
from medmae.tracking.mlflow_run import Tracker
from medmae.tracking.provenance import run_tags
from medmae.training.distributed import gather_objects, wrap_ddp
from medmae.training.loop import RunResult, RunState, run_task
from medmae.training.precision import autocast, grad_scaler, resolve_precision
from medmae.training.rng import capture_rng, restore_rng, seed_everything, to_plain
from medmae.training.schedule import WarmupCosine
from medmae.training.signals import protect_workers
from medmae.training.steplog import StepNumbers

logger = logging.getLogger(__name__)

RESUME_KEYS = ("train.steps", "train.peak_lr", "train.seed", "train.encoder", "train.layer_decay",
               "train.decoder_only_steps", "train.warmup_steps", "model.", "data.classes", "data.label_map",
               "data.crop_size", "data.label_cases", "data.label_seed", "init.", "loss.")
"""Config keys a fine-tuning checkpoint's schedule, crops and weights depend on: a resume with
another value of any of them is refused (a changed train.steps would make a hybrid schedule)."""


@dataclass
class FinetuneResult(RunResult):
    """What a fine-tuning run produced (``losses``: the segmentation loss)."""

    val: list[dict] = field(default_factory=list)
    """Per validation: {"step", "table": {class: {dice, hd95, ...}}}."""
    model_dir: Path | None = None
    init: EncoderInit | None = None
    train_cases: list[str] = field(default_factory=list)
    model: SegmentationViT | None = None


def finetune(cfg: FinetuneConfig, tracker: Tracker | None = None) -> FinetuneResult:
    """Run (or resume) fine-tuning as ``cfg`` says; every rank calls it under torchrun."""
    result = FinetuneResult(Path(cfg.train.out_dir).resolve())

    def build(run: RunState) -> tuple[FinetuneTask, int]:
        task = FinetuneTask(cfg, run, result)
        return task, task.start

    run_task(cfg, RESUME_KEYS, "fine-tuning run", tracker, build, result.fill)
    return result


class FinetuneTask:
    """The segmenter's part of the run loop (a medmae.training.loop.Task): build and restore,
    step, checkpoint dict, validation, tracking params, the final model (into ``result``)."""

    def __init__(self, cfg: FinetuneConfig, run: RunState, result: FinetuneResult):
        t, info = cfg.train, run.info
        self.cfg, self.info, self.out_dir, self.preprocess = cfg, info, run.out_dir, run.preprocess
        self.tracker, self.steps, self.result = run.tracker, t.steps, result
        seed_everything(t.seed)
        self.init = init_encoder(cfg.init, cfg.model.encoder, cfg.data.crop_size)
        if info.is_main:
            logger.info(self.init.summary())
        self.model = SegmentationViT(self.init.encoder, cfg.data.num_classes, cfg.model.feature_size,
                                     cfg.model.norm, cfg.model.res_block).to(info.device)
        self.optimizer = build_finetune_optimizer(self.model, self.model.encoder.depth, t.weight_decay,
                                                  t.layer_decay, t.encoder == "frozen", t.betas)
        self.schedule = WarmupCosine(t.peak_lr, t.steps, min(t.warmup_steps, t.steps), t.min_lr)
        self.precision = resolve_precision(t.precision, info.device)
        self.scaler = grad_scaler(self.precision, info.device)
        seed_everything(t.seed + info.rank)
        self.cases = train_cases(cfg.data)
        self.loader = build_train_loader(cfg.data, self.cases, t.seed, info.rank, info.world_size)
        protect_workers(self.loader)  # a SIGTERM to the process group leaves the loader's workers running
        self.crops_per_step = cfg.data.batch_size * info.world_size
        self.lut = lookup_table(cfg.data.classes)
        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=cfg.loss.lambda_dice,
                                  lambda_ce=cfg.loss.lambda_ce)
        self._wrapped: tuple[bool, nn.Module] | None = None
        self.start = self.restore(run.state) if run.state is not None else 0
        self.model.train()
        result.init, result.model, result.train_cases = self.init, self.model, [c.case_id for c in self.cases]

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

    def step(self, step: int) -> StepNumbers:
        """One optimizer step on a batch of labelled crops (B C D H W image, B 1 D H W label)."""
        t, device = self.cfg.train, self.info.device
        lr = self.schedule(step)
        apply_lr(self.optimizer, lr)
        model = self.train_model(step)
        batch = next(self.loader)
        x = batch["image"].to(device, non_blocking=True)
        y = to_classes(batch[self.cfg.data.label_map].to(device), self.lut)
        with autocast(self.precision, device):
            logits = model(x, encoder_grad=self.encoder_trains(step))
        loss = self.loss_fn(logits.float(), y)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = optimizer_step(self.optimizer, self.scaler, params, t.grad_clip)
        return StepNumbers(step + 1, lr, loss.detach(), grad_norm=norm)

    def checkpoint(self, done: int, run_id: str | None) -> dict | None:
        ranks = gather_objects({"rng": capture_rng(), "loader": to_plain(self.loader.state_dict())}, self.info)
        if not self.info.is_main:
            return None
        return {"step": int(done), "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None, "ranks": ranks,
                "world_size": self.info.world_size, "config": self.cfg.model_dump(mode="json"),
                "preprocess": self.preprocess, "mlflow_run_id": run_id}

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

    def after_step(self, done: int, last: bool) -> None:
        """Validation every ``train.val_every`` steps and at the end (rank 0)."""
        if not (self.info.is_main and (done % self.cfg.train.val_every == 0 or last)):
            return
        val = self.validate(done)
        if val is not None:
            self.result.val.append(val)
            self.tracker.log_metrics(val["metrics"], done)
            self.tracker.log_artifact(self.out_dir / "val" / f"step_{done:07d}.json", "val")
            logger.info("validation at step %d: %s", done, _val_line(val["table"]))

    def validate(self, step: int) -> dict | None:
        """Sliding-window Dice/HD95 on the validation split (rank 0); None without cases."""
        cases = val_cases(self.cfg.data, self.cfg.val.max_cases)
        if not cases:
            return None
        v = self.cfg.val
        scores = SegScores(list(self.cfg.data.classes))
        label_map = self.cfg.data.label_map
        for case_id, image, ref, spacing in tqdm(iter_val(cases, label_map, self.lut), total=len(cases),
                                                 desc=f"validation at step {step}", unit="case", leave=False,
                                                 mininterval=0):  # each case takes seconds: show every one
            pred = predict_volume(self.model, image, self.cfg.data.crop_size, self.info.device, self.precision,
                                  v.overlap, v.sw_batch_size, v.mode)
            scores.add(pred, ref, spacing, case_id)
        result = {"step": step, "table": scores.table(), "cases": scores.cases, "metrics": scores.flat()}
        atomic_write_text(self.out_dir / "val" / f"step_{step:07d}.json", json.dumps(result, indent=1) + "\n")
        return result

    def start_tracking(self, tracker: Tracker, start: int) -> None:
        """config.yaml, init_report.txt, params (with the load report's numbers) and tags."""
        cfg, info, out_dir = self.cfg, self.info, self.out_dir
        config_path = save_config(cfg, out_dir / "config.yaml")
        report_path = atomic_write_text(out_dir / "init_report.txt", self.init.summary() + "\n")
        params = flatten(cfg)
        r = self.init.report
        params.update({"init.kind": self.init.kind, "init.loaded_fraction": self.init.loaded_fraction,
                       "data.train_cases": len(self.cases), "derived.precision": self.precision,
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
        atomic_write_text(out_dir / "train_cases.txt", "\n".join(c.case_id for c in self.cases) + "\n")
        tracker.log_artifact(out_dir / "train_cases.txt")

    def finish(self, tracker: Tracker, run: RunState) -> None:
        """OUT/model/: the segmenter with what inference needs (rank 0)."""
        cfg, d = self.cfg, self.cfg.data
        meta = {"classes": d.classes, "output_ids": output_ids(d.classes).tolist(), "label_map": d.label_map,
                "crop_size": list(d.crop_size), "preprocess": self.preprocess, "norm": cfg.model.norm,
                "res_block": cfg.model.res_block, "init": self.init.kind,
                "init_loaded_fraction": self.init.loaded_fraction, "val": cfg.val.model_dump(mode="json"),
                "steps": cfg.train.steps}
        self.result.model_dir = save_bundle(self.model, self.out_dir / "model", meta)
        tracker.log_artifacts(self.result.model_dir, "model")


def _val_line(table: dict) -> str:
    return "  ".join(f"{k} Dice {v['dice']:.3f}" + (f" HD95 {v['hd95']:.1f}mm" if "hd95" in v else "")
                     for k, v in table.items())


NOT_TRAINING = ("tracking.", "val.", "data.val_split", "train.out_dir", "train.resume", "train.log_every",
                "train.checkpoint_every", "train.keep_last", "train.val_every", "train.device")
"""Keys that do not change the weights a run trains (bookkeeping, validation, where it runs)."""


def changed_settings(cfg: FinetuneConfig) -> list[str]:
    """``key: was X, now Y`` for every key (but :data:`NOT_TRAINING`) in which ``cfg`` differs
    from the run already in ``cfg.train.out_dir`` (its OUT/config.yaml); [] without one.

    ``segment evaluate`` re-trains an arm whose settings changed instead of resuming or reusing
    a model trained with other settings."""
    import yaml

    saved_path = Path(cfg.train.out_dir) / "config.yaml"
    if not saved_path.is_file():
        return []
    saved = flatten(yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {})
    now = flatten(cfg.model_dump(mode="json"))
    keys = [k for k in sorted(set(saved) | set(now)) if not k.startswith(NOT_TRAINING)]
    return [f"{k}: was {saved.get(k, '(unset)')!r}, now {now.get(k, '(unset)')!r}"
            for k in keys if saved.get(k) != now.get(k)]
