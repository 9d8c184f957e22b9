"""`scan_folder`: every usable scan under a folder as manifest :class:`Case` rows.

Each case found by :func:`medmae.io.pairing.discover` is read in full (so corrupt files,
NaNs, wrong dimensions and mismatched label grids are caught here, not during training),
given a modality (DICOM tag or dataset.json, else a name hint, else intensity), a sequence
keyword when one is known, a sha256 over its source files and a train/val split from a hash
of its case id. Cases that fail go to the bad list with the reason; the scan goes on.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from medmae.io.errors import ScanError
from medmae.io.geometry import check_same_grid
from medmae.io.hints import infer_modality, sequence_hint
from medmae.io.manifest import Case, sha256_of
from medmae.io.grid_pairing import Grid, pair_orphans
from medmae.io.header_checks import detached_data
from medmae.io.pairing import Candidate, Orphan, discover, stem
from medmae.io.read import read_volume
from medmae.io.roles import refine_kind, role_from_content
from medmae.io.sanity import check_intensities, check_not_constant
from medmae.io.volume import Volume

log = logging.getLogger(__name__)


def scan_folder(root: str | os.PathLike, val_fraction: float = 0.0, seed: int = 0, progress: bool = True,
                roles: list[tuple[str, str]] = (), content_check: bool = True, channels: list[str] = (),
                keep_other_images: bool = False, names: dict | None = None, totalseg_role: str = "anatomy"
                ) -> tuple[list[Case], list[tuple[str, str]]]:
    """Find, read and check every scan under ``root``.

    Returns (cases sorted by case_id with absolute paths, bad list of (path, problem)).
    ``val_fraction`` of the cases (rounded, at least one when > 0 and there are two or more)
    get split 'val', chosen by a seeded hash of the case id, so the split is reproducible.
    ``roles``: [(file glob, role)] forced by the user; ``content_check`` False trusts names
    alone (a file named like an image is an image even when its voxels are a label map).
    ``channels``: patterns that group a folder's images into multi-contrast cases
    (:mod:`medmae.io.channels`); ``keep_other_images``: scan the images beside a
    multi-channel case that no channel names as cases of their own (else listed, left out).
    ``names``: filled with {case_id: {'label' | 'anatomy': {id: name}}} where the dataset
    names its label ids (dataset.json, TotalSegmentator's files). ``totalseg_role``: what a
    TotalSegmentator output folder is to the image beside it ('anatomy', or 'label' to train on it).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = Path(root).resolve()
    if not root.is_dir():
        raise ScanError(root, "not a folder")
    if totalseg_role not in ("anatomy", "label"):
        raise ValueError(f"totalseg_role must be 'anatomy' or 'label', got {totalseg_role!r}")
    candidates, bad, orphans = discover(root, list(roles), list(channels), keep_other_images, totalseg_role)
    cases, grids = [], []
    for cand in tqdm(candidates, desc="scan", unit="case", disable=not progress or None, leave=False):
        try:
            first = read_volume(cand.images[0])
            check_not_constant(first)  # before the content check: a blank image is no mask
            kind, why = content_role(cand, first) if content_check else ("", "")
            if kind:
                orphans += _as_orphans(cand, kind, why)
                continue
            if cand.left_out:  # an image beside a multi-channel case that --channels does not name
                bad.append((cand.images[0], cand.left_out))
                continue
            case = build_case(cand, first)
        except ScanError as e:
            bad.append((e.path, e.problem))
            continue
        except OSError as e:  # e.g. a file the sha256 must cover cannot be read
            why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or str(e))
            bad.append((str(e.filename or cand.images[0]), f"cannot read ({why})"))
            continue
        except Exception as e:  # an unforeseen failure is this case's problem; the scan goes on
            log.debug("scan of %s failed", cand.images[0], exc_info=True)
            bad.append((cand.images[0], f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:300]}"))
            continue
        cases.append(case)
        grids.append(Grid.of(case, first))
        if names is not None:
            found = {k: v for k, v in (("label", cand.label_names if case.label else {}),
                                       ("anatomy", cand.anatomy_names if case.anatomy else {})) if v}
            if found:
                names[case.case_id] = found
    for orphan, case in pair_orphans(orphans, grids, bad):
        log.info("%s: paired by voxel grid as the %s map of %s", orphan.path, orphan.kind, case.case_id)
    assign_splits(cases, val_fraction, seed)
    n_val = sum(c.split == "val" for c in cases)
    log.info("scanned %s: %d case(s) (%d val), %d bad", root, len(cases), n_val, len(bad))
    return cases, bad


def content_role(cand: Candidate, first: Volume) -> tuple[str, str]:
    """('' | 'label' | 'anatomy' | 'mask', why) for a candidate named like an image.

    Single files only: DICOM series, multi-channel cases and --roles images are scans.
    """
    if cand.forced or len(cand.images) > 1 or first.path.is_dir():
        return "", ""
    return role_from_content(first.array)


