"""Finished steps on disk: ``OUT/steps/<kind>-<name>-<key12>/result.json``.

A step's key is the sha256 of its kind, the kind's code version
(:data:`medmae.studies.code.CODE_VERSIONS`), its resolved config and its dependencies' keys
(the data step's config holds the data digest), so a step is reused exactly when nothing
it depends on changed, the code's results included. ``result.json`` is written last and
atomically, with medmae's version and the source digest of the kind's modules: a reused
step made by other code is reported (:func:`load_result`). A step killed midway has no
``result.json`` and runs again (pretraining then resumes from its own checkpoint).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medmae.atomic import atomic_write_text
from medmae.studies.code import code_drift, code_record, code_version

log = logging.getLogger(__name__)

RESULT = "result.json"


@dataclass
class Step:
    """One unit of a study: ``kind`` says how to run it, ``config`` what it runs on."""

    kind: str
    name: str
    config: dict[str, Any]
    deps: list[str] = field(default_factory=list)
    """Ids (``kind-name``) of the steps whose results this one reads."""
    labels: dict[str, Any] = field(default_factory=dict)
    """What the summary table groups by (variant, seed, ...); not part of the key."""
    tracking: dict[str, Any] = field(default_factory=dict)
    """The ``tracking.*`` settings the study's file gave this step's MLflow runs (system metrics,
    logged model, ...); not part of the key: they do not change what is computed."""

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.name}"


def step_key(step: Step, dep_keys: list[str]) -> str:
    blob = json.dumps({"kind": step.kind, "code_version": code_version(step.kind), "config": step.config,
                       "deps": dep_keys}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def step_dir(out: Path, step: Step, key: str) -> Path:
    return out / "steps" / f"{step.id}-{key[:12]}"


def load_result(folder: Path, key: str, kind: str | None = None) -> dict[str, Any] | None:
    """The stored result when it was made with this key, else None. With ``kind``, a result
    whose recorded source digest differs from the code's now is logged as a warning (and
    returned: the key, code version included, says it is still valid)."""
    try:
        result = json.loads((folder / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if result.get("key") != key:
        return None
    drift = code_drift(result.get("code"), kind) if kind else None
    if drift:
        log.warning("study step %s reused, but %s. If that changes its results, raise "
                    "CODE_VERSIONS[%r] in medmae/studies/code.py (or delete %s) to run it again",
                    folder.name, drift, kind, folder)
    return result


def save_result(folder: Path, key: str, result: dict[str, Any], kind: str | None = None) -> dict[str, Any]:
    result = {**result, "key": key, **({"code": code_record(kind)} if kind else {})}
    atomic_write_text(folder / RESULT, json.dumps(result, indent=1, sort_keys=True, default=str))
    return result
