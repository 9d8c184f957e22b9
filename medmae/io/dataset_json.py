"""``dataset.json`` of an nnU-Net v2 or Medical Segmentation Decathlon (MSD) task folder.

nnU-Net v2 names channels in ``channel_names`` and stores one file per channel
(``imagesTr/<case>_0000.nii.gz``); the MSD (``Task01_BrainTumour``) names them in
``modality`` and stores one file per case, a 4D NIfTI whose 4th axis is the channels when
there are several (``imagesTr/BRATS_001.nii.gz``, 240x240x155x4). Both name the label ids
in ``labels`` (MSD: ``{"0": "background", "1": "edema"}``; nnU-Net v2: ``{"background": 0}``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TaskInfo:
    """What a task's dataset.json says: channel names by index, a declared modality ('CT' when
    every channel is CT, 'MR' when none is, else ''), label names by id; ``found`` False when
    there is no readable dataset.json."""

    channels: dict[int, str] = field(default_factory=dict)
    declared: str = ""
    labels: dict[int, str] = field(default_factory=dict)
    found: bool = False


def read_task(folder: Path) -> TaskInfo:
    """The dataset.json of ``folder`` (the task folder holding imagesTr/), or an empty TaskInfo."""
    try:
        meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
        raw = meta.get("channel_names") or meta.get("modality") or {}
        channels = {int(k): str(v) for k, v in raw.items()}
    except (OSError, ValueError, AttributeError):
        return TaskInfo()
    upper = {v.strip().upper() for v in channels.values()}
    declared = "CT" if upper == {"CT"} else "MR" if upper and "CT" not in upper else ""
    return TaskInfo(channels, declared, _labels(meta.get("labels")), True)


def _labels(raw) -> dict[int, str]:
    """Label id -> name from MSD ({"1": "edema"}) or nnU-Net v2 ({"edema": 1}, region lists left out)."""
    out: dict[int, str] = {}
    if not isinstance(raw, dict):
        return out
    for k, v in raw.items():
        try:
            if isinstance(v, int) or (isinstance(v, str) and v.isdigit() and not str(k).isdigit()):
                out[int(v)] = str(k)
            else:
                out[int(k)] = str(v)
        except (TypeError, ValueError):
            continue  # nnU-Net v2 region labels ({"whole tumor": [1, 2, 3]}) name no single id
    return dict(sorted(out.items()))
