"""`medmae anomaly score|calibrate|evaluate|report`: anomaly maps from a pretrained MAE.

    medmae anomaly calibrate --model runs/mae HEALTHY...          thresholds from healthy scans
    medmae anomaly score --model runs/mae INPUTS... --out scores   maps + case scores (+ binary maps)
    medmae anomaly evaluate scores [--healthy scores_h] --out eval table, curves, report, MLflow
    medmae anomaly report scores --out report.html                 worklist report without labels

See docs/anomaly.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    from medmae.cli.main import add_config_args

    add_config_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    p = subparsers.add_parser("anomaly", help="anomaly maps, healthy calibration, evaluation and report",
                              description="Anomaly detection with a pretrained MAE (docs/anomaly.md).")
    sub = p.add_subparsers(dest="anomaly_command", metavar="STEP")
    s = sub.add_parser("score", help="anomaly maps and case scores for scans",
                       description="Score scan files, DICOM series folders or manifests; maps on each scan's own grid.")
    s.add_argument("--model", "-m", required=True, help="pretraining run folder, checkpoint or export folder")
    s.add_argument("inputs", nargs="+", metavar="INPUT", help="scan files, DICOM folders, manifest .csv files")
    s.add_argument("--out", "-o", required=True, help="output folder")
    s.add_argument("--calibration", default=None, help="calibration JSON (default: the one beside the model)")
    _common(s)
    s.set_defaults(func=run_score)
    c = sub.add_parser("calibrate", help="voxel thresholds and case-score norms from healthy scans",
                       description="Calibrate on scans of healthy subjects only; stored beside the model.")
    c.add_argument("--model", "-m", required=True, help="pretraining run folder, checkpoint or export folder")
    c.add_argument("inputs", nargs="+", metavar="HEALTHY",
                   help="scans of healthy subjects only: files, DICOM folders, manifest .csv files")
    c.add_argument("--out", "-o", default=None, help="calibration JSON path (default: beside the model)")
    c.add_argument("--sequence", default=None, metavar="SEQ",
                   help="MR sequence of healthy scans whose sequence is not known from header or name "
                        "(e.g. flair; per channel comma-joined): calibration.sequence")
    _common(c)
    c.set_defaults(func=run_calibrate)
    e = sub.add_parser("evaluate", help="metrics against lesion masks, baselines beside, report, MLflow",
                       description="Evaluate score outputs whose cases have lesion masks (manifest label column).")
    e.add_argument("runs", nargs="+", metavar="SCORES", help="`anomaly score` output folders (cases with lesion masks)")
    e.add_argument("--healthy", nargs="*", default=[], metavar="SCORES", help="score folders of healthy scans")
    e.add_argument("--out", "-o", required=True, help="output folder (evaluation.json, evaluation.md, curves.png, "
                                                      "report.html)")
    e.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    _common(e)
    e.set_defaults(func=run_evaluate)
    r = sub.add_parser("report", help="self-contained HTML report of a score folder")
    r.add_argument("run", metavar="SCORES", help="an `anomaly score` output folder")
    r.add_argument("--out", "-o", required=True, help="HTML file to write")
    r.add_argument("--evaluation", default=None, help="an `anomaly evaluate` output folder to include")
    r.add_argument("--healthy", nargs="*", default=[], metavar="SCORES",
                   help="score folders of healthy scans (ideally the calibration scans): the protocol check's reference")
    r.add_argument("--min-healthy", type=int, default=None, metavar="N",
                   help="fewer healthy calibration scans than N: healthy percentiles shown as insufficient "
                        "(default: the run's calibration.min_healthy, 10)")
    r.set_defaults(func=run_report)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def _config(args):
    from medmae.config.base import load_config
    from medmae.heads.anomaly.config import AnomalyConfig

    return load_config(AnomalyConfig, args.config, args.overrides)


def _errors():
    from medmae.heads.anomaly.calibration import CalibrationError
    from medmae.export.pretrained import ModelError

    return (CalibrationError, ModelError)


def _print_bad(bad) -> None:
    for path, problem in bad:
        print(f"  skipped {path}: {problem}", file=sys.stderr)


def run_score(args) -> int:
    from medmae.heads.anomaly.run import score_inputs

    try:
        res = score_inputs(args.inputs, args.model, args.out, _config(args), args.calibration,
                           progress=not args.no_progress)
    except _errors() as e:
        print(f"medmae anomaly score: error: {e}", file=sys.stderr)
        return 2
    print(f"scored {len(res.records)} case(s) into {args.out} (scores.csv, cases/*/anomaly.nii.gz)")
    for w in res.warnings:
        print(f"  warning: {w}", file=sys.stderr)
    _print_bad(res.bad)
    return 0 if res.records else 1


def run_calibrate(args) -> int:
    from medmae.heads.anomaly.run import calibrate_inputs

    if args.sequence is not None:
        args.overrides = [*(args.overrides or []), f"calibration.sequence={args.sequence}"]
    cfg = _config(args)
    try:
        cal, path, res = calibrate_inputs(args.inputs, args.model, cfg, args.out, progress=not args.no_progress)
    except _errors() as e:
        print(f"medmae anomaly calibrate: error: {e}", file=sys.stderr)
        return 2
    print(f"calibrated on {cal.cases} healthy scan(s), {cal.voxels} voxels -> {path}")
    for fpr, thr in cal.thresholds["model"].items():
        print(f"  voxel FPR {fpr}: threshold {thr:.4g}")
    for fpr, thr in cal.thresholds.get("features", {}).items():
        print(f"  feature map, voxel FPR {fpr}: threshold {thr:.4g}")
    for w in res.warnings:
        print(f"  warning: {w}", file=sys.stderr)
    _print_bad(res.bad)
    return 0


def run_evaluate(args) -> int:
    from medmae.heads.anomaly.evaluate import evaluate_cases
    from medmae.heads.anomaly.report import write_report
    from medmae.heads.anomaly.results import log_to_mlflow, table, write_results
    from medmae.heads.anomaly.scored import read_runs

    cfg = _config(args)
    out = Path(args.out)
    try:
        cases, skipped, settings = read_runs([Path(r) for r in args.runs], [Path(h) for h in args.healthy])
        results = evaluate_cases(cases, settings, cfg.evaluation)
    except ValueError as e:
        print(f"medmae anomaly evaluate: error: {e}", file=sys.stderr)
        return 2
    data = write_results(results, settings, len(cases), skipped, out)
    write_report(args.runs[0], out / "report.html", out, healthy_runs=args.healthy)
    print(table(results, settings))
    print(f"wrote {out}/evaluation.json, evaluation.md, curves.png, report.html")
    if not args.no_mlflow and cfg.tracking.enabled:
        ok = log_to_mlflow(cfg.tracking, data, settings, out)
        print("logged to MLflow" if ok else "MLflow logging incomplete (see the log)")
    return 0


def run_report(args) -> int:
    from medmae.heads.anomaly.report import write_report

    path = write_report(args.run, args.out, args.evaluation, args.healthy, args.min_healthy)
    print(f"wrote {path}")
    return 0
