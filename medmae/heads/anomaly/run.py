"""Batch jobs: ``score`` (maps per case) and ``calibrate`` (healthy thresholds) over INPUTS.

Bad inputs and cases that cannot be scored are reported with the reason (file + problem)
and the rest is processed. ``score`` writes OUT/settings.json, OUT/scores.csv (one row per
scored case, highest score first) and OUT/bad.csv besides the per-case folders (see
:mod:`medmae.heads.anomaly.outputs`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from nibabel.filebasedimages import ImageFileError
from tqdm import tqdm

from medmae import __version__
from medmae.atomic import atomic_write_text
from medmae.heads.anomaly.calibration import (Calibration, CalibrationError, calibrate, contrast_mismatch,
                                              default_path, load_calibration, save_calibration, settings_digest)
from medmae.heads.anomaly.case import CaseMaps, analyse_case
from medmae.heads.anomaly.compat import require_sequence
from medmae.heads.anomaly.config import AnomalyConfig, map_names
from medmae.heads.anomaly.contrast import resolve
from medmae.heads.anomaly.falsealarm import csf_mask, false_alarm_shares
from medmae.export.pretrained import PretrainedMAE, load_model
from medmae.heads.anomaly.outputs import write_case
from medmae.heads.inputs import cases_from_inputs
from medmae.io.errors import ScanError
from medmae.io.manifest import Case

logger = logging.getLogger(__name__)

NORM_PIX_WARNING = ("model was pretrained with norm_pix_loss (per-patch normalised targets): it cannot see "
                    "an intensity anomaly, since each patch's own mean and variance are normalised away; "
                    "pretrain anomaly models with model.norm_pix_loss=false (configs/anomaly_pretrain_cpu.yaml)")
SCORE_STATISTICS = {"top_mean": "mean of the top {q:g}% of the map's voxels inside the body mask",
                    "abnormal_ml": "volume (ml) of body voxels whose map exceeds {k:g} robust scales of the map "
                                   "(1.4826 x the median of its non-zero values in the body)"}


def score_statistic(cfg: AnomalyConfig) -> str:
    """The case score's definition, in words (scores.csv, settings.json, the report's worklist)."""
    return SCORE_STATISTICS[cfg.score.case_statistic].format(q=cfg.score.top_percent, k=cfg.score.abnormal_level)

READ_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, EOFError,
               zlib.error, gzip.BadGzipFile, ImageFileError)
"""I/O errors of reading one scan: a bad case. Anything else (a bug, a full disk) stops the batch."""


@dataclass
class BatchResult:
    records: list[dict] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def open_model(model: str | os.PathLike) -> tuple[PretrainedMAE, list[str]]:
    """Load MODEL; returns it and the warnings a user must see (norm_pix_loss)."""
    loaded = load_model(model)
    warnings = [NORM_PIX_WARNING] if loaded.norm_pix_loss else []
    for w in warnings:
        logger.warning("%s: %s", loaded.source, w)
    return loaded, warnings


def scored_cases(cases: list[Case], model: PretrainedMAE, cfg: AnomalyConfig, bad: list, what: str,
                 progress: bool = True) -> Iterator[CaseMaps]:
    """Analyse each case in turn (tqdm progress); bad scans go to ``bad`` as (file, problem).

    Only the tool's scan errors and the I/O errors of reading a scan (READ_ERRORS) make a
    bad case; any other exception is a bug or a fault of the machine and propagates."""
    for case in tqdm(cases, desc=what, unit="scan", disable=not progress):
        try:
            if what == "calibrating":
                require_sequence(case, model, cfg.calibration.sequence)
            cm = analyse_case(case, model, cfg)
        except ScanError as e:
            bad.append((e.path, e.problem))
        except READ_ERRORS as e:
            bad.append((getattr(e, "filename", None) or case.image[0], f"{type(e).__name__}: {e}"))
        else:
            yield cm
            continue
        logger.warning("skipped %s: %s", *bad[-1])


def clean_stale(cases_dir: Path) -> int:
    """Remove the hidden ``.*.tmp`` / ``.*.old`` folders a killed ``score`` left in cases/."""
    n = 0
    for p in [*cases_dir.glob(".*.tmp"), *cases_dir.glob(".*.old")] if cases_dir.is_dir() else []:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        n += 1
    if n:
        logger.info("removed %d temporary case folder(s) left by an interrupted run in %s", n, cases_dir)
    return n


def find_calibration(model: PretrainedMAE, cfg: AnomalyConfig, path: str | os.PathLike | None) -> Calibration | None:
    """The given calibration (checked), else the one beside the model for these settings, else None."""
    if path is not None:
        return load_calibration(path, model.digest, cfg)
    auto = default_path(model.folder, model.digest, cfg)
    return load_calibration(auto, model.digest, cfg) if auto.is_file() else None


def _false_alarm(cm: CaseMaps, model: PretrainedMAE) -> dict:
    """Per map: the share of its top 1 % body voxels within 3 mm of the mask edge / in CSF (falsealarm)."""
    csf = csf_mask(cm.image[0], cm.body, cm.case.sequences[0] if cm.case.sequences else "", cm.label)
    return {k: false_alarm_shares(v, cm.body, tuple(model.preprocess.spacing), csf) for k, v in cm.maps.items()}


def _record(cm: CaseMaps, cal: Calibration | None, model: PretrainedMAE, cfg: AnomalyConfig) -> dict:
    rec = {
        "case_id": cm.case.case_id, "modality": cm.case.modality, "sequence": cm.case.sequence,
        "score": cm.scores["model"], "scores": cm.scores,
        "score_statistic": score_statistic(cfg),
        "label": cm.case.label, "has_label": bool(cm.case.label),
        "body_voxels": int(cm.body.sum()), "covered_fraction": float(cm.stats.covered[cm.body].mean()),
        "midline_voxel": cm.midline, "model_digest": model.digest, "settings_digest": settings_digest(cfg),
        "seconds": cm.seconds, "image_sha256": cm.image_sha256,
        "contrast": cm.contrast.as_dict() if cm.contrast else None,
        "false_alarm": _false_alarm(cm, model),
    }
    if cal is not None:
        rec["percentiles"] = {k: cal.percentile(k, v) for k, v in cm.scores.items()}
    if cfg.score.feature_bank is not None:
        rec["in_feature_bank"] = cm.in_feature_bank
    return rec


def bank_warning(case_ids: list[str], what: str) -> str | None:
    """The warning for scans that are also feature-bank scans (None: there is none)."""
    if not case_ids:
        return None
    return (f"{len(case_ids)} {what} scan(s) are among score.feature_bank's scans ({', '.join(case_ids[:10])}"
            f"{', ...' if len(case_ids) > 10 else ''}): their own tokens are in the bank, so their feature map is "
            "near 0 (in-sample); use a bank of other healthy or training scans")


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def few_healthy(cases: int, minimum: int) -> str | None:
    """The warning for a calibration on fewer than ``minimum`` healthy scans (None: enough)."""
    if cases >= minimum:
        return None
    return (f"calibrated on {cases} healthy scan(s), fewer than calibration.min_healthy={minimum}: thresholds "
            "and healthy percentiles rest on too few subjects to be reliable")


def _settings(model: PretrainedMAE, cfg: AnomalyConfig, cal: Calibration | None, warnings: list[str]) -> dict:
    few = None if cal is None else few_healthy(cal.cases, cfg.calibration.min_healthy)
    warnings = warnings + ([few] if few else [])
    return {
        "medmae_version": __version__, "model": {"kind": model.kind, "name": model.source.name,
                                                 "digest": model.digest, "norm_pix_loss": model.norm_pix_loss,
                                                 "training_ratio": model.ratio, "crop": list(model.crop),
                                                 "spacing": list(model.preprocess.spacing)},
        "config": cfg.model_dump(mode="json", exclude={"tracking"}), "settings_digest": settings_digest(cfg),
        "score_statistic": score_statistic(cfg),
        "contrast": resolve(cfg, model).as_dict(),
        "calibration": None if cal is None else {"thresholds": cal.thresholds, "cases": cal.cases,
                                                 "binary_fpr": cfg.calibration.binary_fpr,
                                                 "min_component_mm3": cal.min_component_mm3,
                                                 "inputs": cal.inputs},
        "warnings": warnings,
    }


def score_inputs(inputs: list[str], model_path: str | os.PathLike, out: str | os.PathLike, cfg: AnomalyConfig,
                 calibration: str | os.PathLike | None = None, progress: bool = True) -> BatchResult:
    """Score every case INPUTS name; write per-case outputs and the run's index files under ``out``."""
    model, warnings = open_model(model_path)
    cal = find_calibration(model, cfg, calibration)
    out = Path(out)
    result = BatchResult(warnings=warnings)
    cases, result.bad = cases_from_inputs(inputs)
    clean_stale(out / "cases")
    for cm in scored_cases(cases, model, cfg, result.bad, "scoring", progress):
        why = None if cal is None else contrast_mismatch(cal, cm.contrast.as_dict())
        if why:
            result.bad.append((cm.case.image[0], why))
            logger.warning("skipped %s: %s", *result.bad[-1])
            continue
        rec = write_case(cm, out / "cases" / cm.case.case_id, _record(cm, cal, model, cfg), cal,
                         cfg.calibration.binary_fpr)
        result.records.append(rec)
    banked = bank_warning([r["case_id"] for r in result.records if r.get("in_feature_bank")], "scored")
    if banked:
        result.warnings.append(banked)
        logger.warning("%s: %s", out, banked)
    result.records.sort(key=lambda r: -r["score"])
    others = [f"{k}_score" for k in map_names(cfg.score) if k != "model"]
    rows = [{**r, "percentile": (r.get("percentiles") or {}).get("model", ""),
             **{f"{k}_score": v for k, v in r["scores"].items()}} for r in result.records]
    atomic_write_text(out / "scores.csv", _csv(rows, ["case_id", "score", "percentile", *others, "has_label"]))
    atomic_write_text(out / "bad.csv", _csv([{"path": p, "problem": q} for p, q in result.bad], ["path", "problem"]))
    atomic_write_text(out / "settings.json", json.dumps(_settings(model, cfg, cal, result.warnings), indent=1) + "\n")
    return result


