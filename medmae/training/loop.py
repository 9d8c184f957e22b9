"""The one run loop shared by pretraining and fine-tuning.

Both paths do the same things around their own step:

    lock OUT (one run per folder)  ->  load OUT/checkpoints/latest.pt when resuming, refusing a
    checkpoint made with other :data:`resume keys <Task.resume_keys>`  ->  build (the path's own
    model, loss, loader)  ->  open outputs (metrics.jsonl, MLflow run, continued when resuming)
    ->  for each step: the path's step, metrics.jsonl + progress line + MLflow every
    ``train.log_every``, the path's extras (figures, validation), a checkpoint every
    ``train.checkpoint_every`` (atomic, last K kept), and after SIGTERM / Ctrl-C a checkpoint and
    :class:`~medmae.training.signals.StopRequested`  ->  the path's final outputs  ->  the MLflow
    run closed FINISHED, KILLED (signal, Ctrl-C) or FAILED.

A path supplies a :class:`Task` (its step, checkpoint dict, tracking params and final
outputs); :func:`run_task` does everything else, so the two cannot drift apart again.
"""

from __future__ import annotations

import gc

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import yaml

from medmae.config.base import StrictModel
from medmae.tracking.metrics_log import MetricsLog
from medmae.tracking.mlflow_run import MlflowTracker, Tracker
from medmae.tracking.run_file import read_run_file
from medmae.training.checkpoint import CheckpointDir, load_checkpoint
from medmae.training.distributed import DistInfo, init_distributed, shutdown
from medmae.training.lock import out_dir_lock
from medmae.training.preflight import refuse_changed_resume
from medmae.training.progress import Progress
from medmae.training.signals import GracefulStop, StopRequested
from medmae.training.steplog import StepLog, StepNumbers

logger = logging.getLogger("medmae.training.engine")

RUN_FILE = "mlflow_run.json"
"""OUT/mlflow_run.json: the MLflow run's id, once created (a resumed run continues it)."""


class Task(Protocol):
    """What one training path supplies to :func:`run_task` (rank-0-only methods say so)."""

    steps: int
    """Optimizer steps of the whole run."""
    crops_per_step: int
    """Crops per optimizer step over all ranks (for the progress line's throughput)."""

    def step(self, step: int) -> StepNumbers:
        """One optimizer step (0-based ``step``); every rank."""

    def after_step(self, done: int, last: bool) -> None:
        """Extras after step ``done`` (figures, validation); every rank, writes on rank 0."""

    def checkpoint(self, done: int, run_id: str | None) -> dict[str, Any] | None:
        """The checkpoint dict on rank 0 (None elsewhere); every rank (it gathers)."""

    def start_tracking(self, tracker: Tracker, start: int) -> None:
        """Rank 0: write OUT/config.yaml etc. and start the MLflow run (params, tags)."""

    def finish(self, tracker: Tracker, result: "RunState") -> None:
        """Rank 0, after the last step: final outputs (model, encoder export)."""


@dataclass
class RunState:
    """What the loop knows of a run; the path copies it into its own result."""

    out_dir: Path
    info: DistInfo
    checkpoints: CheckpointDir
    state: dict[str, Any] | None
    """The checkpoint resumed from (None: a fresh run)."""
    preprocess: dict[str, Any] | None
    """The cache's preprocessing config (CACHE/config.yaml), stored in checkpoints and models."""
    tracker: Tracker
    start: int = 0
    steps: int = 0
    checkpoint: Path | None = None
    steplog: StepLog | None = None
    tracking_ok: bool = True


@dataclass
class RunResult:
    """What every training run reports (paths on rank 0; other ranks get the same paths);
    pretraining and fine-tuning extend it with their own."""

    out_dir: Path
    steps: int = 0
    start_step: int = 0
    losses: list[float] = field(default_factory=list)
    """Per-step loss of the steps this call ran (mean over ranks)."""
    checkpoint: Path | None = None
    tracking_uri: str | None = None
    tracking_ok: bool = True
    run_id: str | None = None
    experiment_id: str | None = None

    def fill(self, run: RunState) -> None:
        """Copy what the loop knows into the result (however the run ended)."""
        self.steps, self.start_step, self.checkpoint = run.steps, run.start, run.checkpoint
        self.tracking_uri, self.tracking_ok = run.tracker.uri, run.tracking_ok
        self.run_id, self.experiment_id = run.tracker.run_id, run.tracker.experiment_id
        if run.steplog is not None:
            self.losses = run.steplog.losses


def run_task(cfg: StrictModel, resume_keys: tuple[str, ...], what: str, tracker: Tracker | None,
             build: Callable[[RunState], tuple[Task, int]], on_exit: Callable[[RunState], None]) -> RunState:
    """Run (or resume) ``cfg`` (a config with ``train`` and ``tracking`` sections).

    ``build(run)`` makes the path's task from the opened run (``run.state`` is the checkpoint
    to restore, or None) and returns it with the step to start from. ``on_exit(run)`` is
    called however the run ends (the path fills its result from ``run``). Under torchrun
    every rank calls this. ``what`` names the run in the lock's message.
    """
    info = init_distributed(cfg.train.device)
    task = None
    try:
        out_dir = Path(cfg.train.out_dir).resolve()
        with ExitStack() as stack:
            stack.enter_context(out_dir_lock(out_dir, info, what))
            stop = stack.enter_context(GracefulStop())
            run = _open(cfg, info, out_dir, resume_keys, tracker)
            try:
                task, run.start = build(run)
                run.steps = run.start
                _loop(cfg, run, task, stop)
            finally:
                on_exit(run)
            return run
    finally:
        # the task's DDP wrapper must go while its process group lives: freed after
        # destroy_process_group, its reducer's teardown could wait on the other rank for ever
        task = None  # noqa: F841
        gc.collect()
        shutdown(info)


