"""A killed run, resumed, continues exactly as if it had never stopped (CPU, real pieces)."""

import pytest
import torch

from medmae.tracking.metrics_log import read_metrics
from medmae.training import engine
from medmae.training.checkpoint import load_checkpoint
from medmae.training.engine import pretrain
from training_helpers import make_phantom_cache, tiny_config

STEPS, CHECKPOINT_EVERY, KILL_AFTER = 7, 3, 5


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_phantom_cache(tmp_path_factory.mktemp("cache"), n=3, shape=(40, 40, 40))


def _cfg(cache, out, strategy, *extra):
    return tiny_config(cache, out, f"masking.strategy={strategy}", f"train.steps={STEPS}", "train.warmup_steps=2",
                       f"train.checkpoint_every={CHECKPOINT_EVERY}", "train.log_every=2", "train.figure_every=100",
                       "train.lr_per_256=0.05", "data.batch_size=4", "tracking.enabled=false", *extra)


@pytest.mark.parametrize("strategy,extra", [
    ("random", ["train.grad_accum=2"]),
    ("block", ["data.device_resident=true"]),
    ("adversarial", ["masking.adversarial.warmup_steps=0"]),
    # exact scores at steps 0, 2, 4, 6 (EMA teacher), the loss predictor at the others: resumed at step 3
    ("loss_guided", ["masking.loss_guided.alpha_start=0.5", "masking.loss_guided.ema_decay=0.9",
                     "masking.loss_guided.score_every=2"]),
])
def test_kill_and_resume_gives_identical_losses(cache, tmp_path, monkeypatch, strategy, extra):
    straight = pretrain(_cfg(cache, tmp_path / "straight", strategy, *extra))
    assert straight.steps == STEPS and len(straight.losses) == STEPS

    real_step = engine._train_step

    def killed_after(cfg, parts, model, info, precision, step):
        if step == KILL_AFTER:  # KILL_AFTER steps done, the last checkpoint is at step 3
            raise KeyboardInterrupt
        return real_step(cfg, parts, model, info, precision, step)

    monkeypatch.setattr(engine, "_train_step", killed_after)
    with pytest.raises(KeyboardInterrupt):
        pretrain(_cfg(cache, tmp_path / "killed", strategy, *extra))
    killed_log = read_metrics(tmp_path / "killed" / "metrics.jsonl")
    assert [r["step"] for r in killed_log] == [1, 2, 3, 4], "records past the checkpoint were written"
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "latest.pt")["step"] == CHECKPOINT_EVERY

    monkeypatch.setattr(engine, "_train_step", real_step)
    resumed = pretrain(_cfg(cache, tmp_path / "killed", strategy, *extra))
    assert resumed.start_step == CHECKPOINT_EVERY and resumed.steps == STEPS

    # exact equality, step for step: losses, mean-predictor losses, lr, grad norms, masking metrics
    assert resumed.losses == straight.losses[CHECKPOINT_EVERY:]
    assert read_metrics(tmp_path / "killed" / "metrics.jsonl") == read_metrics(tmp_path / "straight" / "metrics.jsonl")
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma = load_checkpoint(tmp_path / "straight" / "checkpoints" / "latest.pt")["masking"]
    mb = load_checkpoint(tmp_path / "killed" / "checkpoints" / "latest.pt")["masking"]
    assert ma.keys() == mb.keys()
    for k in ma:
        if isinstance(ma[k], torch.Tensor):
            assert torch.equal(ma[k], mb[k]), k


def test_checkpoint_holds_everything_to_resume(cache, tmp_path):
    result = pretrain(_cfg(cache, tmp_path / "run", "adversarial", "train.steps=3", "train.warmup_steps=1"))
    state = load_checkpoint(result.checkpoint)  # weights_only=True
    assert state["step"] == 3 and state["world_size"] == 1
    assert set(state) >= {"model", "optimizer", "scaler", "schedule", "masking", "ranks", "config", "preprocess",
                          "mlflow_run_id"}
    assert state["config"]["train"]["steps"] == 3 and state["preprocess"]["crop_to_body"] is True
    assert state["schedule"]["total_steps"] == 3
    assert set(state["ranks"][0]["rng"]) >= {"torch", "numpy", "python", "generator"}
    assert state["ranks"][0]["loader"] == {"epoch": 1, "batch": 1}  # 3 batches of 2 volumes, 3 cases
    assert any(k.startswith("net.") for k in state["masking"])  # the adversarial generator
    # a finished run asked to resume does nothing and reports the checkpoint
    again = pretrain(_cfg(cache, tmp_path / "run", "adversarial", "train.steps=3", "train.warmup_steps=1"))
    assert again.start_step == 3 and again.losses == [] and again.checkpoint is not None
