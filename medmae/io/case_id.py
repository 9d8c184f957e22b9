"""Case ids: the one rule every manifest reader applies, and the check that an output stays home.

A case id names a folder (``cache/cases/<id>``, ``<out>/<id>`` of the heads), so it must be
one plain path component: not empty, at most :data:`MAX_CASE_ID` characters, no ``/`` or
``\\``, not ``.`` or ``..``, not starting with ``.`` (temporaries and hidden files start
so), no control characters, valid UTF-8. :func:`case_id_problem` says what is wrong;
:func:`safe_case_id` builds a valid id from any text (a file name); :func:`inside` checks
that an output path resolves inside its output folder before anything is replaced.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

MAX_CASE_ID = 128
"""Longest case id: temporaries add ~16 characters and a file name may hold 255 bytes."""
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def case_id_problem(case_id: str) -> str:
    """'' when ``case_id`` is a valid id, else why not (one short sentence)."""
    if not case_id:
        return "empty case_id"
    shown = repr(case_id[:60] + ("..." if len(case_id) > 60 else ""))
    if "/" in case_id or "\\" in case_id:
        return f"case_id {shown} holds a path separator; a case id names one folder"
    if case_id in (".", ".."):
        return f"case_id {shown} names a folder above or at the output folder"
    if case_id.startswith("."):
        return f"case_id {shown} starts with '.' (reserved for temporaries and hidden files)"
    if case_id != case_id.strip():
        return f"case_id {shown} starts or ends with white space"
    try:
        case_id.encode("utf-8")
    except UnicodeEncodeError:
        return f"case_id {shown} is not valid UTF-8"
    if any(not ch.isprintable() for ch in case_id):
        return f"case_id {shown} holds control characters"
    if len(case_id) > MAX_CASE_ID:
        return f"case_id of {len(case_id)} characters is longer than {MAX_CASE_ID}"
    return ""


def check_case_id(case_id: str) -> str:
    """``case_id`` unchanged when valid; raises ValueError naming the problem otherwise."""
    problem = case_id_problem(case_id)
    if problem:
        raise ValueError(problem)
    return case_id


def safe_case_id(text: str, fallback: str = "case") -> str:
    """A valid case id from any text (file or folder names): unsafe runs become '_', a
    leading '.' becomes '_', and a text longer than :data:`MAX_CASE_ID` is cut and ends
    in 8 hex digits of its hash (so two long names stay distinct)."""
    out = _UNSAFE.sub("_", text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    out = out.replace("\ufffd", "_")
    if out.startswith("."):
        out = "_" + out[1:]
    out = out or fallback
    if len(out) > MAX_CASE_ID:
        digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        out = f"{out[: MAX_CASE_ID - 9]}-{digest}"
    return out


def inside(folder: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` when it resolves (symlinks followed) strictly inside ``folder``; raises
    ValueError naming both otherwise. Call it before anything at ``path`` is replaced."""
    root = Path(folder).resolve()
    target = Path(path).resolve()
    if target == root or not target.is_relative_to(root):
        raise ValueError(f"{path}: resolves to {target}, outside the output folder {root}; refused")
    return Path(path)
