"""The pretrained encoder as an MLflow PyTorch model.

Saved in MLflow's ``pt2`` format (a ``torch.export`` graph: it loads with
``mlflow.pytorch.load_model`` without unpickling code and without medmae installed) with
a tensor signature ``(-1, C, X, Y, Z) -> (-1, N, D)``: any batch size, the training crop
size. If the encoder cannot be exported, no MLflow model is made: a pickled model would run
code in whoever loads it. Its weights alone are saved instead (``encoder_weights/encoder.pt``,
a state dict that loads with ``torch.load(..., weights_only=True)``, and ``encoder.json``
with its input and output shapes), logged as plain run artifacts, with a warning that says
so. Requirements are pinned explicitly, so nothing is inferred: no subprocess, no network.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import yaml
from torch import nn

from medmae.atomic import atomic_dir

logger = logging.getLogger(__name__)

MODEL_DIR = "encoder"
WEIGHTS_DIR = "encoder_weights"


class SavedEncoder(NamedTuple):
    path: Path
    """``folder/encoder`` (an MLflow model) or ``folder/encoder_weights`` (weights only)."""
    is_model: bool
    """True for an MLflow model (log it as a Logged Model), False for weights only (artifacts)."""
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
    spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    spec.pop("saved_input_example_info", None)
    mlmodel.write_text(yaml.safe_dump(spec, sort_keys=False))


def save_encoder_model(encoder: nn.Module, folder: str | os.PathLike, in_channels: int,
                       crop_size: Sequence[int]) -> SavedEncoder:
    """Write ``folder/encoder/`` (an MLflow pt2 model of a CPU copy of ``encoder``) atomically;
    when ``torch.export`` cannot trace the encoder, ``folder/encoder_weights/`` instead
    (weights only, never a pickled model; see the module docstring).

    encoder: (B, C, X, Y, Z) -> (B, N, D).
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
            exported = True
        except Exception as e:  # an op torch.export cannot trace: weights only, never a pickle
            shutil.rmtree(target, ignore_errors=True)
            weights = _save_weights(model, tmp / WEIGHTS_DIR, tuple(example.shape[1:]), out_shape)
            logger.warning("the encoder could not be exported as an MLflow pt2 model (%s: %s); no MLflow model "
                           "is logged (a pickled one would run code when loaded): its weights alone are saved "
                           "to %s and logged as run artifacts (load with torch.load(..., weights_only=True) "
                           "into medmae's encoder, or use `medmae export`)", type(e).__name__, _first_line(e),
                           Path(folder) / WEIGHTS_DIR / weights.name)
            exported = False
    return SavedEncoder(Path(folder) / (MODEL_DIR if exported else WEIGHTS_DIR), exported)


def _first_line(err: Exception) -> str:
    """torch.export's errors run to pages of advice: their first line says what failed."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), "")


def _save_weights(model: nn.Module, folder: Path, in_shape: tuple, out_shape: tuple) -> Path:
    """``folder/encoder.pt`` (state dict) and ``folder/encoder.json`` (shapes, class, versions)."""
    folder.mkdir(parents=True)
    path = folder / "encoder.pt"
    torch.save(model.state_dict(), path)
    (folder / "encoder.json").write_text(json.dumps({
        "class": f"{type(model).__module__}.{type(model).__qualname__}", "input": ["B", *in_shape],
        "output": ["B", *out_shape], "requirements": _requirements(),
        "load": "torch.load(encoder.pt, weights_only=True) -> state_dict"}, indent=1) + "\n")
    return path


def log_logged_model(client, run_id: str, folder: str | os.PathLike, name: str = MODEL_DIR, step: int = 0) -> str:
    """Upload a saved MLflow model folder as an MLflow 3 Logged Model of run ``run_id``.

    The same steps as ``mlflow.pytorch.log_model`` (a LoggedModel in the run's experiment
    with the run as its source, the run's outputs linking it, status READY), through
    ``client`` alone: the model is not exported a second time, no input example is
    uploaded, and the process-wide tracking URI is left alone. Returns the model id;
    ``models:/<id>`` loads it and ``mlflow.register_model`` registers it.
    """
    import tempfile

    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    run = client.get_run(run_id)
    spec = yaml.safe_load((Path(folder) / "MLmodel").read_text(encoding="utf-8"))
    model = client._create_logged_model(run.info.experiment_id, name=name, source_run_id=run_id,
                                        flavor="pytorch", serialization_format=_serialization(spec))
    try:
        with tempfile.TemporaryDirectory(prefix="medmae-model-") as tmp:
            local = Path(tmp) / name
            shutil.copytree(folder, local)
            spec.update({"artifact_path": model.artifact_location, "model_id": model.model_id, "run_id": run_id})
            (local / "MLmodel").write_text(yaml.safe_dump(spec, sort_keys=False))
            client.log_model_artifacts(model.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=step)])
    except BaseException:
        try:  # the upload is retried as a new model; this one is marked failed when the server allows
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        except Exception:
            pass
        raise
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model.model_id


def _serialization(spec: dict) -> str | None:
    return (spec.get("flavors", {}).get("pytorch") or {}).get("serialization_format")
