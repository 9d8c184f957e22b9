"""``medmae segment evaluate``: what pretraining buys, measured in one config.

For every arm (default: ``pretrained`` and ``scratch`` = the same architecture, random
weights), every label count N and every seed, a model is fine-tuned on N labelled cases
(``data.label_cases=N data.label_seed=seed train.seed=seed``: the same cases and crops in
every arm), then evaluated on ``split`` (cases never trained on), clean and under each
configured corruption strength, by sliding window: Dice and HD95 per class. Existing models
can be evaluated instead (``models``).

Metrics are computed on each scan's SOURCE grid, as a user sees the segmentation in a viewer:
the prediction (made on the cached grid) is mapped back with nearest neighbour exactly as
``medmae segment`` writes it, and compared with the manifest's own label file (``manifest``:
the manifest the cache was built from; its files must be the cached ones, by sha256).
Without a manifest they fall back to the cached grid, and every row says so (``grid``).
A missed structure scores HD95 = the scan's diagonal in mm (see
:mod:`medmae.heads.segmentation.metrics`); ``missed`` counts them beside it.

    OUT/<arm>/n<N>_s<seed>/     each fine-tuning run (resumed or reused when re-run with the
                                same settings, trained again when a ``finetune:`` or arm
                                override changed what it trains)
    OUT/results.csv             arm, label_cases, seed, corruption, strength, class, grid, dice, hd95, ...
    OUT/summary.csv             the same averaged over seeds
    OUT/comparison.csv          mean Dice per arm side by side, and the gain pretrained - scratch
    OUT/dice_vs_labels.png, OUT/dice_vs_<corruption>.png
All of it is logged to one MLflow run (tables as artifacts, the plots as figures).
"""

from __future__ import annotations

import csv
import io
import logging
import zlib
from pathlib import Path

import numpy as np
import torch
from pydantic import Field, model_validator

from medmae.atomic import atomic_write_text
from medmae.config.base import StrictModel, load_config, save_config
from medmae.preprocess.cache import list_cases
from medmae.heads.segmentation.bundle import load_bundle
from medmae.heads.segmentation.classmap import lookup_table, to_classes
from medmae.heads.segmentation.config import FinetuneConfig
from medmae.heads.segmentation.corrupt import KINDS, corrupt
from medmae.heads.segmentation.data import manifest_cases, source_reference
from medmae.heads.segmentation.metrics import SegScores
from medmae.heads.segmentation.predict import Segmenter
from medmae.preprocess.inverse import to_source_grid
from medmae.tracking.config import TrackingConfig
from medmae.tracking.mlflow_run import MlflowTracker, Tracker
from medmae.tracking.run_end import ending
from medmae.device import pick_device

logger = logging.getLogger(__name__)


class EvaluateConfig(StrictModel):
    finetune_config: str | None = None
    """The fine-tuning YAML every arm starts from (data, model, init.source, train...)."""
    finetune: list[str] = []
    """Overrides applied to it in every arm, e.g. ["train.steps=300"]."""
    arms: dict[str, list[str]] = {"pretrained": [], "scratch": ["init.load_weights=false"]}
    """Arm name -> its own overrides (scratch: the source's architecture, random weights)."""
    label_counts: list[int | None] = [None]
    """Labelled training cases per run (None = all of the training split)."""
    seeds: list[int] = [0]
    models: dict[str, str] = {}
    """Evaluate these trained models (name -> model folder) instead of training arms."""
    split: str = "test"
    """Cache split evaluated (its cases' label maps are the reference)."""
    manifest: str | None = None
    """The manifest the cache was built from: Dice and HD95 are then computed on each scan's
    own (source) grid against its label file, as a viewer shows them. Without it they are
    computed on the cached grid (rows say ``grid: cached``)."""
    corruptions: dict[str, list[float]] = {}
    """Corruption kind -> strengths (see medmae.heads.segmentation.corrupt), e.g. {noise: [0.05, 0.1]}."""
    corruption_seed: int = 0
    max_cases: int | None = Field(None, ge=1)
    device: str = "auto"
    out_dir: str = "runs/segment_evaluate"
    tracking: TrackingConfig = TrackingConfig()
    """The evaluation's own MLflow run, in experiment ``medmae-segment-evaluate`` unless set
    (each fine-tuning run is tracked as its config says)."""

    @model_validator(mode="after")
    def _experiment(self) -> "EvaluateConfig":
        self.tracking.default_experiment("medmae-segment-evaluate")
        return self


def _base(cfg: EvaluateConfig, extra: list[str]) -> FinetuneConfig:
    return load_config(FinetuneConfig, cfg.finetune_config, [*cfg.finetune, *extra])


PARENT_WAIT_S = 30.0
"""How long the evaluation waits for its own MLflow run before training (to nest the runs under it)."""


