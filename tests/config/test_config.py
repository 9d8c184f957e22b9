"""Config loading: unknown keys and wrong types name the key and the file; overrides apply."""

import pytest
import yaml

from medmae.config import ConfigError, flatten, load_config, save_config
from medmae.preprocess.config import PreprocessConfig
from medmae.training.pretrain_config import PretrainConfig


def test_defaults_validate():
    cfg = load_config(PretrainConfig)
    assert cfg.masking.ratio == pytest.approx(0.75)
    assert len(cfg.data.crop_size) == 3


def test_yaml_and_dotted_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr_per_256: 0.001\n  steps: 10\nmodel:\n  patch_size: [16, 16, 4]\n")
    cfg = load_config(PretrainConfig, p, ["train.steps=25", "train.warmup_steps=5", "train.lr_per_256=3e-4", "data.crop_size=[64,64,32]"])
    assert cfg.train.steps == 25
    assert cfg.train.lr_per_256 == pytest.approx(3e-4)
    assert cfg.model.patch_size == (16, 16, 4)
    assert cfg.data.crop_size == (64, 64, 32)


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(PretrainConfig, p)
    assert "train.learning_rate" in str(e.value) and "bad.yaml" in str(e.value)


def test_wrong_type_names_key_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  steps: many\n")
    with pytest.raises(ConfigError) as e:
        load_config(PretrainConfig, p)
    assert "train.steps" in str(e.value) and "bad.yaml" in str(e.value)


def test_bad_override_form_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(PretrainConfig, None, ["train.steps"])
    p = tmp_path / "broken.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(PretrainConfig, p)
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(PretrainConfig, tmp_path / "missing.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(PreprocessConfig, None, ["spacing=[2,2,3]", "ct.window=[-200,300]"])
    out = save_config(cfg, tmp_path / "sub" / "config.yaml")
    again = load_config(PreprocessConfig, out)
    assert again == cfg
    assert yaml.safe_load(out.read_text())["spacing"] == [2.0, 2.0, 3.0]
    assert not list((tmp_path / "sub").glob(".*tmp"))  # nothing half-written left


def test_flatten():
    flat = flatten(load_config(PretrainConfig))
    assert "train.lr_per_256" in flat and "model.patch_size" in flat
    assert all(not isinstance(v, dict) for v in flat.values())


@pytest.mark.parametrize("command, old, new", [("pretrain", "base_lr", "lr_per_256"), ("finetune", "lr", "peak_lr")])
def test_a_renamed_learning_rate_key_is_refused_with_its_new_name(tmp_path, command, old, new):
    from medmae.heads.segmentation.config import FinetuneConfig

    schema = PretrainConfig if command == "pretrain" else FinetuneConfig
    p = tmp_path / "old.yaml"
    p.write_text(f"train:\n  {old}: 0.003\n")
    with pytest.raises(ConfigError) as e:
        load_config(schema, p)
    assert str(p) in str(e.value) and f"train.{old} was renamed train.{new}: write train.{new}=0.003" in str(e.value)
    assert getattr(load_config(schema, None, [f"train.{new}=0.003"]).train, new) == 0.003


def test_one_train_base_and_command_experiments():
    """Fine-tuning's train section is the shared RunConfig with its own defaults; each command's
    tracking section names its own experiment unless the config sets one."""
    from medmae.heads.segmentation.config import FinetuneConfig, FinetuneTrainConfig
    from medmae.heads.segmentation.evaluate import EvaluateConfig
    from medmae.training.config import RunConfig, TrainConfig

    assert issubclass(FinetuneTrainConfig, RunConfig) and issubclass(TrainConfig, RunConfig)
    assert (FinetuneTrainConfig().steps, FinetuneTrainConfig().betas) == (2000, (0.9, 0.999))
    assert PretrainConfig().tracking.experiment == "medmae-pretrain"
    assert load_config(FinetuneConfig, None, ["tracking.enabled=false"]).tracking.experiment == "medmae-finetune"
    assert EvaluateConfig().tracking.experiment == "medmae-segment-evaluate"
    assert PretrainConfig().tracking.experiment == "medmae-pretrain"  # the shared default was not changed
    assert load_config(FinetuneConfig, None, ["tracking.experiment=mine"]).tracking.experiment == "mine"
