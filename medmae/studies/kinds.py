"""How each kind of step runs: ``run(step, folder, deps, ctx) -> result``.

A result is ``{"metrics": {name: float}, "paths": {name: str}, "run_id": str | None}``;
``deps`` maps each dependency's id to its result. Every step writes only inside its own
``folder``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from medmae.studies.store import Step

log = logging.getLogger(__name__)


@dataclass
class StudyContext:
    experiment: str
    """MLflow experiment of the study's runs."""
    tracking_uri: str
    tags: dict[str, str] = field(default_factory=dict)
    """Tags of every MLflow run the current step starts (its parent, the step's id and key)."""


HEAD_TRACKING = {"system_metrics": False, "log_model": False, "log_checkpoint": False}
"""A head step's runs log no system metrics, model or checkpoint unless the study asks."""


def step_tracking(step: Step, ctx: StudyContext, run_name: str, defaults: dict | None = None) -> dict:
    """The tracking section of a step's runs: ``defaults``, then the study file's own
    ``tracking.*`` settings (merged, not replaced), then where the study records them:
    its experiment and store, the run's name, and tags nesting it under the study's run."""
    merged = {**(defaults or {}), **step.tracking}
    return {**merged, "experiment": ctx.experiment, "tracking_uri": ctx.tracking_uri, "run_name": run_name,
            "tags": {**merged.get("tags", {}), **ctx.tags}}


def run_data(step: Step, folder: Path, deps: dict, ctx: StudyContext) -> dict:
    """Phantoms + scanned folders + given manifests -> one manifest."""
    from medmae.atomic import atomic_write_text
    from medmae.io.manifest import read_manifest, write_manifest
    from medmae.io.scan import scan_folder
    from medmae.synth.write import finish, generate

    c = step.config
    cases, n_bad = [], 0
    for kind in ("brain", "abdomen"):
        n = c["synth"][kind]
        if n:
            out = folder / "phantoms" / kind
            rows = list(generate(out, kind, n, seed=c["seed"], lesions=c["synth"]["lesions"],
                                 shape=c["synth"]["shape"], spacing=c["synth"]["spacing"],
                                 val_fraction=c["synth"]["val_fraction"],
                                 brain_mask=kind == "brain" and c["synth"]["brain_mask"]))
            finish(out, rows)
            cases += [r.resolved(out) for r in rows]
    n_phantoms = len(cases)
    for f in c["folders"]:
        found, bad = scan_folder(f["path"], val_fraction=c.get("val_fraction", 0.0), seed=c["seed"], progress=False)
        for path, problem in bad:
            log.warning("study data: skipping %s: %s", path, problem)
        cases += found
        n_bad += len(bad)
    for m in c["manifests"]:
        cases += read_manifest(m["path"])
    manifest = write_manifest(cases, folder / "manifest.csv")
    real = atomic_write_text(folder / "real_cases.txt", "".join(f"{r.case_id}\n" for r in cases[n_phantoms:]))
    return {"metrics": {"cases": len(cases), "unusable_files": n_bad},
            "paths": {"manifest": str(manifest), "real_cases": str(real)}}


def run_preprocess(step: Step, folder: Path, deps: dict, ctx: StudyContext) -> dict:
    from medmae.preprocess.batch import preprocess_manifest
    from medmae.preprocess.config import PreprocessConfig

    cfg = PreprocessConfig.model_validate(step.config)
    (data,) = [r for d, r in deps.items() if d.startswith("data-")]
    report = preprocess_manifest(data["paths"]["manifest"], folder / "cache", cfg)
    for line in report.lines():
        log.info("preprocess: %s", line)
    if not (report.done or report.skipped):
        raise RuntimeError(f"preprocessing cached no case (see {folder / 'cache' / 'report.csv'})")
    return {"metrics": {"cases_cached": len(report.done) + len(report.skipped), "bad_cases": len(report.bad)},
            "paths": {"cache": str(folder / "cache"), "manifest": data["paths"]["manifest"]}}


def pretrain_config(step: Step, folder: Path, cache: str, ctx: StudyContext):
    from medmae.training.pretrain_config import PretrainConfig

    body = {k: v for k, v in step.config.items() if k != "torchrun"}
    body["data"] = {**body["data"], "cache_dir": cache}
    body["train"] = {**body["train"], "out_dir": str(folder / "run"), "resume": True}
    body["tracking"] = step_tracking(step, ctx, f"pretrain-{step.name}")
    return PretrainConfig.model_validate(body)


