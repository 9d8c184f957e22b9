"""The local metrics log, ``OUT/metrics.jsonl``: one JSON object per step, always written.

It is the run's record whatever happens to the tracking server. A resumed run first drops
the records past the checkpoint it restarts from, so the log reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from medmae.atomic import atomic_write_text


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


class MetricsLog:
    """Append-only JSON-lines log, flushed after every :meth:`write`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = None

    def truncate_after(self, step: int) -> int:
        """Drop records with ``record["step"] > step`` (and a torn last line); returns how many kept."""
        self.close()
        records = read_metrics(self.path) if self.path.exists() else []
        kept = [r for r in records if r.get("step", -1) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        return len(kept)

    def write(self, records: list[Mapping[str, Any]]) -> None:
        if not records:
            return
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")
        for r in records:
            self._file.write(json.dumps({k: _finite_or_none(v) for k, v in r.items()}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a metrics log; a torn (half-written) last line is ignored."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