def _as_orphans(cand: Candidate, kind: str, why: str) -> list[Orphan]:
    """The map that was named like an image, plus any map that paired with it by name."""
    path = Path(cand.images[0])
    out = [Orphan(kind, path, stem(path), f"named like an image but {why}: a {kind} map")]
    for other in ("label", "anatomy", "mask"):
        if getattr(cand, other):
            out.append(Orphan(other, Path(getattr(cand, other)), stem(path),
                              f"named for {path.name}, which is itself a {kind} map"))
    return out


def build_case(cand: Candidate, first: Volume | None = None) -> Case:
    """Read and check one candidate; raises ScanError (naming the failing file) when unusable.

    ``first``: the first image, when already read.
    """
    vols = [first or read_volume(cand.images[0])] + [read_volume(path) for path in cand.images[1:]]
    first = vols[0]
    for vol in vols:
        check_intensities(vol)
    for vol in vols[1:]:
        check_same_grid(first, vol, what="channel")
    checked = set()
    for kind in ("label", "anatomy", "mask"):
        path = getattr(cand, kind)
        if not path or path in checked:
            continue
        vol = read_volume(path)
        check_label(first, vol, kind)
        checked.add(path)
        real = kind if path in cand.forced_maps else refine_kind(kind, vol.path, vol.array)
        if real != kind and not getattr(cand, real):  # 'x_mask' holding a brain mask, 'x_seg' holding organs
            setattr(cand, real, path)
            setattr(cand, kind, "")
            log.info("%s: %s map by its content, paired as the %s map of %s", vol.path.name, real, real, cand.case_id)
    try:
        modality, how = infer_modality(first.array, first.meta.get("modality", "") or cand.declared, tuple(cand.names))
    except ValueError as e:
        raise ScanError(cand.images[0], str(e)) from None
    sequence = channel_sequences(cand, vols) if modality == "MR" else ""
    log.debug("%s: %s (%s), sequence %r", cand.case_id, modality, how, sequence)
    case = Case(case_id=cand.case_id, image=list(cand.images), modality=modality, sequence=sequence,
                label=cand.label, anatomy=cand.anatomy, mask=cand.mask)
    case.sha256 = sha256_of(source_files(case))
    return case


def channel_sequences(cand: Candidate, vols: list[Volume]) -> str:
    """Comma-joined MR sequence keyword of every channel ('' when none is known).

    A channel's keyword comes from its DICOM header, else its own name (nnU-Net channel name
    or file name); a single-channel case may also take it from its folder names.
    """
    if len(vols) == 1:
        return vols[0].meta.get("sequence", "") or sequence_hint(*cand.names)
    hints = cand.channel_hints or [""] * len(vols)
    seqs = [v.meta.get("sequence", "") or sequence_hint(h) for v, h in zip(vols, hints)]
    return ",".join(seqs) if any(seqs) else ""


def check_label(image: Volume, labels: Volume, kind: str = "label") -> None:
    """A label/anatomy map must cover the image's voxel grid (any axis order) and hold whole numbers >= 0."""
    check_same_grid(image, labels, what=f"{kind} map")
    a = labels.array
    if a.dtype.kind == "f" and not np.all(np.mod(a, 1) == 0):
        raise ScanError(labels.path, f"{kind} map holds non-integer values; expected label ids")
    if a.min() < 0:
        raise ScanError(labels.path, f"{kind} map holds negative values (min {a.min()}); expected label ids >= 0")


def source_files(case: Case) -> list[Path]:
    """What the case's sha256 covers: ``case.source_paths()`` (a DICOM folder: every file in it),
    plus the data file an .mhd / .nhdr header points to."""
    paths = case.source_paths()
    return paths + [d for p in paths if p.suffix.lower() in (".mhd", ".nhdr") for d in _detached_data(p)]


def assign_splits(cases: list[Case], val_fraction: float, seed: int) -> None:
    """Mark the round(val_fraction * n) cases with the smallest seeded hash of their id as 'val'."""
    n_val = int(round(val_fraction * len(cases)))
    if val_fraction > 0 and len(cases) >= 2:
        n_val = min(max(n_val, 1), len(cases) - 1)
    rank = sorted(cases, key=lambda c: hashlib.sha256(f"{seed}:{c.case_id}".encode()).hexdigest())
    val = {c.case_id for c in rank[:n_val]}
    for c in cases:
        c.split = "val" if c.case_id in val else "train"


def _detached_data(header: Path) -> list[Path]:
    """Data files named by an .mhd ('ElementDataFile = x.raw') or .nhdr ('data file: x.raw')."""
    data = detached_data(header)
    return [data] if data is not None and data.is_file() else []