def calibrate_inputs(inputs: list[str], model_path: str | os.PathLike, cfg: AnomalyConfig,
                     out: str | os.PathLike | None = None, progress: bool = True
                     ) -> tuple[Calibration, Path, BatchResult]:
    """Calibrate on the healthy scans INPUTS name; saved beside the model (or at ``out``)."""
    model, warnings = open_model(model_path)
    result = BatchResult(warnings=warnings)
    cases, result.bad = cases_from_inputs(inputs)
    healthy, digests, contrasts, banked = [], [], [], []
    for cm in scored_cases(cases, model, cfg, result.bad, "calibrating", progress):
        healthy.append(({k: cm.maps[k] for k in map_names(cfg.score)}, cm.body, cm.scores))
        digests.append(cm.image_sha256)
        contrasts.append(cm.contrast)
        if cm.in_feature_bank:
            banked.append(cm.case.case_id)
        result.records.append({"case_id": cm.case.case_id, "scores": cm.scores})
    used = {(c.map, c.baseline_sign) for c in contrasts}
    if len(used) > 1:
        raise CalibrationError(f"the healthy scans were scored with different maps / baseline signs {sorted(used)} "
                               "(their sequences differ): calibrate one sequence at a time, or set score.map")
    first = contrasts[0].as_dict() if contrasts else None
    cal = calibrate(healthy, model.digest, cfg, digests, first and {k: first[k] for k in ("map", "baseline_sign")})
    path = Path(out) if out is not None else default_path(model.folder, model.digest, cfg)
    save_calibration(cal, path)
    few = few_healthy(cal.cases, cfg.calibration.min_healthy)
    for w in (few, bank_warning(banked, "calibration")):
        if w:
            result.warnings.append(w)
            logger.warning("%s: %s", path, w)
    return cal, path, result