def train_arms(cfg: EvaluateConfig, parent_run: str | None = None) -> list[tuple[dict, Path]]:
    """Fine-tune every (arm, label count, seed); returns ({arm, label_cases, seed}, model dir).
    Runs are named ``[<finetune tracking.run_name>-]<arm>-n<N>-s<seed>`` and nested under
    ``parent_run`` (the evaluation's run) when they go to its store and experiment."""
    from medmae.heads.segmentation.engine import changed_settings, finetune

    out = []
    prefix = _base(cfg, []).tracking.run_name  # a study's variant: finetune-random-s0-pretrained-n2-s0
    prefix = f"{prefix}-" if prefix else ""
    for arm, overrides in cfg.arms.items():
        for n in cfg.label_counts:
            for seed in cfg.seeds:
                run_dir = Path(cfg.out_dir) / arm / f"n{n if n is not None else 'all'}_s{seed}"
                ft = _base(cfg, [*overrides, f"data.label_cases={'null' if n is None else n}",
                                 f"data.label_seed={seed}", f"train.seed={seed}", f"train.out_dir={run_dir}",
                                 f"tracking.run_name={prefix}{arm}-n{n}-s{seed}"])
                ft.tracking.enabled = ft.tracking.enabled and cfg.tracking.enabled
                if changed := changed_settings(ft):  # never resume or reuse a model trained otherwise
                    logger.warning("evaluate: %s was trained with other settings (%s): training it again",
                                   run_dir, "; ".join(changed))
                    ft.train.resume = False
                if parent_run and _same_experiment(ft.tracking, cfg.tracking):
                    ft.tracking.tags = {**ft.tracking.tags, "mlflow.parentRunId": parent_run}
                logger.info("evaluate: fine-tuning %s with %s labelled case(s), seed %d", arm, n or "all", seed)
                result = finetune(ft)
                out.append(({"arm": arm, "label_cases": n if n is not None else len(result.train_cases),
                             "seed": seed}, result.model_dir))
    return out


def _same_experiment(a: TrackingConfig, b: TrackingConfig) -> bool:
    """Whether runs of ``a`` and ``b`` land in one store and experiment (MLflow nests only there)."""
    from medmae.tracking.mlflow_run import resolve_tracking_uri

    return (a.experiment == b.experiment
            and resolve_tracking_uri(a.tracking_uri) == resolve_tracking_uri(b.tracking_uri))


def evaluate_model(seg: Segmenter, cache_dir: str, cfg: EvaluateConfig) -> list[dict]:
    """Rows (corruption, strength, class, grid, dice, hd95, counts) of one model on ``cfg.split``."""
    label_map = seg.meta["label_map"]
    cases = [c for c in list_cases(cache_dir, cfg.split) if c.has(label_map)][: cfg.max_cases]
    if not cases:
        raise ValueError(f"{cache_dir}: no case of split {cfg.split!r} has a {label_map!r} map")
    lut = lookup_table(seg.classes)
    sources = manifest_cases(cfg.manifest, cases) if cfg.manifest else None
    if sources is None:
        logger.warning("evaluate: no manifest given: Dice and HD95 on the cached grid, not on the scans' own "
                       "grids that a viewer shows (set manifest=<the manifest the cache was built from>)")
    settings = [("clean", 0.0)] + [(k, float(s)) for k, ss in cfg.corruptions.items() for s in ss]
    scores = {s: SegScores(list(seg.classes)) for s in settings}
    for c in cases:
        image = np.asarray(c.image)
        cached_spacing = np.sqrt((c.affine[:3, :3] ** 2).sum(0)).tolist()
        if sources is None:
            ref, spacing = to_classes(np.asarray(c.map(label_map)), lut), cached_spacing
        else:
            ref, spacing = source_reference(sources[c.case_id], c.meta, label_map, lut)
        for kind, strength in settings:
            seed = cfg.corruption_seed + zlib.crc32(f"{c.case_id}/{kind}/{strength}".encode())
            x = image if kind == "clean" else corrupt(image, kind, strength, seed, cached_spacing)
            pred = seg.predict_cached_grid(x).cpu().numpy()
            if sources is not None:  # as `medmae segment` writes it: nearest neighbour onto the scan's grid
                pred = np.rint(to_source_grid(pred, c.meta, order=0)).astype(np.int64)
            scores[(kind, strength)].add(pred, ref, spacing, c.case_id)
    grid = "cached" if sources is None else "source"
    rows = []
    for (kind, strength), sc in scores.items():
        for name, d in sc.table().items():
            rows.append({"corruption": kind, "strength": strength, "class": name, "grid": grid, **d})
    return rows


