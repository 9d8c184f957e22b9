"""Typed, validated configuration: YAML files + dotted overrides -> pydantic models."""

from medmae.config.base import ConfigError, StrictModel, load_config, save_config, flatten

__all__ = ["ConfigError", "StrictModel", "load_config", "save_config", "flatten"]
