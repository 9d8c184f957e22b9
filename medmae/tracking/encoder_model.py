"""The pretrained encoder as an MLflow PyTorch model (loads back with ``mlflow.pytorch.load_model``)."""

from __future__ import annotations

import copy
import os
from importlib import metadata
from pathlib import Path

from torch import nn

from medmae.atomic import atomic_dir

MODEL_DIR = "encoder"


def _requirements() -> list[str]:
    reqs = []
    for name in ("torch", "monai", "medmae"):
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


def save_encoder_model(encoder: nn.Module, folder: str | os.PathLike) -> Path:
    """Write ``folder/encoder/`` (an MLflow model of a CPU copy of ``encoder``) atomically.

    Requirements are pinned explicitly, so nothing is inferred (no subprocess, no network).
    Returns the model folder, ready for ``log_artifacts(..., "encoder")``.
    """
    import mlflow.pytorch

    model = copy.deepcopy(encoder).cpu().eval()
    with atomic_dir(folder) as tmp:
        mlflow.pytorch.save_model(model, str(tmp / MODEL_DIR), pip_requirements=_requirements())
    return Path(folder) / MODEL_DIR
