"""Dice and HD95 per class (MONAI), with empty reference handled explicitly.

Per case and class:
  * reference present: Dice and HD95 (mm) from MONAI; an empty prediction scores Dice 0
    and HD95 undefined (counted as ``missed``).
  * reference empty: no Dice/HD95; a non-empty prediction is a false positive
    (``fp_on_empty``), an empty one a true negative. These cases never enter the means.
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
    """Accumulated per-case results of one class."""

    dice: list[float] = field(default_factory=list)
    hd95: list[float] = field(default_factory=list)
    missed: int = 0
    empty_reference: int = 0
    fp_on_empty: int = 0

    def summary(self) -> dict[str, float]:
        """Means over cases with a reference (NaN only when no case had one), and the counts."""
        mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
        return {"dice": mean(self.dice), "hd95": mean(self.hd95), "cases": len(self.dice),
                "missed": self.missed, "empty_reference": self.empty_reference, "fp_on_empty": self.fp_on_empty}


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(X, Y, Z) int -> (1, K, X, Y, Z) float one-hot."""
    return torch.nn.functional.one_hot(labels.long(), num_classes).permute(3, 0, 1, 2)[None].float()


class SegScores:
    """Dice/HD95 per class over cases: ``add(pred, ref, spacing)`` then ``table()``."""

    def __init__(self, class_names: Sequence[str]):
        self.names = list(class_names)
        self.per_class = {n: ClassScores() for n in self.names}
        self.cases: list[dict] = []

    def add(self, pred: torch.Tensor, ref: torch.Tensor, spacing: Sequence[float], case_id: str = "") -> dict:
        """pred, ref: (X, Y, Z) class indices; spacing in mm. Returns this case's row."""
        k = len(self.names) + 1
        p, r = one_hot(pred.cpu(), k), one_hot(ref.cpu(), k)
        dice = compute_dice(p, r, include_background=False, ignore_empty=False)[0]
        row: dict = {"case_id": case_id}
        for c, name in enumerate(self.names, start=1):
            s = self.per_class[name]
            has_ref, has_pred = bool(r[0, c].any()), bool(p[0, c].any())
            if not has_ref:
                s.empty_reference += 1
                s.fp_on_empty += int(has_pred)
                row[f"{name}/dice"], row[f"{name}/hd95"] = float("nan"), float("nan")
                continue
            s.dice.append(float(dice[c - 1]))
            hd = float("nan")
            if has_pred:
                hd = float(compute_hausdorff_distance(p[:, [0, c]], r[:, [0, c]], percentile=95,
                                                      spacing=list(map(float, spacing)))[0, 0])
                s.hd95.append(hd)
            else:
                s.missed += 1
            row[f"{name}/dice"], row[f"{name}/hd95"] = s.dice[-1], hd
        self.cases.append(row)
        return row

    def table(self) -> dict[str, dict[str, float]]:
        """{class: summary}; plus "mean": the mean Dice over classes that had a reference."""
        out = {n: s.summary() for n, s in self.per_class.items()}
        dices = [v["dice"] for v in out.values() if not math.isnan(v["dice"])]
        out["mean"] = {"dice": float(np.mean(dices)) if dices else float("nan")}
        return out

    def flat(self, prefix: str = "val/") -> dict[str, float]:
        """Finite numbers as MLflow metric names: ``val/liver/dice`` ..."""
        out = {}
        for name, d in self.table().items():
            for k, v in d.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    out[f"{prefix}{name}/{k}"] = float(v)
        return out
