"""Find again the MLflow run a tracker started in an output folder (its run file)."""

from __future__ import annotations

import json
from pathlib import Path


def read_run_file(path: Path, uri: str | None) -> str | None:
    """The run id a tracker wrote to ``path`` for the store ``uri`` (None if none / another store)."""
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info.get("run_id") if isinstance(info, dict) and info.get("tracking_uri") == uri else None