def _open(cfg: StrictModel, info: DistInfo, out_dir: Path, resume_keys: tuple[str, ...],
          tracker: Tracker | None) -> RunState:
    """Checkpoint to resume (its config checked against ``resume_keys``) and the tracker."""
    t = cfg.train
    ckpts = CheckpointDir(out_dir / "checkpoints", t.keep_last)
    state = load_checkpoint(ckpts.latest) if t.resume and ckpts.latest.exists() else None
    if state is not None:
        refuse_changed_resume(t.out_dir, state.get("config") or {}, cfg.model_dump(mode="json"),
                              int(state.get("step", 0)), resume_keys)
    if tracker is None:
        tracker = _make_tracker(cfg, info, state, out_dir)
    tracker.local_log, tracker.run_file = out_dir / "metrics.jsonl", out_dir / RUN_FILE
    return RunState(out_dir, info, ckpts, state, _cache_preprocess(cfg.data.cache_dir), tracker)


def _loop(cfg: StrictModel, run: RunState, task: Task, stop: GracefulStop) -> None:
    """Steps ``run.start`` .. ``task.steps`` with logging, extras, checkpoints and the stop check."""
    t, info, tracker = cfg.train, run.info, run.tracker
    if run.start >= task.steps:
        logger.info("checkpoint %s is at step %d >= train.steps=%d: nothing to do", run.checkpoints.latest,
                    run.start, task.steps)
    elif run.start and info.is_main:
        logger.info("resuming from step %d of %d (checkpoint %s)", run.start, task.steps, run.checkpoints.latest)
    log = MetricsLog(run.out_dir / "metrics.jsonl") if info.is_main else None
    run.steplog = StepLog(info, log, tracker, Progress(task.steps, run.start, task.crops_per_step),
                          lr_key=_lr_key(t))
    status = "FAILED"
    try:
        if info.is_main:
            log.truncate_after(run.start)
            task.start_tracking(tracker, run.start)
        for step in range(run.start, task.steps):
            run.steplog.add(task.step(step))
            done = step + 1
            last = done == task.steps
            checkpoint_now = done % t.checkpoint_every == 0 or last
            if done % t.log_every == 0 or last:
                run.steplog.report()
            task.after_step(done, last)
            if checkpoint_now:
                _save(run, task, done)
            run.steps = done
            if not last and (signum := stop.requested(info)):
                _stop_now(run, task, signum, done, checkpoint_now)
        if run.start >= task.steps and run.checkpoints.latest.exists():
            run.checkpoint = run.checkpoints.latest
        if info.is_main:
            task.finish(tracker, run)
        status = "FINISHED"
    except KeyboardInterrupt:  # StopRequested, Ctrl-C, SIGTERM turned into KeyboardInterrupt
        status = "KILLED"
        raise
    finally:
        if log is not None:
            log.close()
        run.tracking_ok = tracker.finish(status)


def _save(run: RunState, task: Task, done: int) -> None:
    """Checkpoint after step ``done``: the local log reaches that step first (every rank)."""
    run.steplog.sync()
    ck = task.checkpoint(done, run.tracker.run_id)
    if ck is not None:
        run.checkpoint = run.checkpoints.save(done, ck)


def _stop_now(run: RunState, task: Task, signum: int, done: int, checkpointed: bool) -> None:
    """A signal arrived: report and checkpoint the steps done, then raise StopRequested (every rank)."""
    run.steplog.report()
    if not checkpointed:
        _save(run, task, done)
    if run.info.is_main:
        logger.warning("stopped after step %d of %d; checkpoint %s (run the same command to resume)", done,
                       task.steps, run.checkpoint)
    raise StopRequested(signum, done, run.checkpoint)


def _lr_key(train: StrictModel) -> str:
    """The learning-rate key a diverged run is told to lower."""
    return next(k for k in ("lr_per_256", "peak_lr") if k in type(train).model_fields)


def _cache_preprocess(cache_dir: str) -> dict | None:
    p = Path(cache_dir) / "config.yaml"
    return yaml.safe_load(p.read_text(encoding="utf-8")) if p.is_file() else None


def _make_tracker(cfg: StrictModel, info: DistInfo, state: dict | None, out_dir: Path) -> Tracker:
    """Rank 0's MLflow tracker; a resumed run continues its MLflow run (named by the checkpoint,
    or by OUT/mlflow_run.json when the checkpoint was written before the run was created)."""
    if not (info.is_main and cfg.tracking.enabled):
        return Tracker()
    tracker = MlflowTracker(cfg.tracking)
    if state is not None:
        tracker.resume_run_id = state.get("mlflow_run_id") or read_run_file(out_dir / RUN_FILE, tracker.uri)
    return tracker
