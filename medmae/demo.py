"""The demo's files: ``medmae demo`` (and ``make demo``) runs the demo study,
``studies/demo.yaml``, which pretrains with ``configs/pretrain_demo_cpu.yaml``.

Each recipe has one home, in the repository: the study file (data, preprocessing, variants,
both heads) and the pretraining config (the CPU recipe, docs/training.md "A CPU recipe").
Code that wants the demo's recipe (benchmarks, tests) reads those files through
:func:`demo_pretrain_config` and :func:`demo_preprocess_overrides`; nothing here repeats them.
The files and the real scans the study reads (``tests/data``) ship with a clone, not with
the installed package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import yaml

from medmae.config.base import ConfigError, load_config
from medmae.training.pretrain_config import PretrainConfig

REPO = Path(__file__).resolve().parent.parent
DEMO_STUDY = REPO / "studies" / "demo.yaml"
DEMO_PRETRAIN = REPO / "configs" / "pretrain_demo_cpu.yaml"


def repo_file(path: Path) -> Path:
    """``path`` when it exists; otherwise a ConfigError saying the demo needs a clone."""
    if not path.is_file():
        raise ConfigError(f"{path}: not found. The demo's study and configs ship with a clone of the medmae "
                          "repository, not with the installed package: run `medmae demo` (or `make demo`) "
                          "from a clone, or `medmae study run FILE` on a study file of your own")
    return path


def demo_pretrain_config(overrides: Sequence[str] = ()) -> PretrainConfig:
    """The demo's pretraining config (configs/pretrain_demo_cpu.yaml) with ``overrides``."""
    return load_config(PretrainConfig, repo_file(DEMO_PRETRAIN), overrides)


def demo_preprocess_overrides() -> list[str]:
    """The demo study's preprocessing overrides (``preprocess.overrides`` of studies/demo.yaml)."""
    study = yaml.safe_load(repo_file(DEMO_STUDY).read_text(encoding="utf-8"))
    return list(study["preprocess"]["overrides"])
