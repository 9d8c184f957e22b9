"""`medmae preprocess MANIFEST --out CACHE [--config FILE] [--workers N] [KEY=VALUE ...]`."""

from __future__ import annotations

from pathlib import Path

import yaml

from medmae.cli.main import main
from medmae.config.base import load_config
from medmae.preprocess.cache import read_index
from medmae.io.manifest import Case
from medmae.preprocess.config import PreprocessConfig

from pp_helpers import mr_case, truncated_copy, MR

REPO = Path(__file__).resolve().parents[2]


def test_cli_runs_with_overrides_and_prints_summary(tmp_path, manifest_factory, capsys):
    bad = truncated_copy(MR, tmp_path / "cut.nii.gz")
    manifest = manifest_factory([mr_case(), Case("cut", [str(bad)], "MR")])
    out = tmp_path / "cache"
    argv = ["preprocess", str(manifest), "--out", str(out), "--workers", "0", "--no-progress",
            "spacing=[3,3,3]", "priors.supervoxels=32"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "done 1, skipped 0 (unchanged), bad 1" in text
    assert f"bad cut: {bad}:" in text
    assert [r["case_id"] for r in read_index(out)] == ["mr"]
    cfg = load_config(PreprocessConfig, out / "config.yaml")
    assert cfg.spacing == (3.0, 3.0, 3.0) and cfg.priors.supervoxels == 32 and cfg.workers == 0

    assert main(argv) == 0
    assert "done 0, skipped 1 (unchanged), bad 1" in capsys.readouterr().out


def test_cli_errors_are_clean(tmp_path, manifest_factory, capsys):
    manifest = manifest_factory([mr_case()])
    assert main(["preprocess", str(manifest), "--out", str(tmp_path / "c"), "nonsense.key=1"]) == 2
    assert "unknown key 'nonsense'" in capsys.readouterr().err
    assert main(["preprocess", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "c")]) == 2
    assert "cannot read manifest" in capsys.readouterr().err
    only_bad = manifest_factory([Case("x", [str(tmp_path / "none.nii.gz")], "MR")], name="bad.csv")
    assert main(["preprocess", str(only_bad), "--out", str(tmp_path / "c2"), "-j", "0", "--no-progress"]) == 1


def test_example_config_is_valid_and_documents_every_key():
    path = REPO / "configs" / "preprocess.yaml"
    cfg = load_config(PreprocessConfig, path)
    assert cfg == PreprocessConfig()  # the example spells out the defaults
    data = yaml.safe_load(path.read_text())
    assert set(data) == set(PreprocessConfig.model_fields)
