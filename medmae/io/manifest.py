"""The manifest: one row per case, the contract between `data scan`, `synth` and `preprocess`.

Columns: case_id, image, modality, sequence, label, anatomy, mask, split, sha256.
``image`` holds one path as is, or a JSON list of paths (``["a t1.nii.gz", "b;t2.nii"]``)
when there are several channels or the one path could be mistaken for a list (it holds
``;`` or starts with ``[``). The CSV writer quotes fields holding commas, quotes or
newlines, so any file name survives. Old manifests with ``;``-joined image lists are still
read. ``sequence`` holds one MR sequence keyword per channel, comma-joined (``flair,t1,t2``).
``mask`` is an optional user-supplied body/brain mask (used instead of the computed body
mask). Relative paths are relative to the manifest's folder. ``sha256`` is the digest
over all source files of the case. No patient identity goes into any column.

Every case id, from whatever manifest, obeys :mod:`medmae.io.case_id` (one path component,
bounded length): :class:`Case` refuses any other. :func:`read_manifest_rows` refuses such a
row with its reason and keeps the others; :func:`read_manifest` refuses the manifest. A
manifest saved with a UTF-8 byte-order mark (Excel) is read as any other.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from medmae.atomic import atomic_write_text
from medmae.io.case_id import case_id_problem
from medmae.io.paths import split_series_path

COLUMNS = ("case_id", "image", "modality", "sequence", "label", "anatomy", "mask", "split", "sha256")
MODALITIES = ("CT", "MR")


@dataclass
class Case:
    case_id: str
    image: list[str]
    modality: str
    sequence: str = ""
    label: str = ""
    anatomy: str = ""
    mask: str = ""
    split: str = "train"
    sha256: str = ""

    def __post_init__(self):
        problem = case_id_problem(self.case_id)
        if problem:
            raise ValueError(problem)
        if self.modality not in MODALITIES:
            raise ValueError(f"case {self.case_id}: modality must be one of {MODALITIES}, got {self.modality!r}")
        if not self.image:
            raise ValueError(f"case {self.case_id}: no image path")

    def resolved(self, root: str | os.PathLike) -> "Case":
        """A copy with every path made absolute against ``root`` (the manifest's folder)."""
        r = Path(root)
        fix = lambda p: str((r / p).resolve()) if p else ""  # noqa: E731
        return Case(**{**asdict(self), "image": [fix(p) for p in self.image],
                       "label": fix(self.label), "anatomy": fix(self.anatomy), "mask": fix(self.mask)})

    def source_paths(self) -> list[Path]:
        """Files and folders the case is read from (``folder#key`` series paths give the folder)."""
        paths = [split_series_path(p)[0] for p in [*self.image, self.label, self.anatomy, self.mask] if p]
        return list(dict.fromkeys(paths))  # the channels of one 4D file ('x.nii.gz#c0', '#c1'): that file once

    @property
    def sequences(self) -> list[str]:
        """One sequence keyword per channel ('' where unknown); [] when none is known."""
        return self.sequence.split(",") if self.sequence else []


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


def encode_paths(paths: list[str]) -> str:
    """The ``image`` field: one plain path, or a JSON list (see the module docstring)."""
    if len(paths) == 1 and ";" not in paths[0] and not paths[0].startswith("["):
        return paths[0]
    return json.dumps(list(paths), ensure_ascii=False)


def decode_paths(text: str) -> list[str]:
    """Inverse of :func:`encode_paths`; an old ``a;b`` list is split on ``;``."""
    if text.startswith("["):
        try:
            paths = json.loads(text)
        except ValueError:
            raise ValueError(f"image field starts with '[' but is not a JSON list of paths: {text[:80]!r}") from None
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ValueError(f"image field is not a JSON list of paths: {text[:80]!r}")
        return [p for p in paths if p]
    return [p for p in text.split(";") if p]


def write_manifest(cases: Iterable[Case], path: str | os.PathLike) -> Path:
    """Write cases as CSV (atomically). Paths are stored as given."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for c in cases:
        row = asdict(c)
        row["image"] = encode_paths(c.image)
        w.writerow(row)
    return atomic_write_text(path, buf.getvalue())


Problem = tuple[int, str, str]
"""A refused manifest row: (line number, case_id as written, reason)."""


def read_manifest_rows(path: str | os.PathLike, resolve: bool = True) -> tuple[list[Case], list[Problem]]:
    """Read a manifest keeping every valid row; a row that is not (bad case id, unknown
    modality, no image, repeated case id) is refused with its reason, the rest go on.

    Returns (cases, refused rows as (line, case_id, reason)). Raises ValueError naming the
    file when the manifest itself cannot be read or lacks a required column.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("case_id", "image", "modality") if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: manifest lacks column(s) {', '.join(missing)}")
            rows = list(reader)
    except OSError as e:
        raise ValueError(f"{path}: cannot read manifest ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: manifest is not UTF-8 text (byte {e.start}: {e.reason})") from None
    known = {f.name for f in fields(Case)}
    cases, refused, seen = [], [], set()
    for i, row in enumerate(rows, start=2):
        data = {k: (v or "") for k, v in row.items() if k in known}
        try:
            data["image"] = decode_paths(data.get("image", ""))
            data["split"] = data.get("split") or "train"
            case = Case(**data)
            if case.case_id in seen:
                raise ValueError(f"duplicate case_id {case.case_id!r}")
        except (TypeError, ValueError) as e:
            refused.append((i, str(data.get("case_id", "")), str(e)))
            continue
        seen.add(case.case_id)
        cases.append(case.resolved(path.parent) if resolve else case)
    return cases, refused


def read_manifest(path: str | os.PathLike, resolve: bool = True) -> list[Case]:
    """Read a manifest; with ``resolve`` every path is made absolute against its folder.

    Raises ValueError naming the file and line of the first refused row.
    """
    cases, refused = read_manifest_rows(path, resolve)
    if refused:
        line, _, reason = refused[0]
        more = f" (and {len(refused) - 1} more refused row(s))" if len(refused) > 1 else ""
        raise ValueError(f"{path}, line {line}: {reason}{more}")
    return cases
