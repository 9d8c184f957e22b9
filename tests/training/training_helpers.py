"""Phantom caches and tiny configs for the engine tests.

The cache is written with ``medmae.preprocess.cache.write_case`` from ``medmae.synth`` phantoms:
each phantom is cropped to its body's bounding box, z-scored inside the body (as
``medmae preprocess`` does for MR) and stored with its body and anatomy maps.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch

from medmae.config.base import load_config
from medmae.training.pretrain_config import PretrainConfig
from medmae.preprocess.cache import INDEX, write_case
from medmae.synth.phantom import make_phantom


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: faster than two for tiny models on a shared 2-core machine (no
    OpenMP barrier waits between tiny ops), and steadier timings."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_phantom_cache(root: Path, n: int = 4, shape: Sequence[int] = (48, 48, 48), kind: str = "brain",
                       seed: int = 0) -> Path:
    """``n`` phantom cases ``phantom_000``.. in a cache at ``root`` (split "train"); returns root."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        ph = make_phantom(kind, rng, shape=shape)
        body = ph.anatomy > 0
        lo = np.maximum(np.argwhere(body).min(0) - 2, 0)
        hi = np.argwhere(body).max(0) + 3
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        image = ph.image[box].astype(np.float32)
        body, anatomy = body[box], ph.anatomy[box]
        inside = image[body]
        image = (image - inside.mean()) / inside.std()
        case_id = f"phantom_{i:03d}"
        write_case(root, case_id, image[None], {"body": body.astype(np.uint8), "anatomy": anatomy},
                   {"affine": ph.affine.tolist(), "modality": ph.modality})
        rows.append({"case_id": case_id, "split": "train", "modality": ph.modality})
    with open(root / INDEX, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["case_id", "split", "modality"])
        w.writeheader()
        w.writerows(rows)
    (root / "config.yaml").write_text("spacing: [4.0, 4.0, 4.0]\ncrop_to_body: true\n")
    (root / "fingerprint.json").write_text('{"n_cases": %d, "modalities": ["MR"]}\n' % n)
    return root


TINY = [
    "data.crop_size=[32,32,32]", "data.crops_per_volume=2", "data.workers=0",
    "model.size=custom", "model.patch_size=[8,8,8]", "model.embed_dim=48", "model.depth=2",
    "model.num_heads=3", "model.decoder_embed_dim=32", "model.decoder_depth=1", "model.decoder_num_heads=2",
    "tracking.system_metrics=false",
]


def tiny_config(cache: Path, out_dir: Path, *overrides: str) -> PretrainConfig:
    """A tiny model on 32^3 crops of the phantom cache; ``overrides`` win."""
    return load_config(PretrainConfig, None, [*TINY, f"data.cache_dir={cache}", f"train.out_dir={out_dir}",
                                              *overrides])
