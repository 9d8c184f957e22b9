"""The manifest: one row per case, the contract between `data scan`, `synth` and `preprocess`.

Columns: case_id, image, modality, sequence, label, anatomy, split, sha256.
``image`` holds one path, or several joined by ``;`` (multi-contrast MR, one channel
each). Relative paths are relative to the manifest's folder. ``sha256`` is the digest
over all source files of the case (images, label, anatomy). No patient identity goes
into any column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from medmae.atomic import atomic_write_text
from medmae.io.paths import split_series_path

COLUMNS = ("case_id", "image", "modality", "sequence", "label", "anatomy", "split", "sha256")
MODALITIES = ("CT", "MR")


@dataclass
class Case:
    case_id: str
    image: list[str]
    modality: str
    sequence: str = ""
    label: str = ""
    anatomy: str = ""
    split: str = "train"
    sha256: str = ""

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"case {self.case_id}: modality must be one of {MODALITIES}, got {self.modality!r}")
        if not self.image:
            raise ValueError(f"case {self.case_id}: no image path")

    def resolved(self, root: str | os.PathLike) -> "Case":
        """A copy with every path made absolute against ``root`` (the manifest's folder)."""
        r = Path(root)
        fix = lambda p: str((r / p).resolve()) if p else ""  # noqa: E731
        return Case(**{**asdict(self), "image": [fix(p) for p in self.image],
                       "label": fix(self.label), "anatomy": fix(self.anatomy)})

    def source_paths(self) -> list[Path]:
        """Files and folders the case is read from (``folder#key`` series paths give the folder)."""
        return [split_series_path(p)[0] for p in [*self.image, self.label, self.anatomy] if p]


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def sha256_of(paths: Iterable[str | os.PathLike], chunk: int = 1 << 20) -> str:
    """One digest over the bytes of every file (folders: every file inside, sorted)."""
    h = hashlib.sha256()
    for p in paths:
        for f in _files_under(Path(p)):
            with open(f, "rb") as fh:
                while block := fh.read(chunk):
                    h.update(block)
    return h.hexdigest()


def write_manifest(cases: Iterable[Case], path: str | os.PathLike) -> Path:
    """Write cases as CSV (atomically). Paths are stored as given."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for c in cases:
        row = asdict(c)
        row["image"] = ";".join(c.image)
        w.writerow(row)
    return atomic_write_text(path, buf.getvalue())


def read_manifest(path: str | os.PathLike, resolve: bool = True) -> list[Case]:
    """Read a manifest; with ``resolve`` every path is made absolute against its folder."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("case_id", "image", "modality") if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: manifest lacks column(s) {', '.join(missing)}")
            rows = list(reader)
    except OSError as e:
        raise ValueError(f"{path}: cannot read manifest ({e.strerror})") from None
    known = {f.name for f in fields(Case)}
    cases, seen = [], set()
    for i, row in enumerate(rows, start=2):
        data = {k: (v or "") for k, v in row.items() if k in known}
        data["image"] = [p for p in data.get("image", "").split(";") if p]
        data["split"] = data.get("split") or "train"
        try:
            case = Case(**data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}, line {i}: {e}") from None
        if case.case_id in seen:
            raise ValueError(f"{path}, line {i}: duplicate case_id {case.case_id!r}")
        seen.add(case.case_id)
        cases.append(case.resolved(path.parent) if resolve else case)
    return cases
