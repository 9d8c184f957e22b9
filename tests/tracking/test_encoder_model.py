"""An encoder that torch.export cannot trace is never logged as a pickled MLflow model: its
weights alone are saved and logged as plain artifacts, and the warning says so."""

import json
import logging
from pathlib import Path

import torch
from torch import nn

from medmae.config.base import load_config
from medmae.config.schema import PretrainConfig
from medmae.tracking.encoder_model import WEIGHTS_DIR, save_encoder_model
from medmae.tracking.mlflow_run import Tracker
from medmae.training import engine


class DataDependentEncoder(nn.Module):
    """(B, 1, 8, 8, 8) -> (B, 8, 16); a branch on the data's values, which torch.export refuses."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(64, 16)

    def forward(self, x):
        tokens = self.proj(x.reshape(x.shape[0], 8, 64))
        return tokens * 2 if tokens.sum() > 0 else tokens


class Recorder(Tracker):
    def __init__(self):
        self.calls = []

    def log_model(self, folder, name, step=0):
        self.calls.append(("model", Path(folder).name))

    def log_artifacts(self, folder, artifact_path=None):
        self.calls.append(("artifacts", Path(folder).name, artifact_path))


def test_unexportable_encoder_is_logged_as_weights_only(tmp_path, caplog):
    torch.manual_seed(0)
    encoder = DataDependentEncoder()
    caplog.set_level(logging.WARNING, logger="medmae.tracking.encoder_model")
    saved = save_encoder_model(encoder, tmp_path / "mlflow_model", 1, (8, 8, 8))
    assert not saved.is_model and saved.path == tmp_path / "mlflow_model" / WEIGHTS_DIR
    assert sorted(p.name for p in (tmp_path / "mlflow_model").rglob("*")) == sorted([WEIGHTS_DIR, "encoder.json", "encoder.pt"])
    state = torch.load(saved.path / "encoder.pt", weights_only=True)  # tensors only: nothing to unpickle
    assert all(torch.equal(state[k], v) for k, v in encoder.state_dict().items())
    meta = json.loads((saved.path / "encoder.json").read_text())
    assert meta["input"] == ["B", 1, 8, 8, 8] and meta["output"] == ["B", 8, 16]
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "medmae.tracking.encoder_model"]
    assert "could not be exported" in warning and "no MLflow model" in warning and "weights_only=True" in warning

    # the engine logs those weights as plain artifacts, not as a model
    cfg = load_config(PretrainConfig, None, ["tracking.log_checkpoint=false", "model.in_channels=1",
                                             "data.crop_size=[8,8,8]", f"train.out_dir={tmp_path / 'run'}"])
    result = engine.PretrainResult(out_dir=tmp_path / "run", steps=3, start_step=0)
    tracker = Recorder()
    engine._log_final(tracker, cfg, nn.ModuleDict({"encoder": encoder}), result)
    assert tracker.calls == [("artifacts", WEIGHTS_DIR, WEIGHTS_DIR)]
