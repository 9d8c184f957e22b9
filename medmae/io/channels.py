"""Multi-contrast cases from plain folders: ``--channels flair,t1,t2``.

Each channel is a pattern matched against the image file names of a folder, in any case:
- a sequence keyword (flair, t1c, t1, t2, pd, dwi, swi) matches files whose name gives that
  keyword (:func:`medmae.io.hints.sequence_hint`: ``T1w`` is t1, ``t1ce`` is t1c, not t1);
- anything else is a glob when it holds ``*`` or ``?`` (``*_0001*``), else a whole word of
  the name (``adc`` matches ``pat3_ADC.nii.gz``).
The word that matched (grown to its separators) is cut from the name, and what is left is
the case key, so ``BraTS_001_flair`` / ``BraTS_001_t1`` / ``BraTS_001_t2`` become one case
``BraTS_001``, and a patient folder holding ``FLAIR.nii.gz``, ``T1.nii.gz``, ``T2.nii.gz``
becomes one case named after the folder. A case lacking a channel, or with two files for
one channel, is reported; files matching no channel stay single-channel images.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from medmae.io.hints import SEQUENCE_PATTERNS, sequence_hint

KEYWORDS = {k: p for k, p in SEQUENCE_PATTERNS}
SEPARATORS = " _-.+"


def parse_channels(text: str | None) -> list[str]:
    """'flair, T1,t2' -> ['flair', 't1', 't2']; raises ValueError on an empty or repeated item."""
    if not text:
        return []
    items = [t.strip().lower() for t in text.split(",")]
    if any(not t for t in items) or len(set(items)) != len(items):
        raise ValueError(f"--channels {text!r}: expected distinct comma-separated names, e.g. flair,t1,t2")
    return items


def match_span(name_stem: str, channel: str) -> tuple[int, int] | None:
    """Where ``channel`` matches ``name_stem`` (the whole word around it), or None."""
    low = name_stem.lower()
    if channel in KEYWORDS:
        if sequence_hint(low) != channel:
            return None
        m = re.search(KEYWORDS[channel], low)
        return _whole_word(low, m.start(), m.end()) if m else None
    if any(c in channel for c in "*?["):
        return (0, len(low)) if fnmatch.fnmatch(low, channel) else None
    m = re.search(rf"(?<![a-z0-9]){re.escape(channel)}(?![a-z0-9])", low)
    return (m.start(), m.end()) if m else None


def _whole_word(low: str, start: int, end: int) -> tuple[int, int]:
    while start > 0 and low[start - 1].isalnum():
        start -= 1
    while end < len(low) and low[end].isalnum():
        end += 1
    return start, end


def case_key(name_stem: str, span: tuple[int, int]) -> str:
    """The name without the matched channel word, separators tidied ('' for the whole name)."""
    a, b = span
    left, right = name_stem[:a].rstrip(SEPARATORS), name_stem[b:].lstrip(SEPARATORS)
    return f"{left}_{right}" if left and right else left or right


def group_channels(stems: dict[Path, str], channels: list[str]
                   ) -> tuple[dict[str, list[Path]], list[Path], list[tuple[str, str]]]:
    """Group a folder's image files (path -> name stem) into cases of ``channels``.

    Returns ({case key: paths in channel order}, files matching no channel, problems as
    (path, reason) for cases lacking a channel or with two files for one).
    """
    by_key: dict[str, dict[str, list[Path]]] = {}
    left = []
    for path, name in stems.items():
        hit = next(((c, s) for c in channels if (s := match_span(name, c))), None)
        if hit is None:
            left.append(path)
            continue
        by_key.setdefault(case_key(name, hit[1]), {}).setdefault(hit[0], []).append(path)
    groups, problems = {}, []
    for key, found in by_key.items():
        where = next(iter(found.values()))[0].parent
        label = f"case {key!r} in {where}" if key else f"the case of folder {where}"
        doubled = [c for c in channels if len(found.get(c, [])) > 1]
        missing = [c for c in channels if c not in found]
        first = next(iter(found.values()))[0]
        if doubled:
            names = ", ".join(p.name for p in found[doubled[0]])
            problems.append((str(first), f"{label}: {len(found[doubled[0]])} files match channel "
                                         f"{doubled[0]!r} ({names}); rename one or narrow --channels"))
        elif missing:
            problems.append((str(first), f"{label} lacks channel(s) {', '.join(missing)} of --channels "
                                         f"{','.join(channels)} (has {', '.join(c for c in channels if c in found)})"))
        else:
            groups[key] = [found[c][0] for c in channels]
    return groups, left, problems
