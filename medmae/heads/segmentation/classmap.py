"""Class maps: which label ids of a map become which training class, and back.

A class map is an ordered ``{name: [label ids]}``: class k (1-based, 0 = background) is the
k-th entry, and every id listed under it is merged into it (``kidneys: [2, 3]``). Ids not
listed become background. Predictions are written with each class's FIRST listed id, so
a map of single ids round-trips to the original ids.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch


def check_class_map(classes: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """Validate and normalise: non-empty, names unique and not "background", ids >= 1 and
    each used once. Raises ValueError naming the problem."""
    if not classes:
        raise ValueError("the class map is empty: give at least one class, e.g. {liver: [5]}")
    out: dict[str, list[int]] = {}
    seen: dict[int, str] = {}
    for name, ids in classes.items():
        ids = [int(i) for i in ([ids] if isinstance(ids, int) else ids)]
        if name == "background":
            raise ValueError("'background' is class 0 and cannot be mapped")
        if not ids:
            raise ValueError(f"class {name!r} lists no label id")
        for i in ids:
            if i < 1:
                raise ValueError(f"class {name!r}: label id {i} must be >= 1 (0 is background)")
            if i in seen:
                raise ValueError(f"label id {i} is listed under both {seen[i]!r} and {name!r}")
            seen[i] = name
        out[str(name)] = ids
    return out


def lookup_table(classes: Mapping[str, Sequence[int]]) -> np.ndarray:
    """int64 array ``lut`` with ``lut[label id] = class index`` (0 for unlisted ids)."""
    classes = check_class_map(classes)
    lut = np.zeros(max(i for ids in classes.values() for i in ids) + 1, dtype=np.int64)
    for k, ids in enumerate(classes.values(), start=1):
        lut[ids] = k
    return lut


def to_classes(labels: torch.Tensor | np.ndarray, lut: np.ndarray):
    """Label ids (any shape, integer) -> class indices of the same shape (ids beyond the
    table, or negative, become background)."""
    if isinstance(labels, torch.Tensor):
        table = torch.as_tensor(lut, device=labels.device)
        ids = labels.long()
        inside = (ids >= 0) & (ids < len(lut))
        return torch.where(inside, table[ids.clamp(0, len(lut) - 1)], torch.zeros_like(ids))
    ids = np.asarray(labels).astype(np.int64)
    inside = (ids >= 0) & (ids < len(lut))
    return np.where(inside, lut[np.clip(ids, 0, len(lut) - 1)], 0)


def output_ids(classes: Mapping[str, Sequence[int]]) -> np.ndarray:
    """int array ``ids`` with ``ids[class index] = label id written`` (0 for background)."""
    classes = check_class_map(classes)
    return np.array([0] + [ids[0] for ids in classes.values()], dtype=np.int64)
