"""The pretrained encoder as an MLflow PyTorch model.

Saved in MLflow's ``pt2`` format (a ``torch.export`` graph: it loads with
``mlflow.pytorch.load_model`` without unpickling code and without medmae installed) with
a tensor signature ``(-1, C, X, Y, Z) -> (-1, N, D)``: any batch size, the training crop
size. If the encoder cannot be exported, it falls back to MLflow's pickle format (which
then needs medmae to load). Requirements are pinned explicitly, so nothing is inferred:
no subprocess, no network.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml
from torch import nn

from medmae.atomic import atomic_dir

logger = logging.getLogger(__name__)

MODEL_DIR = "encoder"
EXAMPLE_FILES = ("input_example.json", "serving_input_example.json")


def _requirements() -> list[str]:
    reqs = []
    for name in ("torch", "monai", "medmae"):
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


def _signature(in_shape: Sequence[int], out_shape: Sequence[int]):
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    f32 = np.dtype(np.float32)
    return ModelSignature(inputs=Schema([TensorSpec(f32, (-1, *in_shape))]),
                          outputs=Schema([TensorSpec(f32, (-1, *out_shape))]))


def _drop_input_example(model_dir: Path) -> None:
    """The pt2 export needs an example input; a crop of zeros is no use to anyone (and a
    96^3 one is megabytes of JSON), so it is not kept. The signature records the shapes."""
    for name in EXAMPLE_FILES:
        (model_dir / name).unlink(missing_ok=True)
    mlmodel = model_dir / "MLmodel"
    spec = yaml.safe_load(mlmodel.read_text())
    spec.pop("saved_input_example_info", None)
    mlmodel.write_text(yaml.safe_dump(spec, sort_keys=False))


def save_encoder_model(encoder: nn.Module, folder: str | os.PathLike, in_channels: int,
                       crop_size: Sequence[int]) -> Path:
    """Write ``folder/encoder/`` (an MLflow model of a CPU copy of ``encoder``) atomically.

    encoder: (B, C, X, Y, Z) -> (B, N, D). Returns the model folder, ready for
    ``log_artifacts(..., "encoder")``.
    """
    import mlflow.pytorch

    model = copy.deepcopy(encoder).float().cpu().eval()
    example = torch.zeros(2, in_channels, *crop_size)
    with torch.no_grad():
        out_shape = tuple(model(example).shape[1:])
    sig = _signature(example.shape[1:], out_shape)
    with atomic_dir(folder) as tmp:
        target = tmp / MODEL_DIR
        try:
            mlflow.pytorch.save_model(model, str(target), serialization_format="pt2", input_example=example.numpy(),
                                      signature=sig, pip_requirements=_requirements())
            _drop_input_example(target)
        except Exception as e:  # an op torch.export cannot trace: keep a pickled model instead
            logger.warning("encoder could not be exported as pt2 (%s: %s); saving it pickled", type(e).__name__, e)
            shutil.rmtree(target, ignore_errors=True)
            mlflow.pytorch.save_model(model, str(target), serialization_format="pickle", signature=sig,
                                      pip_requirements=_requirements())
    return Path(folder) / MODEL_DIR
