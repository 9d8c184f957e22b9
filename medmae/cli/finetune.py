"""`medmae finetune --config FILE [KEY=VALUE ...]`: train a segmentation head on an encoder.

Under several processes: ``torchrun --nproc_per_node=N -m medmae.cli.main finetune ...``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from medmae.cli.main import add_config_args, require_cache


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune a segmentation head (UNETR decoder) on a pretrained encoder",
        description="Train a segmenter on the labelled cases of a preprocessed cache (data.cache_dir, "
                    "data.label_map, data.classes), starting from init.source (a `medmae export` folder, a "
                    "pretraining checkpoint or run folder; none = scratch). The strict load report is printed "
                    "and logged. Outputs go to train.out_dir: config.yaml, init_report.txt, metrics.jsonl, "
                    "checkpoints/, val/, model/ (what `medmae segment --model` reads). A run whose out_dir "
                    "holds checkpoints/latest.pt continues from it. See docs/segmentation.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medmae.config.base import ConfigError, load_config
    from medmae.export.files import ExportError
    from medmae.export.report import LoadError
    from medmae.heads.segmentation.config import FinetuneConfig
    from medmae.heads.segmentation.engine import finetune
    from medmae.training.checkpoint import CheckpointError
    from medmae.training.signals import StopRequested

    cfg = load_config(FinetuneConfig, args.config, args.overrides)
    require_cache(cfg.data.cache_dir)
    try:
        result = finetune(cfg)
    except StopRequested as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"medmae finetune: {e}; checkpoint {e.checkpoint}. Run the same command to resume.",
                  file=sys.stderr)
        return e.exit_code
    except LoadError as e:
        raise ConfigError(f"the pretrained encoder does not load fully (set init.allow_partial=true to "
                          f"accept it):\n{e}") from None
    except (ExportError, CheckpointError, ValueError) as e:
        raise ConfigError(str(e)) from None
    if os.environ.get("RANK", "0") != "0":
        return 0
    print(f"\nfine-tuning done: {result.steps}/{cfg.train.steps} steps in {result.out_dir}")
    print(f"  {result.init.summary().splitlines()[0]}")
    print(f"  labelled cases  {len(result.train_cases)}")
    if result.val:
        for name, row in result.val[-1]["table"].items():
            hd = row.get("hd95", math.nan)
            print(f"  val {name:<12} Dice {row['dice']:.3f}" + ("" if math.isnan(hd) else f"  HD95 {hd:.1f} mm"))
    if result.model_dir:
        print(f"  model           {result.model_dir}  (medmae segment --model {result.model_dir} SCANS --out DIR)")
    if cfg.tracking.enabled and result.tracking_uri:
        print(f"  MLflow run      {result.run_id or '(not created)'} in {result.tracking_uri}")
    return 0
