"""`medmae pretrain` end to end on a phantom cache: the model learns, outputs are where it says."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medmae.cli.main import main
from medmae.config.base import load_config
from medmae.training.pretrain_config import PretrainConfig
from medmae.tracking.metrics_log import read_metrics
from training_helpers import TINY, make_phantom_cache

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STEPS = 100


@pytest.mark.parametrize("name", ["pretrain_demo_cpu.yaml", "pretrain_vitb_gpu.yaml", "anomaly_pretrain_brain_cpu.yaml",
                                  "anomaly_pretrain_brain_gpu.yaml"])
def test_example_configs_are_valid(name):
    cfg = load_config(PretrainConfig, CONFIGS / name)
    assert cfg.train.warmup_steps < cfg.train.steps


def test_pretrain_cli_learns_well_below_the_mean_predictor_loss(tmp_path, monkeypatch, capsys):
    cache = make_phantom_cache(tmp_path / "cache", n=4, shape=(48, 48, 48))
    monkeypatch.chdir(tmp_path)  # the default MLflow store is ./mlruns
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # Raw-intensity targets: the baseline predicts each crop's visible mean, so beating it
    # means predicting where tissue boundaries and intensities lie.
    code = main(["pretrain", "--config", str(CONFIGS / "pretrain_demo_cpu.yaml"), *TINY,
                 f"data.cache_dir={cache}", "train.out_dir=run", f"train.steps={STEPS}", "train.lr_per_256=0.25",
                 "train.warmup_steps=10", "train.min_lr=0", "train.log_every=10", "train.figure_every=50",
                 "train.checkpoint_every=50", "data.priors=[body]", "model.norm_pix_loss=false",
                 "tracking.log_model=false", "tracking.log_checkpoint=false"])
    assert code == 0
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    first = np.mean([r["loss"] for r in records[:10]])
    last = np.mean([r["loss"] for r in records[-20:]])
    baseline = np.mean([r["mean_predictor_loss"] for r in records[-20:]])
    # Measured on this cache: first ~1.75, last ~0.95, baseline ~1.7 (ratio ~0.57).
    assert last < 0.7 * baseline, (first, last, baseline)
    assert last < 0.7 * first

    figures = sorted((tmp_path / "run" / "figures").glob("*.png"))
    assert [f.name for f in figures] == ["step_0000050.png", "step_0000100.png"]
    with Image.open(figures[-1]) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 600

    saved = load_config(PretrainConfig, tmp_path / "run" / "config.yaml")
    assert saved.train.steps == STEPS and saved.data.cache_dir == str(cache)
    out = capsys.readouterr().out
    assert f"checkpoint      {tmp_path / 'run' / 'checkpoints' / 'step_0000100.pt'}" in out
    assert f"figures         {tmp_path / 'run' / 'figures'}" in out
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}" in out
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()


def test_pretrain_cli_rejects_a_folder_that_is_not_a_cache(tmp_path, capsys):
    assert main(["pretrain", f"data.cache_dir={tmp_path}"]) == 2
    assert "not a medmae cache" in capsys.readouterr().err
