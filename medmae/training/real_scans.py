"""How well a pretrained MAE reconstructs given real scans of its cache: the studies' real-scan metric.

The scores are :mod:`medmae.training.fixed_crops`' (hidden-token r and edge r on seven
fixed crops per scan, beside the interpolation reference's), averaged over the scans in two
groups that are never mixed, named for what they are:

* ``*_real_seen``: scans of the split the model was pretrained on (``data.split``; all of
  them when it is None). The model saw these voxels in training: a reconstruction score,
  not a generalisation one.
* ``*_real_heldout``: scans of any other split, never seen in pretraining.

A group without scans has no keys. Per case (with its split and group) in ``real_scans.json``;
the centre crops of every scored scan in ``real_scans.png``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from medmae.atomic import atomic_write_text
from medmae.models.mae import MaskedAutoencoder3D
from medmae.preprocess.cache import CASES, read_index
from medmae.training.fixed_crops import ScanScores, save_scan_figure, score_cases

log = logging.getLogger(__name__)

SCORES = (("hidden_corr", "hidden_corr", "r"), ("edge_r", "hidden_edge_r", "edge_r"),
          ("interp_hidden_corr", "interp_hidden_corr", "interp_r"), ("interp_edge_r", "interp_edge_r", "interp_edge_r"))
"""(key in real_scans.json, metric prefix, :class:`ScanScores` field)."""
GROUPS = ("seen", "heldout")


def split_cases(cache: str | Path, case_ids: Iterable[str], trained_split: str | None
                ) -> dict[str, list[tuple[str, str]]]:
    """``case_ids`` that are in the cache, as (case_id, split) per group ("seen", "heldout")."""
    splits = {r["case_id"]: r.get("split") or "" for r in read_index(cache)}
    out: dict[str, list[tuple[str, str]]] = {g: [] for g in GROUPS}
    for cid in case_ids:
        if cid not in splits:
            continue
        seen = trained_split is None or splits[cid] == trained_split
        out["seen" if seen else "heldout"].append((cid, splits[cid]))
    return out


def group_means(scores: list[ScanScores], groups: dict[str, list[tuple[str, str]]]) -> dict[str, float]:
    """``<score>_real_<group>`` means over each group's scans (NaN scores left out)."""
    by_id = {s.case_id: s for s in scores}
    out = {}
    for group, cases in groups.items():
        mine = [by_id[c] for c, _ in cases if c in by_id]
        if not mine:
            continue
        for _, name, field in SCORES:
            vals = [getattr(s, field) for s in mine if math.isfinite(getattr(s, field))]
            out[f"{name}_real_{group}"] = float(np.mean(vals)) if vals else float("nan")
        out[f"real_scans_{group}"] = float(len(mine))
    return out


def real_scan_scores(model: MaskedAutoencoder3D, patch_size: tuple[int, int, int], ratio: float,
                     min_fraction: float, cache: str | Path, case_ids: Iterable[str], trained_split: str | None,
                     out_dir: str | Path) -> tuple[dict[str, float], Path | None]:
    """Score ``case_ids`` of ``cache`` with ``model``; write ``out_dir/real_scans.json`` and
    ``real_scans.png``. Returns (metrics, figure path); ({}, None) when none of them is cached."""
    groups = split_cases(cache, case_ids, trained_split)
    ordered = [(c, s, g) for g in GROUPS for c, s in groups[g]]
    if not ordered:
        return {}, None
    scores = score_cases(model, [Path(cache) / CASES / c for c, _, _ in ordered], ratio, min_fraction)
    out = Path(out_dir)
    per_case = {k: {s.case_id: getattr(s, f) for s in scores} for k, _, f in SCORES}
    per_case["split"] = {c: s for c, s, _ in ordered}
    per_case["group"] = {c: g for c, _, g in ordered}
    atomic_write_text(out / "real_scans.json", json.dumps(per_case, indent=1))
    figure = save_scan_figure(out / "real_scans.png", scores, patch_size,
                              suptitle=f"real scans, fixed centre crops, {ratio:.0%} hidden")
    log.info("hidden-token r / edge r on fixed crops of the real scans (interpolation in brackets): %s",
             ", ".join(f"{s.case_id} [{per_case['group'][s.case_id]}] {s.r:.2f} / {s.edge_r:.2f} "
                       f"({s.interp_r:.2f} / {s.interp_edge_r:.2f})" for s in scores))
    return group_means(scores, groups), figure
