"""Evaluation results on disk and in MLflow: JSON, a Markdown table, ROC/PR curves (PNG)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from medmae.atomic import atomic_write, atomic_write_text
from medmae.heads.anomaly.evaluate import MapResult

LABELS = {"model": "MAE map", "baseline": "intensity baseline (robust z)", "combined": "MAE + baseline"}
ROWS = [("voxel_auroc", "voxel AUROC"), ("voxel_auprc", "voxel AUPRC (pooled)"),
        ("auprc_per_volume", "AUPRC per volume (mean)"), ("oracle_dice", "Dice, ORACLE threshold (tuned on this set)"),
        ("dice_at_fpr", "Dice at calibrated healthy FPR"), ("sensitivity", "lesion sensitivity"),
        ("fp_per_scan", "FP components per scan"), ("f1", "lesion F1"),
        ("fp_ml_healthy", "FP volume on healthy scans (ml)"), ("case_auroc", "case-level AUROC")]


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def table(results: list[MapResult], settings: dict) -> str:
    """Markdown: one row per metric, one column per map (model beside the baselines), 95% CIs."""
    head = "| metric | " + " | ".join(LABELS[r.name] for r in results) + " |"
    lines = [head, "|" + "---|" * (len(results) + 1)]
    for key, label in ROWS:
        cells = []
        for r in results:
            v, ci = r.metrics.get(key), r.ci.get(key)
            cells.append(_fmt(v) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cal = settings.get("calibration")
    note = (f"Calibrated on {cal['cases']} healthy scans at voxel FPR {cal['binary_fpr']:g}."
            if cal else "Not calibrated: no threshold-based metrics (run `medmae anomaly calibrate`).")
    return ("\n".join(lines) + f"\n\n{note} Brackets: bootstrap 95% intervals over cases. The oracle Dice uses the "
            "threshold that is best on the evaluated scans themselves (the calibrated rule among the candidates): "
            "an upper bound, not a result.\n")


def curves_png(results: list[MapResult], path: Path) -> Path | None:
    """ROC and PR curves, all maps on the same axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(r.curves for r in results):
        return None
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(9, 4), dpi=90)
    for r in results:
        if r.curves:
            roc.plot(r.curves["fpr"], r.curves["tpr"], label=f"{LABELS[r.name]} ({_fmt(r.metrics['voxel_auroc'])})")
            pr.plot(r.curves["recall"], r.curves["precision"], label=f"{LABELS[r.name]} ({_fmt(r.metrics['voxel_auprc'])})")
    roc.plot([0, 1], [0, 1], ":", color="grey")
    roc.set(xlabel="false-positive rate (voxels)", ylabel="true-positive rate", title="ROC")
    pr.set(xlabel="recall (voxels)", ylabel="precision", title="precision-recall")
    for ax in (roc, pr):
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(float(obj)) else float(obj)
    return obj


def write_results(results: list[MapResult], settings: dict, cases: int, skipped: list, out: Path) -> dict:
    """OUT/evaluation.json, OUT/evaluation.md, OUT/curves.png; returns the JSON dict."""
    data = _plain({"cases": cases, "skipped": skipped, "model_digest": settings["model"]["digest"],
                   "settings_digest": settings["settings_digest"],
                   "maps": {r.name: {"metrics": r.metrics, "ci95": r.ci, "detection": r.detection} for r in results}})
    atomic_write_text(out / "evaluation.json", json.dumps(data, indent=1) + "\n")
    atomic_write_text(out / "evaluation.md", table(results, settings))
    curves_png(results, out / "curves.png")
    return data


def log_to_mlflow(tracking, data: dict, settings: dict, out: Path) -> bool:
    """One MLflow run: settings as params, every metric as ``<map>.<metric>``, files as artifacts."""
    from medmae.config.base import flatten
    from medmae.tracking.mlflow_run import MlflowTracker

    tracker = MlflowTracker(tracking)
    params = {**flatten(settings.get("config") or {}), "model.digest": settings["model"]["digest"],
              "cases": data["cases"]}
    tracker.start(params, {"medmae.head": "anomaly", "medmae.model_digest": settings["model"]["digest"]})
    metrics = {f"{name}.{k}": v for name, m in data["maps"].items() for k, v in m["metrics"].items()
               if isinstance(v, float)}
    tracker.log_metrics(metrics, step=0)
    for name in ("evaluation.json", "evaluation.md", "curves.png", "report.html"):
        if (out / name).is_file():
            tracker.log_artifact(out / name)
    if (out / "report_images").is_dir():
        tracker.log_artifacts(out / "report_images", "report_images")
    return tracker.finish("FINISHED")
