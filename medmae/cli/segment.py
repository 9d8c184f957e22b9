"""`medmae segment --model MODEL INPUTS... --out DIR` and `medmae segment evaluate`."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "segment", help="segment scans with a fine-tuned model; evaluate it",
        description="Segment scan files, DICOM series folders or manifests with a model from `medmae "
                    "finetune` (its out_dir or out_dir/model). Each scan is preprocessed as in training and "
                    "predicted by sliding window; OUT/<case>_seg.nii.gz holds the original label ids on the "
                    "scan's own grid and affine, OUT/volumes.csv each class's volume in mL, OUT/report.csv "
                    "the inputs that failed; OUT/labels.json, labels.ctbl (3D Slicer), labels_itksnap.txt "
                    "(ITK-SNAP), structures.csv, and OUT/<case>_seg.dcm (DICOM SEG) for DICOM series. `medmae segment evaluate --help`: Dice/HD95 against references, "
                    "under corruptions, pretrained vs scratch.",
    )
    p.add_argument("--model", "-m", help="fine-tuned model folder (train.out_dir or its model/)")
    p.add_argument("--out", "-o", help="output folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run the model")
    p.add_argument("--config", "-c", default=None, help=argparse.SUPPRESS)  # the older `segment --config F evaluate`
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="scan files, DICOM folders, manifests (.csv)")
    p.set_defaults(func=run, overrides=[])
    from medmae.cli.main import add_config_args

    e = subparsers.add_parser(  # no help=: listed as `segment evaluate` in segment's description only
        "segment evaluate",
        description="Fine-tune every arm (default: pretrained and scratch), label count and seed from one "
                    "fine-tuning config, then evaluate each model on the cache's `split` (cases never "
                    "trained on): Dice and HD95 per class on each scan's own grid (with `manifest`), clean "
                    "and under the configured corruptions. OUT/results.csv, summary.csv, comparison.csv "
                    "(pretrained vs scratch), dice_vs_*.png, one MLflow run with the fine-tuning runs nested "
                    "under it. Keys: `medmae config reference` (EvaluateConfig), docs/segmentation.md.")
    add_config_args(e)
    e.set_defaults(func=lambda a: evaluate(a.config, a.overrides))


def run(args: argparse.Namespace) -> int:
    if args.inputs and args.inputs[0] == "evaluate":
        return evaluate(args.config, [*args.inputs[1:], *args.overrides])
    from medmae.config.base import ConfigError
    from medmae.heads.segmentation.bundle import load_bundle
    from medmae.heads.segmentation.predict import Segmenter, segment_inputs
    from medmae.device import pick_device
    from medmae.training.precision import resolve_precision

    if not args.model or not args.out or not args.inputs:
        raise ConfigError("segment needs --model MODEL, --out DIR and at least one INPUT")
    device = pick_device(args.device)
    model, meta = load_bundle(args.model)
    seg = Segmenter(model.to(device), meta, device, resolve_precision("auto", device),
                    progress=not args.no_progress)
    report = segment_inputs(seg, args.inputs, args.out)
    print(f"segmented {len(report.written)} scan(s) into {args.out} (volumes.csv, structures.csv, labels.*, *_seg.nii.gz)")
    for path, problem in report.bad:
        print(f"  failed: {path}: {problem}")
    return 0 if report.written or not report.bad else 1


def evaluate(config: str | None, overrides: list[str]) -> int:
    """`medmae segment evaluate --config FILE [KEY=VALUE ...]`."""
    from medmae.config.base import ConfigError, load_config
    from medmae.heads.segmentation.evaluate import EvaluateConfig, run_evaluation

    cfg = load_config(EvaluateConfig, config, overrides)
    try:
        rows = run_evaluation(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    print(f"evaluation written to {cfg.out_dir}: results.csv, summary.csv, dice_vs_*.png")
    for r in rows:
        if r["class"] == "mean":
            print(f"  {r['arm']:<11} n={r['label_cases']!s:<4} seed={r['seed']!s:<3} "
                  f"{r['corruption']:<9} {r['strength']:<5g} mean Dice {r['dice']:.3f}")
    return 0
