"""The configuration reference (docs/config.md), generated from the config schemas.

Every key of every command's config with its type, default and the docstring written under
it in the schema, so the reference cannot drift from the code: ``medmae config reference
--out docs/config.md`` rewrites it and ``--check`` (run by the tests) fails when it is stale.
"""

from __future__ import annotations

import importlib
import json
import types
import typing
from enum import Enum

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

# (command, module, class): the top-level config of each configurable command.
CONFIGS: list[tuple[str, str, str]] = [
    ("preprocess", "medmae.preprocess.config", "PreprocessConfig"),
    ("pretrain", "medmae.training.pretrain_config", "PretrainConfig"),
    ("anomaly", "medmae.heads.anomaly.config", "AnomalyConfig"),
    ("finetune", "medmae.heads.segmentation.config", "FinetuneConfig"),
    ("segment evaluate", "medmae.heads.segmentation.evaluate", "EvaluateConfig"),
]

HEADER = """# Configuration reference

Generated from the config schemas by `medmae config reference --out docs/config.md`; a test
fails when this page is out of date. Every configurable command takes `--config FILE` plus
dotted `key=value` overrides (e.g. `train.steps=500 model.patch_size=[8,8,8]`); an unknown
key or a wrong type is an error naming the key and the file.
"""


def _type_name(annotation) -> str:
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else _type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if field.default is PydanticUndefined:
        return "required" if field.default_factory is None else "`" + _value(field.default_factory()) + "`"
    return "`" + _value(field.default) + "`"


def _value(value) -> str:
    if isinstance(value, BaseModel):
        return "{...}"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, default=str)


def _section_model(annotation) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = _section_model(field.annotation)
        if sub is not None:
            rows += _rows(sub, key + ".")
            continue
        doc = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {doc} |")
    return rows


def render() -> str:
    """The whole reference page as Markdown."""
    parts = [HEADER]
    for command, module, cls in CONFIGS:
        model = getattr(importlib.import_module(module), cls)
        parts.append(f"\n## `medmae {command}`\n\n`{module}.{cls}`\n\n| key | type | default | meaning |\n"
                     "|---|---|---|---|\n" + "\n".join(_rows(model)) + "\n")
    return "".join(parts)
