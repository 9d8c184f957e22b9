"""BIDS: ``sub-XX[/ses-YY]/anat/sub-XX[_ses-YY]_<suffix>.nii.gz`` raw images and their
derivatives, ``derivatives/<pipeline>/sub-XX[/ses-YY]/anat/sub-XX[_ses-YY][_space-..][_desc-..]_<suffix>``.

A derivative pairs with the raw image of its subject and session whose other entities
(acq, ce, rec, run) agree; ``space-T1w`` or a contrast named in the derivative's own name
(``sub-01_T1w_desc-brain_mask``) picks among a subject's contrasts. Its role comes from its
suffix: ``mask`` -> a brain/body mask, but ``label-<X>_mask`` (``label-lesion_mask``) -> a
label; ``dseg`` (discrete segmentation: tissues, parcellation) -> an anatomy map;
``probseg`` is no label map and is reported. With ``--channels T1w,FLAIR,T2w`` (or the
keywords t1,flair,t2) a subject's contrasts are one multi-channel case named ``sub-XX[_ses-YY]``.
"""

from __future__ import annotations

import re
from pathlib import Path

_ENTITY = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9]+)$")
MATCH_ENTITIES = ("acq", "ce", "rec", "run")
"""Entities a derivative shares with its raw image when it names them."""


def bids_name(stem: str) -> tuple[dict[str, str], str, list[str]] | None:
    """('sub-01_ses-2_desc-brain_mask' ->) ({sub: 01, ses: 2, desc: brain}, 'mask', other words),
    or None when the name is not BIDS (does not start with sub-<label>)."""
    parts = stem.split("_")
    if len(parts) < 2 or not parts[0].startswith("sub-"):
        return None
    entities, other = {}, []
    for part in parts[:-1]:
        m = _ENTITY.match(part)
        if m:
            entities.setdefault(m.group(1).lower(), m.group(2))
        else:
            other.append(part)  # a contrast left in the name: sub-01_T1w_desc-brain_mask
    if "sub" not in entities:
        return None
    return entities, parts[-1], other


def derivative_role(stem: str) -> tuple[str, str]:
    """('mask' | 'label' | 'anatomy' | 'skip' | '', why) of a derivative file by its BIDS suffix
    ('' when the suffix says nothing)."""
    parsed = bids_name(stem)
    if parsed is None:
        return "", ""
    entities, suffix, _ = parsed
    suffix = suffix.lower()
    if suffix == "mask":
        label = entities.get("label", "").lower()
        return ("mask", "") if label in ("", "brain", "head", "body") else ("label", "")
    if suffix == "dseg":
        return "anatomy", ""
    if suffix == "probseg":
        return "skip", "probabilistic segmentation (BIDS probseg), not a label map: left out"
    return "", ""


def in_derivatives(path: Path, root: Path) -> bool:
    """True for a file under a ``derivatives`` folder of the scanned tree."""
    try:
        return "derivatives" in path.relative_to(root).parts[:-1]
    except ValueError:
        return False


def matching_images(stem: str, image_stems: dict) -> list:
    """The keys of ``image_stems`` ({key: [raw image stems, one per channel]}) a derivative
    named ``stem`` belongs to."""
    parsed = bids_name(stem)
    if parsed is None:
        return []
    entities, _, other = parsed
    found = []
    for key, stems in image_stems.items():
        raws = [r for r in (bids_name(s) for s in stems) if r is not None]
        if not raws or raws[0][0].get("sub") != entities["sub"] or raws[0][0].get("ses") != entities.get("ses"):
            continue
        if any(e in entities and e in raws[0][0] and entities[e] != raws[0][0][e] for e in MATCH_ENTITIES):
            continue
        found.append((key, {r[1].lower() for r in raws}))
    contrast = {c.lower() for c in other} | {entities.get("space", "").lower()}
    named = [k for k, suffixes in found if suffixes & contrast]
    return named or [k for k, _ in found]


def split_derivatives(root: Path, files: list[Path], stem, role, forced) -> tuple[list, list, list]:
    """A folder's scan files -> (BIDS derivative maps [(kind, path)], the other files,
    problems [(path, why)]). ``stem``, ``role`` and ``forced`` are the pairing's own name rules
    (file stem; (kind, base) of a stem; the --roles role of a file name or None)."""
    maps, rest, problems = [], [], []
    for f in files:
        name = stem(f)
        if not in_derivatives(f, root) or bids_name(name) is None or forced(f.name):
            rest.append(f)
            continue
        kind, why = derivative_role(name)
        kind = kind or role(name)[0]
        if kind == "skip":
            problems.append((str(f), why))
        elif kind == "image":
            problems.append((str(f), "BIDS derivative image (e.g. a preprocessed scan): left out beside the raw "
                                      "images; scan its derivatives/ folder alone to use it"))
        else:
            maps.append((kind, f))
    return maps, rest, problems


def attach_derivatives(maps: list, images: dict, stem, problems: list, orphan) -> None:
    """Set each derivative map on the candidate of ``images`` ({key: Candidate}) its BIDS
    entities name; else hand it to ``orphan(kind, path, why)`` (the grid pairing then tries)."""
    stems = {key: [stem(Path(p.split("#")[0])) for p in c.images] for key, c in images.items()}
    for kind, path in maps:
        keys = matching_images(stem(path), stems)
        if len(keys) != 1:
            why = ("no raw image of its subject/session" if not keys else
                   f"{len(keys)} raw images of its subject/session ({', '.join(str(k[1]) for k in keys[:3])}) and "
                   f"its name (space-<contrast>) picks none")
            orphan(kind, path, f"BIDS derivative with {why}")
            continue
        cand = images[keys[0]]
        if getattr(cand, kind):
            problems.append((str(path), f"unpaired {kind} map: second {kind} map for {cand.case_id} (already "
                                        f"{Path(getattr(cand, kind)).name}); remove one"))
            continue
        setattr(cand, kind, str(path))
