"""Loading, overriding, validating and saving configs.

Every config is a tree of :class:`StrictModel` (pydantic, ``extra="forbid"``), so an
unknown key or a wrong type is an error that names the dotted key and the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from medmae.atomic import atomic_write_text

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or override that does not fit its schema."""


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, assignments re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(),
                              use_attribute_docstrings=True)  # docstrings -> the config reference


def _parse_value(text: str) -> Any:
    """Parse an override's right-hand side as YAML (``1e-3`` -> float, ``[1,2]`` -> list)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # YAML 1.1 reads "1e-3" as a string; accept the scientific notation people type.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Apply ``a.b.c=value`` overrides to a nested dict (in place) and return it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.lr_per_256=1e-4)")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r} has an empty key part")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = _parse_value(text)
    return data


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
        else:
            lines.append(f"{source}: key '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_config(
    schema: type[M], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()
) -> M:
    """Read a YAML file (optional), apply dotted overrides, validate against ``schema``.

    Raises :class:`ConfigError` naming the file and every offending key.
    """
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{source}: cannot read config ({e.strerror})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
    apply_overrides(data, overrides)
    if overrides:
        source = f"{source} (with overrides {' '.join(overrides)})"
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None


def to_yaml(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def save_config(config: BaseModel, path: str | os.PathLike) -> Path:
    """Write the fully resolved config as YAML (atomically)."""
    return atomic_write_text(path, to_yaml(config))


def flatten(config: BaseModel | dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (for MLflow params)."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        elif isinstance(v, dict):
            out[key] = "{}"  # an empty mapping (e.g. tracking.tags) is one flat value
        else:
            out[key] = v
    return out