def run_evaluation(cfg: EvaluateConfig, tracker: Tracker | None = None) -> list[dict]:
    """Train (or take) the models, evaluate each; write tables and plots; log them to MLflow."""
    for kind in cfg.corruptions:
        if kind not in KINDS:
            raise ValueError(f"corruptions: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    out = Path(cfg.out_dir)
    save_config(cfg, out / "evaluate.yaml")
    cache_dir = _base(cfg, []).data.cache_dir
    if tracker is None:
        tracker = MlflowTracker(cfg.tracking) if cfg.tracking.enabled else Tracker()
    tracker.start({"split": cfg.split, "arms": ",".join(cfg.arms if not cfg.models else cfg.models),
                   "label_counts": str(cfg.label_counts), "seeds": str(cfg.seeds),
                   "corruptions": str(cfg.corruptions)}, {"head": "segmentation", "kind": "evaluate"})
    with ending(tracker):  # FINISHED; KILLED on SIGTERM or Ctrl-C, FAILED on an error: never RUNNING for good
        models = ([({"arm": name, "label_cases": None, "seed": None}, Path(p)) for name, p in cfg.models.items()]
                  or train_arms(cfg, tracker.wait_for_run(PARENT_WAIT_S)))
        device = pick_device(cfg.device)
        rows = []
        for key, model_dir in models:
            model, meta = load_bundle(model_dir)
            seg = Segmenter(model.to(device), meta, device)
            logger.info("evaluate: %s (%s labelled, seed %s) on split %r", key["arm"], key["label_cases"],
                        key["seed"], cfg.split)
            rows += [{**key, **r} for r in evaluate_model(seg, cache_dir, cfg)]
        _write_outputs(cfg, out, rows, tracker)
    return rows


COLUMNS = ["arm", "label_cases", "seed", "corruption", "strength", "class", "grid", "dice", "hd95", "missed",
           "hd95_detected", "cases", "empty_reference", "fp_on_empty"]


def _mean(values) -> float:
    finite = [float(v) for v in values if v is not None and v == v]
    return float(np.mean(finite)) if finite else float("nan")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean Dice / HD95 over seeds per (arm, label count, corruption, strength, class);
    ``missed`` and ``cases``: structures missed / with a reference, summed over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["arm"], r["label_cases"], r["corruption"], r["strength"], r["class"]), []).append(r)
    out = []
    for (arm, n, kind, s, name), rs in groups.items():
        dice = [r["dice"] for r in rs if r["dice"] == r["dice"]]
        out.append({"arm": arm, "label_cases": n, "corruption": kind, "strength": s, "class": name,
                    "grid": rs[0].get("grid", ""), "dice": _mean(dice),
                    "dice_sd": float(np.std(dice)) if dice else float("nan"),
                    "hd95": _mean(r.get("hd95") for r in rs), "missed": sum(int(r.get("missed", 0)) for r in rs),
                    "hd95_detected": _mean(r.get("hd95_detected") for r in rs),
                    "cases": sum(int(r.get("cases", 0)) for r in rs), "seeds": len(rs)})
    return out


def side_by_side(summary: list[dict]) -> list[dict]:
    """One row per (label count, corruption, strength, class) with every arm's mean Dice as
    ``dice_<arm>`` (the baseline beside the model), plus ``gain`` = pretrained - scratch when
    both arms exist."""
    arms = list(dict.fromkeys(r["arm"] for r in summary))
    table: dict[tuple, dict] = {}
    for r in summary:
        key = (r["label_cases"], r["corruption"], r["strength"], r["class"])
        row = table.setdefault(key, {"label_cases": key[0], "corruption": key[1], "strength": key[2],
                                     "class": key[3], **{f"dice_{a}": float("nan") for a in arms}})
        row[f"dice_{r['arm']}"] = r["dice"]
    for row in table.values():
        if "dice_pretrained" in row and "dice_scratch" in row:
            row["gain"] = row["dice_pretrained"] - row["dice_scratch"]
    return list(table.values())


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _write_outputs(cfg: EvaluateConfig, out: Path, rows: list[dict], tracker: Tracker) -> None:
    summary = summarise(rows)
    files = [atomic_write_text(out / "results.csv", _csv(rows, COLUMNS)),
             atomic_write_text(out / "summary.csv", _csv(summary, list(summary[0]) if summary else ["arm"]))]
    compare = side_by_side(summary)
    if compare:
        files.append(atomic_write_text(out / "comparison.csv", _csv(compare, list(compare[0]))))
    from medmae.heads.segmentation.plots import plot_dice

    files += plot_dice(summary, out)
    for r in summary:
        if r["class"] == "mean" and r["dice"] == r["dice"]:
            name = f"dice/{r['arm']}/n{r['label_cases']}/{r['corruption']}"
            tracker.log_metrics({name: r["dice"]}, int(round(r["strength"] * 1000)))
    for f in files:
        tracker.log_artifact(f, "evaluation")
    tracker.log_artifact(out / "evaluate.yaml")
