"""`medmae pretrain --config FILE [KEY=VALUE ...]`: pretrain a 3D masked autoencoder.

Under several processes: ``torchrun --nproc_per_node=N -m medmae.cli.main pretrain ...``.
"""

from __future__ import annotations

import argparse

from medmae.cli.main import add_config_args, require_cache
from medmae.cli.training_run import is_main_rank, train_or_stop


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pretrain a 3D masked autoencoder",
        description="Pretrain a 3D MAE on the preprocessed cache (data.cache_dir). Outputs go to "
                    "train.out_dir: config.yaml, metrics.jsonl, checkpoints/, figures/; the run is "
                    "tracked in MLflow (tracking.tracking_uri, else $MLFLOW_TRACKING_URI, else "
                    "sqlite:///./mlruns/mlflow.db). A run whose out_dir holds checkpoints/latest.pt "
                    "continues from it (train.resume=false starts over).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medmae.config.base import load_config
    from medmae.training.pretrain_config import PretrainConfig
    from medmae.tracking.mlflow_run import ui_command
    from medmae.training.engine import pretrain
    from medmae.training.summary import report_windows

    cfg = load_config(PretrainConfig, args.config, args.overrides)
    require_cache(cfg.data.cache_dir)
    result, stopped = train_or_stop("pretrain", pretrain, cfg)
    if stopped is not None:
        return stopped
    if not is_main_rank():
        return 0
    print(f"\npretraining done: {result.steps}/{cfg.train.steps} steps in {result.out_dir}")
    windows = report_windows(result.losses, result.mean_predictor, result.start_step, cfg.train.log_every,
                             cfg.train.steps)
    if windows:
        w = windows[-1]
        print(f"  final loss      {w.loss:.4f}  (mean-predictor loss {w.mean_predictor:.4f}; "
              f"mean of steps {w.first}-{w.last}, as on the last progress line)")
    print(f"  config          {result.out_dir / 'config.yaml'}")
    print(f"  metrics         {result.out_dir / 'metrics.jsonl'}")
    if result.checkpoint:
        print(f"  checkpoint      {result.checkpoint}")
    if result.figures:
        print(f"  figures         {result.figures[-1].parent}  (latest: {result.figures[-1].name})")
    if cfg.tracking.enabled and result.tracking_uri:
        state = "" if result.tracking_ok else "  (not everything reached the server: see warnings)"
        print(f"  MLflow run      {result.run_id or '(not created)'} in {result.tracking_uri}{state}")
        print(f"  open the UI     {ui_command(result.tracking_uri, result.experiment_id, result.run_id)}")
    return 0
