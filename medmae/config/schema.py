"""Moved: ``PretrainConfig`` is in medmae.training.pretrain_config, ``PreprocessConfig`` in
medmae.preprocess.config (config/ holds only the loader and override machinery, so it imports
no stage). Resolved lazily, so this module imports nothing upward."""

from __future__ import annotations

import importlib
import warnings

_MOVED = {"PretrainConfig": "medmae.training.pretrain_config", "PreprocessConfig": "medmae.preprocess.config"}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module 'medmae.config.schema' has no attribute {name!r}")
    warnings.warn(f"medmae.config.schema.{name} moved to {_MOVED[name]}.{name}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(_MOVED[name]), name)
