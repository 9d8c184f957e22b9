"""Evaluation results on disk and in MLflow: JSON, a Markdown table, ROC/PR curves (PNG)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from medmae.atomic import atomic_write, atomic_write_text
from medmae.heads.anomaly.config import MAP_LABELS
from medmae.heads.anomaly.evaluate import MapResult

LABELS = MAP_LABELS
ROWS = [("voxel_auroc", "voxel AUROC (source grid)"), ("voxel_auprc", "voxel AUPRC, pooled (source grid)"),
        ("auprc_per_volume", "AUPRC per volume, mean (source grid)"),
        ("oracle_dice", "Dice, ORACLE threshold tuned on this set (source grid)"),
        ("dice_at_fpr", "Dice at calibrated healthy FPR (model grid)"),
        ("sensitivity", "lesion sensitivity (model grid)"), ("fp_per_scan", "FP components per scan (model grid)"),
        ("f1", "lesion F1 (model grid)"), ("fp_ml_healthy", "FP volume on held-out healthy scans, ml (model grid)"),
        ("healthy_fpr", "voxel FPR on held-out healthy scans (model grid)"), ("case_auroc", "case-level AUROC"),
        ("lesion_outside_body", "share of lesion voxels outside the body mask (not scored)"),
        ("in_sample_fp_ml_healthy", "IN-SAMPLE: FP volume on calibration scans, ml (model grid)"),
        ("in_sample_healthy_fpr", "IN-SAMPLE: voxel FPR on calibration scans (model grid)")]


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
            used = r.ci_resamples.get(key, r.bootstrap)
            cells.append(_fmt(v) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
                         + (f" ({used}/{r.bootstrap} resamples)" if ci and used < r.bootstrap else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + " ".join(_notes(results, settings)) + "\n"


def _notes(results: list[MapResult], settings: dict) -> list[str]:
    cal = settings.get("calibration")
    m = results[0].metrics if results else {}
    spacing = " x ".join(f"{s:g}" for s in settings["model"].get("spacing") or []) or "?"
    notes = [f"Held out: {int(m.get('held_out_cases', 0))} case(s); every figure is inside each body mask."
             f" Source grid: the scans' own voxels (the NIfTI maps). Model grid: the preprocessed grid "
             f"({spacing} mm) where the thresholds were calibrated; the binary map scored there is binary.nii.gz."]
    if cal:
        notes.append(f"Calibrated on {cal['cases']} healthy scans at voxel FPR {cal['binary_fpr']:g}.")
        if not cal.get("inputs"):
            notes.append("The calibration stores no scan identity (made by an older medmae): calibration scans "
                         "among these cases cannot be recognised.")
    else:
        notes.append("Not calibrated: no threshold-based metrics (run `medmae anomaly calibrate`).")
    if m.get("in_sample_cases"):
        notes.append(f"{int(m['in_sample_cases'])} case(s) are calibration scans (IN-SAMPLE): left out of every "
                     "figure above except the IN-SAMPLE rows.")
    banked = [c["case_id"] for c in (results[0].cases if results else []) if c.get("in_feature_bank")]
    if banked:
        notes.append(f"{len(banked)} case(s) are feature-bank scans ({', '.join(banked[:10])}): the feature map's "
                     "figures include them IN-SAMPLE (their own tokens are in the bank).")
    b = results[0].bootstrap if results else 0
    notes.append(f"Brackets: bootstrap 95% intervals over held-out cases ({b} resamples; a count is shown where "
                 "fewer gave a value)." if b else "No bootstrap intervals (evaluation.bootstrap=0).")
    gaps = {r.name: max(r.binning_gap.values()) for r in results if r.binning_gap}
    if gaps and max(gaps.values()) > 0.001:
        notes.append(f"The intervals of voxel AUROC/AUPRC come from binned estimates that differ from the point "
                     f"estimates by up to {max(gaps.values()):.4f}: raise evaluation.bins.")
    notes.append("The oracle Dice uses the threshold that is best on the evaluated scans themselves (the calibrated "
                 "rule among the candidates): an upper bound, not a result.")
    return notes


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
                   "bootstrap": results[0].bootstrap if results else 0,
                   "case_detail": results[0].cases if results else [], "notes": _notes(results, settings),
                   "maps": {r.name: {"metrics": r.metrics, "ci95": r.ci, "ci95_resamples": r.ci_resamples,
                                     "detection": r.detection, "fpr_check": r.fpr_check,
                                     "binning_gap": r.binning_gap} for r in results}})
    atomic_write_text(out / "evaluation.json", json.dumps(data, indent=1) + "\n")
    atomic_write_text(out / "evaluation.md", table(results, settings))
    curves_png(results, out / "curves.png")
    return data


def log_to_mlflow(tracking, data: dict, settings: dict, out: Path, tracker=None) -> bool:
    """One MLflow run (``tracker``'s, else a new one): settings as params, every metric as
    ``<map>.<metric>``, files as artifacts."""
    from medmae.config.base import flatten
    from medmae.tracking.mlflow_run import MlflowTracker
    from medmae.tracking.run_end import ending

    tracker = tracker or MlflowTracker(tracking)
    params = {**flatten(settings.get("config") or {}), "model.digest": settings["model"]["digest"],
              "cases": data["cases"]}
    tracker.start(params, {"medmae.head": "anomaly", "medmae.model_digest": settings["model"]["digest"]})
    metrics = {f"{name}.{k}": v for name, m in data["maps"].items() for k, v in m["metrics"].items()
               if isinstance(v, float)}
    with ending(tracker) as end:  # KILLED, not RUNNING for good, when SIGTERM comes while logging
        tracker.log_metrics(metrics, step=0)
        for name in ("evaluation.json", "evaluation.md", "curves.png", "report.html"):
            if (out / name).is_file():
                tracker.log_artifact(out / name)
        if (out / "report_images").is_dir():
            tracker.log_artifacts(out / "report_images", "report_images")
    return end.ok
