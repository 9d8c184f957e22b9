"""What a file is: an image, a label map, an anatomy map or a body/brain mask.

Two sources, names first:

- **Names.** The words of a file name (split at any separator and at camelCase humps, in
  any case) are matched against the conventions of public datasets. From the first role
  word to the end is the role part; what comes before it is the base name of its image:
  ``BraTS_001_SegMask`` -> label of ``BraTS_001``; ``case01-GroundTruth`` -> label of
  ``case01``; ``sub-01_T2w_manual-ROI`` -> label of ``sub-01_T2w``; ``mr1 Label`` -> label
  of ``mr1``; ``sub-01_T1w_desc-brain_mask`` -> mask of ``sub-01_T1w``;
  ``ct_seg_total`` / ``x_organs`` / ``x_aparc+aseg`` -> anatomy. A file whose name has
  no role word takes its folder's role when the folder's name is made of role words only
  (``labels/``, ``masks/``, ``anatomy/``). A map called a mask only by the generic word
  ``mask`` is a body/brain mask when its content is (binary, large), else a label.
- **Content.** A volume no scanner makes: whole numbers >= 0 that are binary, or few
  distinct values forming piecewise-constant regions. Binary and large (>= 15 % of the
  grid) -> a body/brain mask; binary and small, or 2..10 values -> a label map; more ->
  an anatomy map (TotalSegmentator, FreeSurfer). A map named only ``seg``
  (``ct_abdomen_seg``: TotalSegmentator's and many tools' output name) whose content is
  such an anatomy map (more than 10 labels) is paired as its image's anatomy map, not its
  label; ``label`` / ``gt`` / ``manual`` names, ``labelsTr/`` and ``--roles`` stay labels.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import numpy as np

ROLES = ("image", "label", "anatomy", "mask")
LABEL_WORDS = {"seg", "segs", "segmentation", "segmentations", "label", "labels", "labelmap", "mask", "masks",
               "msk", "tumour", "tumor", "tumours", "tumors", "lesion", "lesions", "roi", "rois", "voi",
               "manual", "gt", "groundtruth", "truth", "annotation", "annotations", "annot", "contour",
               "contours", "delineation"}
ANATOMY_WORDS = {"anatomy", "organs", "organ", "parc", "parcellation", "aparc", "aseg", "dseg", "totalseg",
                 "totalsegmentator", "atlas"}
MASK_WORDS = {"brainmask", "bodymask", "headmask", "skullmask", "brain_mask", "body_mask", "head_mask",
              "skullstrip_mask"}
MASK_LEADS = {"brain", "body", "head", "skull", "skullstrip", "foreground"}  # '<lead> mask'
GENERIC_MASK = {"mask", "masks", "msk"}
SEG_WORDS = {"seg", "segs", "segmentation", "segmentations"}
LABEL_ENDINGS = ("seg", "mask", "label", "labels")  # 'cordseg', 'tumormask'
DROP_FROM_BASE = ("desc", "space", "label")  # BIDS entity keys left dangling before the role part
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

MASK_MIN_FRACTION = 0.15
"""A binary map covering at least this fraction of its grid is a body/brain mask."""
LABEL_MAX_VALUES = 10
"""Up to this many distinct non-zero values: a label map; more: an anatomy map."""
MAP_MAX_VALUES = 255
PIECEWISE_MIN = 0.75
"""Fraction of non-zero voxels equal to a neighbour (best axis) that marks regions, not texture."""


def _is_role_word(word: str) -> bool:
    return word in LABEL_WORDS or word in ANATOMY_WORDS or word in MASK_WORDS or (
        len(word) > 4 and word.endswith(LABEL_ENDINGS))


def role_from_name(name_stem: str) -> tuple[str, str]:
    """('image' | 'label' | 'anatomy' | 'mask', base name of the image it belongs to)."""
    words = [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(name_stem)]
    first = next((i for i, (w, _, _) in enumerate(words) if _is_role_word(w)), None)
    if first is None:
        return "image", name_stem
    if first > 0 and (words[first][0] in ("mask", "masks") and words[first - 1][0] in MASK_LEADS
                      or words[first][0] == "truth" and words[first - 1][0] == "ground"):
        first -= 1  # 'brain_mask', 'Ground Truth': the lead word belongs to the role part
    part = [w for w, _, _ in words[first:]]
    if first == 0:  # role words first ('seg_case01'): the base is what follows them
        last = first
        while last + 1 < len(words) and _is_role_word(words[last + 1][0]):
            last += 1
        base = name_stem[words[last][2]:].strip(" _-.+") if last + 1 < len(words) else ""
    else:
        base = name_stem[: words[first][1]]
        for key in DROP_FROM_BASE:  # 'sub-01_T1w_desc-' -> 'sub-01_T1w'
            base = re.sub(rf"[_\-. ]{key}[_\-. ]?$", "", base, flags=re.I)
        base = base.rstrip(" _-.+")
    if not base:
        return "image", name_stem
    return _kind_of(part), base


def folder_role(folder_name: str) -> str | None:
    """The map kind a folder's name gives its files ('labels', 'Masks', 'anatomy',
    'ground_truth'), when every word of it is a role word; else None."""
    words = [m.group().lower() for m in _WORD.finditer(folder_name)]
    if words and all(_is_role_word(w) or w in MASK_LEADS or w == "ground" for w in words) and any(
            _is_role_word(w) for w in words):
        return _kind_of(words)
    return None


def generic_mask_name(path) -> bool:
    """True when only the generic word 'mask' (file name or its folder) made ``path`` a label
    map: its content then decides between a lesion label and a body/brain mask."""
    from medmae.io.pairing import stem

    words = [m.group().lower() for m in _WORD.finditer(stem(path))]
    role_words = [w for w in words if _is_role_word(w)]
    if role_words:
        return set(role_words) <= GENERIC_MASK
    folder = [m.group().lower() for m in _WORD.finditer(Path(path).parent.name)]
    return bool(folder) and set(folder) <= GENERIC_MASK


def generic_seg_name(path) -> bool:
    """True when only 'seg' / 'segmentation' words ('ct_seg', 'cordseg') made ``path`` a label
    map: the name does not say whether it is a training label or a model-made parcellation."""
    from medmae.io.pairing import stem

    words = [m.group().lower() for m in _WORD.finditer(stem(path))]
    role_words = [w for w in words if _is_role_word(w)]
    return bool(role_words) and all(w in SEG_WORDS or (len(w) > 4 and w.endswith("seg")) for w in role_words)


def refine_kind(kind: str, path, array: np.ndarray) -> str:
    """The kind a name-given 'label' map really is, by its content:

    'mask' for a generically named ('mask') map holding a large binary mask; 'anatomy' for a
    map named only 'seg' ('ct_seg', TotalSegmentator's and FreeSurfer's output names) holding
    more than :data:`LABEL_MAX_VALUES` labels in flat regions. Else ``kind`` unchanged.
    """
    if kind != "label":
        return kind
    if generic_mask_name(path) and role_from_content(array)[0] == "mask":
        return "mask"
    if generic_seg_name(path) and role_from_content(array)[0] == "anatomy":
        return "anatomy"
    return kind


def _kind_of(part: list[str]) -> str:
    joined = "_".join(part)
    if any(w in MASK_WORDS for w in part) or any(f"{lead}_mask" in joined for lead in MASK_LEADS):
        return "mask"
    if any(w in ANATOMY_WORDS for w in part) or ("seg" in part and "total" in part):
        return "anatomy"
    return "label"


def parse_role_overrides(items: list[str] | None) -> list[tuple[str, str]]:
    """``["*_brain.nii.gz=mask", ...]`` -> [(glob, role)]. Raises ValueError on bad items."""
    out = []
    for item in items or []:
        glob, sep, kind = item.rpartition("=")
        if not sep or not glob or kind.strip().lower() not in ROLES:
            raise ValueError(f"--roles {item!r}: expected FILE_GLOB=ROLE with ROLE one of {', '.join(ROLES)}")
        out.append((glob, kind.strip().lower()))
    return out


def overridden_role(name: str, overrides: list[tuple[str, str]]) -> str | None:
    """The role the user forced on file ``name`` (the last matching glob wins), or None."""
    found = None
    for glob, kind in overrides:
        if fnmatch.fnmatch(name.lower(), glob.lower()):
            found = kind
    return found


def role_from_content(array: np.ndarray) -> tuple[str, str]:
    """('' | 'mask' | 'label' | 'anatomy', why) from the voxel values of a volume.

    '' means it looks like a scan. ``why`` says what gave a map away (for the report).
    """
    a = np.asarray(array)
    step = max(1, int(round((a.size / 4_000_000) ** (1 / 3))))
    a = a[::step, ::step, ::step] if a.ndim == 3 and step > 1 else a
    if a.dtype.kind not in "biuf" or a.size == 0:
        return "", ""
    if a.dtype.kind == "f" and not np.all(np.mod(a, 1) == 0):
        return "", ""
    if a.min() < 0:
        return "", ""
    values = np.unique(a)
    nonzero = values[values != 0]
    if nonzero.size == 0 or nonzero.size > MAP_MAX_VALUES:
        return "", ""
    if nonzero.size == 1:
        fraction = float(np.mean(a != 0))
        kind = "mask" if fraction >= MASK_MIN_FRACTION else "label"
        return kind, f"binary (0/{nonzero[0]:g}) covering {100 * fraction:.0f} % of the grid"
    if piecewise_constant(a) < PIECEWISE_MIN:
        return "", ""
    kind = "label" if nonzero.size <= LABEL_MAX_VALUES else "anatomy"
    return kind, f"{nonzero.size} distinct whole-number values forming flat regions"


def piecewise_constant(a: np.ndarray) -> float:
    """Best over the axes: fraction of non-zero voxels whose next voxel holds the same value."""
    best = 0.0
    for axis in range(a.ndim):
        lo = np.take(a, range(a.shape[axis] - 1), axis=axis)
        hi = np.take(a, range(1, a.shape[axis]), axis=axis)
        fg = lo != 0
        if fg.any():
            best = max(best, float(np.mean(lo[fg] == hi[fg])))
    return best
