"""Config loading: unknown keys and wrong types name the key and the file; overrides apply."""

import pytest
import yaml

from medmae.config import ConfigError, flatten, load_config, save_config
from medmae.config.schema import PretrainConfig, PreprocessConfig


def test_defaults_validate():
    cfg = load_config(PretrainConfig)
    assert cfg.masking.ratio == pytest.approx(0.75)
    assert len(cfg.data.crop_size) == 3


def test_yaml_and_dotted_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  base_lr: 0.001\n  steps: 10\nmodel:\n  patch_size: [16, 16, 4]\n")
    cfg = load_config(PretrainConfig, p, ["train.steps=25", "train.warmup_steps=5", "train.base_lr=3e-4", "data.crop_size=[64,64,32]"])
    assert cfg.train.steps == 25
    assert cfg.train.base_lr == pytest.approx(3e-4)
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
    assert "train.base_lr" in flat and "model.patch_size" in flat
    assert all(not isinstance(v, dict) for v in flat.values())
