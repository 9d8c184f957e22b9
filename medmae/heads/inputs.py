"""What a head's INPUTS name, as manifest cases: scan files, DICOM series folders, manifests.

``medmae anomaly score`` and ``medmae segment`` take any mix of them. A scan file or a
DICOM folder becomes one case per image (a folder holding several series gives one per
series, as ``data scan`` finds them); a manifest (``.csv``) gives its rows. Inputs that
cannot be read go to the bad list with the reason, so a batch goes on. Every case id obeys
:mod:`medmae.io.case_id` (one path component, bounded length): a manifest row with another is
refused with its reason, and ids built from file names are made safe, so no output folder
named after a case escapes the command's output folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from medmae.io.case_id import MAX_CASE_ID, safe_case_id
from medmae.io.errors import ScanError
from medmae.io.manifest import Case, read_manifest_rows
from medmae.io.pairing import Candidate
from medmae.io.paths import stem
from medmae.io.scan import build_case, scan_folder

Problem = tuple[str, str]


def _safe_id(path: Path) -> str:
    return safe_case_id(stem(path), fallback="scan")


def _from_path(path: Path) -> tuple[list[Case], list[Problem]]:
    if path.is_dir():
        cases, bad = scan_folder(path, progress=False)
        bad = [(str(p), q) for p, q in bad]
        if not cases and not bad:
            bad.append((str(path), "no scan found in this folder"))
        return cases, bad
    return [build_case(Candidate(case_id=_safe_id(path), images=[str(path)], names=[path.name]))], []


def cases_from_inputs(inputs: list[str | os.PathLike]) -> tuple[list[Case], list[Problem]]:
    """Every case the inputs name, with absolute paths, and the inputs that failed.

    Returns (cases in input order, bad list of (path, problem)). Case ids are made unique
    by a numeric suffix when two inputs share a file name.
    """
    cases: list[Case] = []
    bad: list[Problem] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        try:
            if not path.exists():
                raise ScanError(path, "no such file or folder")
            if path.is_file() and path.suffix.lower() == ".csv":
                found, refused = read_manifest_rows(path)
                bad.extend((str(path), f"manifest line {line} refused: {why}") for line, _, why in refused)
            else:
                found, problems = _from_path(path.resolve())
                bad.extend(problems)
            cases.extend(found)
        except ScanError as e:
            bad.append((str(e.path), e.problem))
        except ValueError as e:  # a manifest that cannot be read at all: this input's problem
            bad.append((str(path), str(e).removeprefix(f"{path}: ")))
    seen: dict[str, int] = {}
    for case in cases:
        n = seen.get(case.case_id, 0)
        seen[case.case_id] = n + 1
        if n:
            suffix = f"-{n + 1}"
            case.case_id = case.case_id[: MAX_CASE_ID - len(suffix)] + suffix
    return cases, bad
