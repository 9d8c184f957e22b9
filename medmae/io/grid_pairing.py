"""Pairing maps that no image claimed by name with the image on the same voxel grid.

A map (found by its name, or a file named like an image whose content is a map) pairs
with an image when that is unambiguous:
1. the images on the same grid (any axis order, see :func:`medmae.io.geometry.same_grid`)
   that have no map of that kind yet, lying in the map's folder or a sibling folder;
2. in the map's own folder one such image is enough (several: the one whose name matches
   the map's, else the one multi-channel case); across folders (``images/`` beside
   ``masks/``) the image's name must also match the map's base name.
Anything else goes to the bad list with the reason and the rename or ``--roles`` option
that fixes it. Every message about such a map starts with ``unpaired <kind> map``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medmae.io.errors import ScanError
from medmae.io.geometry import same_grid
from medmae.io.manifest import Case, sha256_of, source_files
from medmae.io.pairing import SUFFIX, Orphan
from medmae.io.paths import split_series_path, stem
from medmae.io.read import read_volume
from medmae.io.roles import refine_kind
from medmae.io.sanity import check_label
from medmae.io.volume import Volume


@dataclass
class Grid:
    """A case's image grid without its voxels (enough for :func:`same_grid`)."""

    case: Case
    grid: Volume

    @classmethod
    def of(cls, case: Case, vol: Volume) -> "Grid":
        stub = np.broadcast_to(np.zeros((), np.uint8), vol.shape)
        return cls(case, Volume(array=stub, affine=vol.affine, path=vol.path))

    @property
    def folder(self) -> Path:
        return split_series_path(self.case.image[0])[0].parent

    @property
    def name(self) -> str:
        return stem(split_series_path(self.case.image[0])[0])


def pair_orphans(orphans: list[Orphan], grids: list[Grid], bad: list[tuple[str, str]],
                 sha256=sha256_of) -> list[tuple[Orphan, Case]]:
    """Attach each orphan map to its case (mutating the Case) or add it to ``bad``.

    Returns the (orphan, case) pairs made.
    """
    made = []
    for orphan in orphans:
        try:
            vol = read_volume(orphan.path)
        except ScanError as e:
            bad.append((e.path, f"unpaired {orphan.kind} map: {e.problem}"))
            continue
        orphan.kind = refine_kind(orphan.kind, orphan.path, vol.array)
        matches = _matches(orphan, vol, grids)
        if len(matches) != 1:
            taken = [g for g in grids if getattr(g.case, orphan.kind) and same_grid(g.grid, vol) and (
                g.folder == orphan.path.parent or _name_matches(g.name, orphan.base))]
            bad.append((str(orphan.path), _unpaired_reason(orphan, matches, taken)))
            continue
        case = matches[0].case
        try:
            check_label(matches[0].grid, vol, orphan.kind)
        except ScanError as e:
            bad.append((e.path, f"unpaired {orphan.kind} map: {e.problem}"))
            continue
        setattr(case, orphan.kind, str(orphan.path))
        case.sha256 = sha256(source_files(case))
        made.append((orphan, case))
    return made


def _matches(orphan: Orphan, vol: Volume, grids: list[Grid]) -> list[Grid]:
    folder = orphan.path.parent
    free = [g for g in grids if not getattr(g.case, orphan.kind) and same_grid(g.grid, vol)]
    here = [g for g in free if g.folder == folder]
    if here:
        named = [g for g in here if _name_matches(g.name, orphan.base)]
        if len(here) > 1 and not named:  # a lesion mask beside flair,t1,t2 and a kept T1POST
            multi = [g for g in here if len(g.case.image) > 1]
            return multi if len(multi) == 1 else here
        return named if len(here) > 1 and named else here
    return [g for g in free if g.folder.parent == folder.parent and _name_matches(g.name, orphan.base)]


def _name_matches(image: str, base: str) -> bool:
    return image.lower() == base.lower() or bool(re.match(re.escape(base.lower()) + r"[_\-. ]", image.lower()))


def _unpaired_reason(orphan: Orphan, matches: list[Grid], taken: list[Grid]) -> str:
    name = orphan.path.name
    fix = (f"rename it to <image>_{SUFFIX[orphan.kind]}{_ext(name)} beside its image, or pass "
           f"--roles '{name}=image' if it is a scan")
    if matches:
        shown = ", ".join(g.name for g in matches[:4]) + (" ..." if len(matches) > 4 else "")
        return (f"unpaired {orphan.kind} map ({orphan.why}): it lies on the same voxel grid as {len(matches)} "
                f"images ({shown}), so which one it belongs to is ambiguous; {fix}")
    if taken:
        other = Path(getattr(taken[0].case, orphan.kind)).name
        return (f"unpaired {orphan.kind} map ({orphan.why}): the image on its voxel grid, {taken[0].name}, already "
                f"has a {orphan.kind} map ({other}); remove one, or {fix}")
    return f"unpaired {orphan.kind} map ({orphan.why}): no image beside it on the same voxel grid; {fix}"


def _ext(name: str) -> str:
    return name[len(stem(name)):]