def run_pretrain(step: Step, folder: Path, deps: dict, ctx: StudyContext) -> dict:
    """In this process, or handed to torchrun; metrics come from the run's metrics.jsonl."""
    from medmae.config.base import save_config

    cfg = pretrain_config(step, folder, deps["preprocess-cache"]["paths"]["cache"], ctx)
    cfg_file = save_config(cfg, folder / "pretrain.yaml")
    nproc = step.config.get("torchrun", 0)
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "-m", "medmae",
               "pretrain", "--config", str(cfg_file)]
        log.info("study: %s", " ".join(cmd))
        subprocess.run(cmd, check=True)
        import torch

        ckpt = folder / "run" / "checkpoints" / "latest.pt"
        run_id = torch.load(ckpt, weights_only=True, map_location="cpu").get("mlflow_run_id")
    else:
        from medmae.training.engine import pretrain

        run_id = pretrain(cfg).run_id
    metrics = pretrain_metrics(folder / "run" / "metrics.jsonl")
    metrics.update(masked_at_random(cfg))
    metrics.update(real_scan_correlation(folder, deps["preprocess-cache"]["paths"]["cache"],
                                         deps["data-cases"]["paths"].get("real_cases"), cfg.data.split,
                                         ctx.tracking_uri if cfg.tracking.enabled else None, run_id))
    return {"metrics": metrics, "run_id": run_id,
            "paths": {"run": str(folder / "run"), "checkpoint": str(folder / "run" / "checkpoints" / "latest.pt")}}


def masked_at_random(cfg) -> dict[str, float]:
    """``masked_at_random_share``: the share of training cases that lack a map anatomy masking
    reads, so were masked at random (absent when the strategy reads no map)."""
    from medmae.training.preflight import cases_without_masking_map, training_rows

    rows = training_rows(cfg)
    missing = cases_without_masking_map(cfg, rows)
    if not missing or not rows:
        return {}
    return {"masked_at_random_share": len(set().union(*missing.values())) / len(rows)}


def real_scan_correlation(folder: Path, cache: str, real_cases: str | None, trained_split: str | None,
                          tracking_uri: str | None = None, run_id: str | None = None) -> dict[str, float]:
    """The final model's scores on the study's real (not phantom) scans, seen in pretraining
    and held out (:mod:`medmae.training.real_scans`); the figure is also logged to the
    engine's MLflow run. Empty when the study has no real scan."""
    from medmae.export.pretrained import load_model
    from medmae.training.real_scans import real_scan_scores

    ids = Path(real_cases).read_text(encoding="utf-8").split() if real_cases else []
    if not ids:
        return {}
    pm = load_model(folder / "run")
    metrics, figure = real_scan_scores(pm.build(pm.crop), pm.model_config.patch_size, pm.ratio, pm.min_fraction,
                                       cache, ids, trained_split, folder)
    if figure is not None and tracking_uri and run_id:
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=tracking_uri).log_artifact(run_id, str(figure), "figures")
        except Exception as e:  # noqa: BLE001 - tracking must not stop the study
            log.warning("study: logging %s to MLflow failed (%s: %s)", figure, type(e).__name__, e)
    return metrics


