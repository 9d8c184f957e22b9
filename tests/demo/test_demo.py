"""`medmae demo` is the demo study; the demo's recipe lives in its files only."""

from pathlib import Path

import yaml

from medmae.cli.main import main
from medmae import demo
from medmae.config.base import flatten, load_config
from medmae.training.pretrain_config import PretrainConfig

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_the_demo_study(monkeypatch, tmp_path, capsys):
    from medmae.studies import runner

    called = {}

    def run_study(study, out, uri):
        called.update(study=study, out=out, uri=uri)
        raise SystemExit(0)  # the study itself is tested in tests/studies

    monkeypatch.setattr(runner, "run_study", run_study)
    try:
        main(["demo", "--out", str(tmp_path / "o"), "--tracking-uri", "sqlite:///x.db"])
    except SystemExit:
        pass
    assert Path(called["study"]) == REPO / "studies" / "demo.yaml"
    assert called["out"] == str(tmp_path / "o") and called["uri"] == "sqlite:///x.db"


def test_the_demo_recipe_has_one_home(monkeypatch, tmp_path, capsys):
    """The study pretrains with configs/pretrain_demo_cpu.yaml, which demo_pretrain_config reads;
    outside a clone the command says what it needs."""
    study = yaml.safe_load((REPO / "studies" / "demo.yaml").read_text())
    assert (REPO / "studies" / study["pretrain"]["config"]).resolve() == demo.DEMO_PRETRAIN.resolve()
    assert demo.demo_preprocess_overrides() == study["preprocess"]["overrides"]
    assert flatten(demo.demo_pretrain_config()) == flatten(load_config(PretrainConfig, demo.DEMO_PRETRAIN))
    assert not hasattr(demo, "run_demo")  # no second copy of the recipe in code

    monkeypatch.setattr(demo, "DEMO_STUDY", tmp_path / "missing.yaml")
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "missing.yaml: not found" in err and "clone" in err, err
