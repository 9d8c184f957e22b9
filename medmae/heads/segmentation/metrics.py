"""Dice and HD95 per class (MONAI), with empty references and missed structures explicit.

Per case and class:
  * reference present: Dice and HD95 (mm) from MONAI. A **missed** structure (empty
    prediction) scores Dice 0 and HD95 = the **penalty**: the diagonal of the evaluated
    volume in mm (no two voxels of the scan are further apart), so a model that misses
    more never looks better; ``missed`` counts them and ``hd95_detected`` is the mean over
    the detected ones only.
  * reference empty: no Dice/HD95; a non-empty prediction is a false positive
    (``fp_on_empty``), an empty one a true negative. These cases never enter the means.

Each class is measured inside the bounding box of its prediction and reference (plus one
voxel), which gives MONAI's numbers exactly at a fraction of the cost on large source grids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance


@dataclass
class ClassScores:
    """Accumulated per-case results of one class (``hd95`` holds the penalty for missed cases)."""

    dice: list[float] = field(default_factory=list)
    hd95: list[float] = field(default_factory=list)
    hd95_detected: list[float] = field(default_factory=list)
    missed: int = 0
    empty_reference: int = 0
    fp_on_empty: int = 0

    def summary(self) -> dict[str, float]:
        """Means over cases with a reference (NaN only when no case had one), and the counts."""
        mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
        return {"dice": mean(self.dice), "hd95": mean(self.hd95), "hd95_detected": mean(self.hd95_detected),
                "cases": len(self.dice), "missed": self.missed, "empty_reference": self.empty_reference,
                "fp_on_empty": self.fp_on_empty}


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(X, Y, Z) int -> (1, K, X, Y, Z) float one-hot."""
    return torch.nn.functional.one_hot(labels.long(), num_classes).permute(3, 0, 1, 2)[None].float()


def hd95_penalty(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The HD95 (mm) a missed structure scores: the diagonal of the (X, Y, Z) volume."""
    return float(np.linalg.norm(np.asarray(shape[-3:], float) * np.asarray(spacing, float)))


def _box(a: np.ndarray, b: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of a | b (both (X, Y, Z) bool, not both empty), one voxel wider each side."""
    both = a | b
    box = []
    for axis in range(3):
        idx = np.flatnonzero(both.any(axis=tuple(j for j in range(3) if j != axis)))
        box.append(slice(max(int(idx[0]) - 1, 0), int(idx[-1]) + 2))
    return tuple(box)


def dice_hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> tuple[float, float]:
    """(X, Y, Z) bool prediction and reference (reference not empty) -> (Dice, HD95 mm);
    HD95 is NaN when the prediction is empty (the caller applies the penalty)."""
    box = _box(pred, ref)
    p, r = (torch.from_numpy(np.ascontiguousarray(m[box])) for m in (pred, ref))
    p2, r2 = (torch.stack([~m, m])[None].float() for m in (p, r))  # (1, 2, ...): background, class
    dice = float(compute_dice(p2, r2, include_background=False, ignore_empty=False)[0, 0])
    if not pred.any():
        return dice, float("nan")
    hd = float(compute_hausdorff_distance(p2, r2, percentile=95, spacing=list(map(float, spacing)))[0, 0])
    return dice, hd


class SegScores:
    """Dice/HD95 per class over cases: ``add(pred, ref, spacing)`` then ``table()``."""

    def __init__(self, class_names: Sequence[str]):
        self.names = list(class_names)
        self.per_class = {n: ClassScores() for n in self.names}
        self.cases: list[dict] = []

    def add(self, pred: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray, spacing: Sequence[float],
            case_id: str = "") -> dict:
        """pred, ref: (X, Y, Z) class indices on one grid; spacing: that grid's voxel size in
        mm. Returns this case's row (``<class>/dice``, ``<class>/hd95`` (penalty if missed),
        ``<class>/missed``)."""
        pred, ref = np.asarray(torch.as_tensor(pred).cpu()), np.asarray(torch.as_tensor(ref).cpu())
        if pred.shape != ref.shape or pred.ndim != 3:
            raise ValueError(f"{case_id}: prediction {pred.shape} and reference {ref.shape} must be one 3D grid")
        penalty = hd95_penalty(ref.shape, spacing)
        row: dict = {"case_id": case_id}
        for c, name in enumerate(self.names, start=1):
            s = self.per_class[name]
            p, r = pred == c, ref == c
            row[f"{name}/missed"] = 0
            if not r.any():
                s.empty_reference += 1
                s.fp_on_empty += int(p.any())
                row[f"{name}/dice"], row[f"{name}/hd95"] = float("nan"), float("nan")
                continue
            dice, hd = dice_hd95(p, r, spacing)
            if math.isnan(hd):
                s.missed += 1
                row[f"{name}/missed"], hd = 1, penalty
            else:
                s.hd95_detected.append(hd)
            s.dice.append(dice)
            s.hd95.append(hd)
            row[f"{name}/dice"], row[f"{name}/hd95"] = dice, hd
        self.cases.append(row)
        return row

    def table(self) -> dict[str, dict[str, float]]:
        """{class: summary}; plus "mean": Dice and HD95 averaged over the classes that had a
        reference; the missed structures and those with a reference, over all classes."""
        out = {n: s.summary() for n, s in self.per_class.items()}
        had = [v for v in out.values() if v["cases"]]
        out["mean"] = {"dice": float(np.mean([v["dice"] for v in had])) if had else float("nan"),
                       "hd95": float(np.mean([v["hd95"] for v in had])) if had else float("nan"),
                       "missed": sum(v["missed"] for v in out.values()),
                       "cases": sum(v["cases"] for v in out.values())}
        return out

    def flat(self, prefix: str = "val/") -> dict[str, float]:
        """Finite numbers as MLflow metric names: ``val/liver/dice`` ..."""
        out = {}
        for name, d in self.table().items():
            for k, v in d.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    out[f"{prefix}{name}/{k}"] = float(v)
        return out