def pretrain_metrics(path: Path) -> dict[str, float]:
    """Means over the last tenth of the steps, as the demo summary reports them."""
    from medmae.tracking.metrics_log import read_metrics

    records = [r for r in read_metrics(path) if isinstance(r.get("loss"), (int, float))]
    if not records:
        raise RuntimeError(f"{path}: no step was logged")
    k = max(1, len(records) // 10)
    last = records[-k:]
    out = {"steps": float(records[-1]["step"]), "final_loss": sum(r["loss"] for r in last) / k,
           "mean_predictor_loss": sum(r["mean_predictor_loss"] for r in last) / k}
    m = out["mean_predictor_loss"]
    out["loss_over_mean_predictor"] = out["final_loss"] / m if m > 0 else float("nan")
    for key in ("hidden_corr", "recon_corr"):
        vals = [r[key] for r in last if isinstance(r.get(key), (int, float))]
        if vals:
            out[key] = sum(vals) / len(vals)
    return out


def run_export(step: Step, folder: Path, deps: dict, ctx: StudyContext) -> dict:
    from medmae.export.files import export_encoder

    export_encoder(deps[f"pretrain-{step.name}"]["paths"]["checkpoint"], folder / "encoder")
    return {"metrics": {}, "paths": {"export": str(folder / "encoder")}}


ANOMALY_METRICS = ("voxel_auroc", "voxel_auprc", "auprc_per_volume", "dice_at_fpr", "oracle_dice", "f1",
                   "fp_ml_healthy", "healthy_fpr", "case_auroc")


def _csv_text(rows: list[tuple]) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _bad_share(what: str, bad: list, good: int, limit: float, report: Path) -> None:
    """Fail the step when more than ``limit`` of the scans could not be scored."""
    total = len(bad) + good
    if total and len(bad) / total > limit:
        raise RuntimeError(f"anomaly: {len(bad)} of {total} {what} scans could not be scored, more than "
                           f"evaluation.max_bad_share={limit:g} (see {report})")


def run_anomaly(step: Step, folder: Path, deps: dict, ctx: StudyContext) -> dict:
    """Calibrate the variant's model on the healthy set, score and evaluate the evaluation set
    (and the held-out healthy set, if any; unlabelled evaluation scans count as healthy): MAE
    map beside the intensity baseline and their combination; write the HTML report."""
    from medmae.atomic import atomic_write_text
    from medmae.heads.anomaly.config import AnomalyConfig
    from medmae.heads.anomaly.evaluate import evaluate_cases
    from medmae.heads.anomaly.report import write_report
    from medmae.heads.anomaly.results import log_to_mlflow, write_results
    from medmae.heads.anomaly.run import calibrate_inputs, score_inputs
    from medmae.heads.anomaly.scored import read_runs
    from medmae.tracking.mlflow_run import MlflowTracker

    cfg = AnomalyConfig.model_validate({**step.config, "tracking": step_tracking(
        step, ctx, f"anomaly-{step.name}", HEAD_TRACKING)})
    limit = cfg.evaluation.max_bad_share
    model = deps[f"pretrain-{step.name}"]["paths"]["checkpoint"]
    healthy = deps["data-anomaly_healthy"]["paths"]["manifest"]
    lesions = deps["data-anomaly_eval"]["paths"]["manifest"]
    _, cal_path, cal = calibrate_inputs([healthy], model, cfg, folder / "calibration.json", progress=False)
    cal_bad = atomic_write_text(folder / "calibration_bad.csv", _csv_text([("path", "problem"), *cal.bad]))
    _bad_share("calibration", cal.bad, len(cal.records), limit, cal_bad)
    scored = score_inputs([lesions], model, folder / "scored", cfg, cal_path, progress=False)
    if not scored.records:
        raise RuntimeError(f"anomaly: no evaluation case could be scored (see {folder / 'scored' / 'bad.csv'})")
    bad, good = list(scored.bad), len(scored.records)
    healthy_runs = []
    if "data-anomaly_healthy_test" in deps:
        held = score_inputs([deps["data-anomaly_healthy_test"]["paths"]["manifest"]], model,
                            folder / "scored_healthy", cfg, cal_path, progress=False)
        bad, good = bad + held.bad, good + len(held.records)
        healthy_runs.append(folder / "scored_healthy")
    _bad_share("evaluation", bad, good, limit, folder / "scored" / "bad.csv")
    cases, skipped, settings = read_runs([folder / "scored"], healthy_runs, unlabelled_healthy=True)
    results = evaluate_cases(cases, settings, cfg.evaluation)
    out = folder / "evaluation"
    data = write_results(results, settings, len(cases), skipped, out)
    report = write_report(folder / "scored", out / "report.html", out)
    run_id = None
    if cfg.tracking.enabled:
        tracker = MlflowTracker(cfg.tracking)
        log_to_mlflow(cfg.tracking, data, settings, out, tracker)
        run_id = tracker.run_id
    metrics = {"bad_cases": float(len(bad)), "calibration_bad": float(len(cal.bad)),
               "skipped_cases": float(len(skipped)), "in_sample_cases": results[0].metrics["in_sample_cases"],
               "held_out_cases": results[0].metrics["held_out_cases"]}
    for name, m in data["maps"].items():  # model, baseline, combined
        for key in ANOMALY_METRICS:
            v = m["metrics"].get(key)
            if isinstance(v, (int, float)):
                metrics[f"{name}_{key}"] = float(v)
    return {"metrics": metrics, "run_id": run_id,
            "paths": {"report": str(report), "evaluation": str(out / "evaluation.md")}}


def segmentation_metrics(rows: list[dict]) -> dict[str, float]:
    """Evaluation rows -> mean Dice over classes per arm and label count (clean scans),
    per arm and corruption at the largest label count, and the headline ``dice`` (pretrained,
    most labels, clean) with ``dice_gain`` over scratch."""
    from collections import defaultdict

    groups: dict[str, list[float]] = defaultdict(list)
    most = max(int(r["label_cases"]) for r in rows)
    for r in rows:
        if r["dice"] != r["dice"]:  # NaN: a class absent from reference and prediction
            continue
        if r["corruption"] == "clean":
            groups[f"dice_{r['arm']}_n{int(r['label_cases'])}"].append(float(r["dice"]))
        elif int(r["label_cases"]) == most:
            groups[f"dice_{r['arm']}_{r['corruption']}{r['strength']:g}"].append(float(r["dice"]))
    out = {k: sum(v) / len(v) for k, v in sorted(groups.items())}
    if f"dice_pretrained_n{most}" in out:
        out["dice"] = out[f"dice_pretrained_n{most}"]
        if f"dice_scratch_n{most}" in out:
            out["dice_gain"] = out["dice"] - out[f"dice_scratch_n{most}"]
            out.update(class_gain_spread(rows, most))
    return out


def class_gain_spread(rows: list[dict], most: int) -> dict[str, float]:
    """``dice_gain_class_sd`` (sample sd of the per-class gains pretrained - scratch, clean
    scans, most labels) and ``dice_gain_classes`` (how many classes): the spread the study
    summary judges a one-seed gain against."""
    import statistics

    dice = {(r["arm"], r["class"]): float(r["dice"]) for r in rows
            if r["corruption"] == "clean" and int(r["label_cases"]) == most and r["class"] != "mean"
            and r["dice"] == r["dice"]}
    gains = [dice["pretrained", c] - dice["scratch", c] for a, c in dice if a == "pretrained" and ("scratch", c) in dice]
    if len(gains) < 2:
        return {}
    return {"dice_gain_class_sd": statistics.stdev(gains), "dice_gain_classes": float(len(gains))}


def run_segmentation(step: Step, folder: Path, deps: dict, ctx: StudyContext) -> dict:
    """Fine-tune from the variant's export (and from scratch) on the study's cache, evaluate."""
    from medmae.config.base import save_config
    from medmae.heads.segmentation.config import FinetuneConfig
    from medmae.heads.segmentation.evaluate import EvaluateConfig, run_evaluation
    from medmae.tracking.mlflow_run import MlflowTracker, Tracker

    c = step.config
    ft = dict(c["finetune"])
    (pre,) = [r["paths"] for d, r in deps.items() if d.startswith("preprocess-")]
    cache = pre["cache"]
    ft["data"] = {**ft["data"], "cache_dir": cache}
    ft["init"] = {**ft["init"], "source": deps[f"export-{step.name}"]["paths"]["export"]}
    ft["train"] = {**ft["train"], "out_dir": str(folder / "finetune"), "resume": True}
    ft["tracking"] = step_tracking(step, ctx, f"finetune-{step.name}", HEAD_TRACKING)  # + "-<arm>-n<N>-s<seed>"
    cfg_file = save_config(FinetuneConfig.model_validate(ft), folder / "finetune.yaml")
    arms = {"pretrained": [], **({"scratch": ["init.load_weights=false"]} if c["scratch"] else {})}
    ev = EvaluateConfig(finetune_config=str(cfg_file), arms=arms, label_counts=c["label_counts"],
                        seeds=[c["seed"]], split=c["split"], corruptions=c["corruptions"], out_dir=str(folder),
                        manifest=pre.get("manifest"),  # Dice/HD95 on the scans' own grids
                        tracking=step_tracking(step, ctx, f"segmentation-{step.name}", HEAD_TRACKING))
    tracker = MlflowTracker(ev.tracking) if ev.tracking.enabled else Tracker()
    rows = run_evaluation(ev, tracker)  # the fine-tuning runs nested under its run
    return {"metrics": segmentation_metrics(rows), "run_id": tracker.run_id,
            "paths": {"results": str(folder / "results.csv"), "summary": str(folder / "summary.csv")}}


KINDS: dict[str, Callable[[Step, Path, dict, StudyContext], dict[str, Any]]] = {
    "data": run_data, "preprocess": run_preprocess, "pretrain": run_pretrain, "export": run_export,
    "anomaly": run_anomaly, "segmentation": run_segmentation,
}
