"""docs/config.md is generated from the schemas and must be current."""

from __future__ import annotations

from pathlib import Path

from medmae.cli.main import main
from medmae.config.base import flatten
from medmae.config.reference import render
from medmae.training.pretrain_config import PretrainConfig
from medmae.preprocess.config import PreprocessConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_reference_is_current():
    assert main(["config", "reference", "--out", str(DOC), "--check"]) == 0, (
        "docs/config.md is stale: run `medmae config reference --out docs/config.md`")


def test_every_key_is_listed_with_its_default_and_docstring():
    text = render()
    for prefix, cfg in (("pretrain", PretrainConfig()), ("preprocess", PreprocessConfig())):
        for key in flatten(cfg):
            assert f"| `{key}` |" in text, f"{prefix}: {key}"
    assert "| `train.steps` | int | `1000` | Optimizer steps in the whole run" in text


def test_check_fails_on_a_stale_page(tmp_path, capsys):
    stale = tmp_path / "config.md"
    stale.write_text(render().replace("train.steps", "train.stepz"))
    assert main(["config", "reference", "--out", str(stale), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["config", "reference", "--out", str(stale)]) == 0
    assert stale.read_text() == render()
