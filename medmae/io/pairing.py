"""Finding scans under a folder and pairing label / anatomy / mask maps with their image, by name.

Rules (also in docs/ingestion.md):
- nnU-Net layout: ``imagesXx/<case>_<0000>.nii.gz`` (one file per channel, ``_0000``,
  ``_0001``... -> one multi-contrast case) with ``labelsXx/<case>.nii.gz`` as its label;
  ``dataset.json`` beside them may name the channels (``channel_names`` or ``modality``).
  Medical Segmentation Decathlon: the same folders with ``dataset.json`` and no channel
  suffixes: one file per case, a 4D NIfTI's 4th axis its channels (``file#c0``...).
- Elsewhere a file's role comes from the words of its name (:mod:`medmae.io.roles`): seg,
  label, mask, lesion, roi, manual, ground truth... -> label; anatomy, organs, parc, aseg,
  seg_total... -> anatomy; brain mask, brainmask, body mask -> mask; else an image. A
  ``--roles GLOB=ROLE`` override wins over the name (and over the content check).
- A map ``<base>_<role words>`` pairs with the image ``<base>`` in the same folder (a DICOM
  series folder ``<base>/`` counts), else with the single image whose name starts ``<base>_``.
  A map that pairs with no image by name is returned as an orphan: the scan then pairs it
  by voxel grid (:mod:`medmae.io.grid_pairing`) or reports it.
- Every folder holding DICOM image files gives one image per series.
- BIDS derivatives (``derivatives/*/sub-XX/anat/*_mask|_dseg``) pair with their subject's
  raw image by entities, their role from their suffix (:mod:`medmae.io.bids`).
- A TotalSegmentator output folder (``segmentations/<organ>.nii.gz``, :mod:`medmae.io.totalseg`)
  is one map, the anatomy map of the image beside it (``--totalseg-role label``: its label).
- Symlinked folders are followed; a link back to a folder already on the walk (a loop) and
  a folder that cannot be listed are reported, never skipped in silence.
- A file or folder whose name is not valid UTF-8 is reported (shown with ``\\x`` escapes)
  and left out: no manifest could hold its name. Case ids are bounded in length, so a
  250-character file name is decided here, not in preprocessing.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from medmae.io.bids import attach_derivatives, split_derivatives
from medmae.io.case_id import MAX_CASE_ID, safe_case_id
from medmae.io.dataset_json import read_task
from medmae.io.channels import KEYWORDS, group_channels
from medmae.io.dicom import DicomSeg, scan_dicom_folder, series_uid
from medmae.io.errors import ScanError
from medmae.io.paths import printable_path, series_path, split_series_path, utf8_problem
from medmae.io.read import ITK_SUFFIXES, NIFTI_SUFFIXES, channel_path, channels_in_header, scan_format
from medmae.io.roles import folder_role, overridden_role, role_from_name
from medmae.io.totalseg import is_totalseg_folder, names_table, organ_files

NNUNET_IMAGES = re.compile(r"^images(Tr|Ts|Val|Va)$")
NNUNET_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$", re.S)
# Files never taken for DICOM (saves reading their headers).
NOT_DICOM_SUFFIXES = {".txt", ".md", ".csv", ".tsv", ".json", ".yaml", ".yml", ".py", ".raw", ".zraw", ".png",
                      ".jpg", ".jpeg", ".pdf", ".html", ".xml", ".npy", ".npz", ".pt", ".pth", ".log", ".zip", ".gz"}

Problem = tuple[str, str]
log = logging.getLogger(__name__)
SUFFIX = {"label": "seg", "anatomy": "anatomy", "mask": "brainmask", "image": ""}  # the rename that fixes a pairing


@dataclass
class Candidate:
    """A case found by name, not yet read: images (one per channel), optional label/anatomy.

    ``images`` hold file paths, DICOM folders, or ``folder#key`` for one series of several.
    ``names`` are the texts a modality/sequence hint may come from (file and folder names,
    nnU-Net channel names); ``declared`` a modality stated by the dataset (dataset.json).
    """

    case_id: str
    images: list[str]
    label: str = ""
    anatomy: str = ""
    mask: str = ""
    names: list[str] = field(default_factory=list)
    declared: str = ""
    channel_hints: list[str] = field(default_factory=list)
    forced: bool = False  # the user said (--roles) this is an image: no content check
    forced_maps: list[str] = field(default_factory=list)  # maps whose role --roles gave: kept as given
    label_names: dict[int, str] = field(default_factory=dict)  # label id -> name (dataset.json)
    anatomy_names: dict[int, str] = field(default_factory=dict)  # anatomy id -> name (TotalSegmentator)
    left_out: str = ""  # why an image (not a map, once its content is read) is no case
    series_uid: str = ""  # DICOM only, to pair a SEG; never written or logged
    frame_uid: str = ""


@dataclass
class Orphan:
    """A label / anatomy / mask map that no image claimed by name (yet)."""

    kind: str
    path: Path
    base: str
    why: str


def stem(path: str | os.PathLike) -> str:
    """File name without its scan extension ('a.nii.gz' -> 'a'); folder names unchanged."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES + ITK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def role(name_stem: str) -> tuple[str, str]:
    """('image' | 'label' | 'anatomy' | 'mask', base name of its image): see :mod:`medmae.io.roles`."""
    return role_from_name(name_stem)


def discover(root: str | os.PathLike, overrides: list[tuple[str, str]] = (), channels: list[str] = (),
             keep_other_images: bool = False, totalseg_role: str = "anatomy"
             ) -> tuple[list[Candidate], list[Problem], list[Orphan]]:
    """Walk ``root`` and pair maps with images by the rules above.

    ``overrides``: [(file glob, role)] from ``--roles``; ``channels``: channel patterns
    from ``--channels`` (see :mod:`medmae.io.channels`); images beside a multi-channel case
    that no channel names are listed and left out unless ``keep_other_images``; a
    TotalSegmentator output folder pairs with its image as its ``totalseg_role`` map
    ('anatomy' or 'label'). Returns (candidates, problems, orphans: maps no image claimed by name).
    """
    root = Path(root)
    images: dict[tuple[Path, str], Candidate] = {}  # (folder, base name) -> candidate
    maps: list[tuple[str, Path, str, Path]] = []  # (role, folder, base, path)
    problems: list[Problem] = []
    orphans: list[Orphan] = []
    segs: list[DicomSeg] = []
    forced_paths: set[Path] = set()
    derived: list[tuple[str, Path]] = []  # BIDS derivatives, paired by entities
    for folder, files in _walk(root, problems):
        scans = [f for f in files if scan_format(f) in ("nifti", "itk")]
        if folder != root and is_totalseg_folder(folder):
            _add_totalseg(folder, images, maps, problems, totalseg_role, overrides, forced_paths)
        elif NNUNET_IMAGES.match(folder.name):
            _add_nnunet(root, folder, scans, images, maps, problems)
        elif re.match(r"^labels(Tr|Ts|Val|Va)$", folder.name):
            maps += [("label", folder.parent / ("images" + folder.name[6:]), stem(f), f) for f in scans]
        else:
            found, scans, bad = split_derivatives(root, scans, stem, role, lambda n: overridden_role(n, list(overrides)))
            derived += found
            problems += bad
            plain = {}
            by_folder = folder_role(folder.name) if folder != root else None
            claimed = {role(stem(f))[1] for f in scans if role(stem(f))[0] != "image"}  # bases maps name
            for f in scans:
                forced = overridden_role(f.name, list(overrides))
                kind, base = role(stem(f))
                if kind == "image" and by_folder and stem(f) not in claimed:  # labels/case01.nii.gz
                    kind, base = by_folder, stem(f)
                if forced == "image" or (forced is None and kind == "image"):
                    plain[f] = forced == "image"
                else:
                    maps.append((forced or kind, folder, base if kind != "image" else stem(f), f))
                    if forced:
                        forced_paths.add(f)
            _add_images(root, folder, plain, channels, images, problems, keep_other_images)
        if any(_maybe_dicom(f) for f in files):
            _add_dicom(root, folder, images, problems, segs)
    _attach_segs(segs, list(images.values()), problems)
    attach_derivatives(derived, images, stem, problems, lambda k, p, why: orphans.append(Orphan(k, p, stem(p), why)))
    for kind, folder, base, path in maps:
        cand = _attach(kind, folder, base, path, images, problems, orphans)
        if cand is not None and path in forced_paths:
            cand.forced_maps.append(str(path))
        if cand is not None and path.is_dir() and is_totalseg_folder(path):  # its names table travels with it
            setattr(cand, f"{kind}_names", names_table(organ_files(path)))
    return _unique_ids(list(images.values())), problems, orphans


def _walk(root: Path, problems: list[Problem]):
    """(folder, sorted files) for every non-hidden folder under root, in sorted order.

    Symlinked folders are followed once: a link to a folder already on the walk (a loop)
    is reported, as is a folder that cannot be listed.
    """
    seen = {os.path.realpath(root)}

    def unlistable(e: OSError) -> None:
        why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or str(e))
        problems.append((str(e.filename or root), f"cannot list this folder ({why}); its scans were not searched"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            full = os.path.join(dirpath, d)
            if why := utf8_problem(d):
                problems.append((printable_path(full), f"folder {why}; its scans were not searched"))
                continue
            real = os.path.realpath(full)
            if real in seen:
                if os.path.islink(full):
                    problems.append((full, f"symlink loop: this link points back to {real}, already scanned; not followed"))
                continue
            seen.add(real)
            keep.append(d)
        dirnames[:] = keep
        files = []
        for f in sorted(f for f in filenames if not f.startswith(".")):
            if why := utf8_problem(f):
                problems.append((printable_path(os.path.join(dirpath, f)), why))
            else:
                files.append(Path(dirpath) / f)
        yield Path(dirpath), files


def _put(images: dict, key: tuple[Path, str], cand: Candidate) -> None:
    """Insert under ``key``; a second image of the same name (file and folder) gets a marked key."""
    while key in images:
        key = (key[0], key[1] + "+")
    images[key] = cand


def _add_images(root: Path, folder: Path, plain: dict[Path, bool], channels: list[str], images: dict,
                problems: list[Problem], keep_other: bool = False) -> None:
    """Image files of a folder (path -> forced by --roles): one candidate each, or grouped
    into multi-contrast candidates by ``channels``."""
    singles = list(plain)
    groups: dict = {}
    if channels:
        groups, singles, found = group_channels({f: stem(f) for f in plain}, list(channels))
        problems += found
        for key, paths in groups.items():
            cid = _case_id(root, folder / key) if key else _case_id(root, folder)
            _put(images, (folder, key or folder.name), Candidate(
                cid, [str(p) for p in paths], names=_names(root, paths[0]),
                channel_hints=[c if c in KEYWORDS else stem(p) for c, p in zip(channels, paths)],
                forced=any(plain[p] for p in paths)))
    left_out = ""
    if channels and groups and not keep_other:  # T1POST beside flair,t1,t2: not a case of its own
        left_out = (f"not named in --channels {','.join(channels)}: left out beside the multi-channel case(s) of "
                    f"{folder.name}/ (add it to --channels, or pass --keep-other-images to scan it as its own case)")
    for f in singles:
        _put(images, (folder, stem(f)), Candidate(_case_id(root, folder / stem(f)), [str(f)],
                                                  names=_names(root, f), forced=plain[f], left_out=left_out))


def _maybe_dicom(f: Path) -> bool:
    return scan_format(f) not in ("nifti", "itk") and f.suffix.lower() not in NOT_DICOM_SUFFIXES


def _add_dicom(root: Path, folder: Path, images: dict, problems: list[Problem], segs: list[DicomSeg]) -> None:
    """One candidate per series of ``folder``; the series index ends the case id.

    A lone slice among other series (a stray) is reported against its series key; SEG
    objects are collected for :func:`_attach_segs`.
    """
    try:
        found, seg_files = scan_dicom_folder(folder)
    except ScanError as e:
        problems.append((e.path, e.problem))
        return
    except OSError as e:
        problems.append((str(folder), f"cannot list DICOM files ({e.strerror})"))
        return
    segs += seg_files
    for s in found:
        path = series_path(folder, s.key if len(found) > 1 else None)
        if len(found) > 1 and len(s.files) == 1:
            problems.append((path, f"stray slice: one DICOM slice ({s.modality or '?'}) whose series key {s.key} "
                                   f"matches none of the folder's other {len(found) - 1} series; move it out"))
            continue
        base = folder.name if len(found) == 1 else f"{folder.name}_s{s.index}"
        cid = safe_case_id(_case_id(root, folder) + f"_s{s.index}")
        uid, frame = series_uid(s)
        _put(images, (folder.parent, base), Candidate(cid, [path], names=_names(root, folder), series_uid=uid,
                                                      frame_uid=frame))


def _attach_segs(segs: list[DicomSeg], cands: list[Candidate], problems: list[Problem]) -> None:
    """A DICOM SEG becomes the label of the series it references (else of the one series
    sharing its frame of reference), or is reported."""
    for seg in segs:
        match = [c for c in cands if c.series_uid and c.series_uid in seg.series_uids]
        how = "referenced series"
        if not match and seg.frame_uid:
            match = [c for c in cands if c.frame_uid == seg.frame_uid]
            how = "frame of reference"
        if len(match) > 1:  # copies of one series: the one beside the SEG (its folder or a sub-folder of it)
            near = [c for c in match if split_series_path(c.images[0])[0].parent == seg.path.parent]
            match = near or match
        if len(match) != 1:
            why = ("matches no series under the scanned folder" if not match else
                   f"matches {len(match)} series (copies?), none of them beside it")
            problems.append((str(seg.path), f"unpaired label map (DICOM SEG): its referenced series / frame of "
                                            f"reference {why}; scan it together with its series, or pass "
                                            f"--roles '{seg.path.name}=label' beside a named image"))
        elif match[0].label:
            problems.append((str(seg.path), f"unpaired label map (DICOM SEG): second label map for {match[0].case_id} "
                                            f"(already {Path(match[0].label).name})"))
        else:
            match[0].label = str(seg.path)
            log.info("%s: DICOM SEG paired by %s as the label of %s", seg.path, how, match[0].case_id)


def _add_totalseg(folder: Path, images: dict, maps: list, problems: list[Problem], kind: str,
                  overrides: list[tuple[str, str]], forced_paths: set) -> None:
    """A TotalSegmentator output folder: a ``kind`` map of the image beside it (its parent
    folder's image whose name starts the folder's, e.g. ``ct`` for ``ct_segmentations/``, else
    the parent's only image); ``--roles 'FOLDER=ROLE'`` names its role instead."""
    forced = overridden_role(folder.name, list(overrides))
    kind = forced if forced in ("label", "anatomy") else kind
    beside = [b for (d, b) in images if d == folder.parent]
    named = [b for b in beside if folder.name.lower().startswith(b.lower())]
    base = (max(named, key=len) if named else beside[0] if len(beside) == 1 else "")
    if not base:
        problems.append((str(folder), f"unpaired TotalSegmentator folder: {len(beside)} images beside it and none "
                                      f"named by the folder; name it <image>_segmentations beside its image"))
        return
    maps.append((kind, folder.parent, base, folder))
    forced_paths.add(folder)  # its role is the option's (or --roles'), not its content's


def _add_nnunet(root: Path, folder: Path, scans: list[Path], images: dict, maps: list, problems: list[Problem]) -> None:
    """Group ``<case>_<0000>`` channel files of an nnU-Net images folder into one candidate
    each; in an MSD task (dataset.json, no channel suffixes) each file is one case, a 4D
    file's 4th axis its channels (:mod:`medmae.io.dataset_json`)."""
    task = read_task(folder.parent)
    msd = task.found and not any(NNUNET_CHANNEL.match(stem(f)) for f in scans)
    channels: dict[str, dict[int, Path]] = {}
    for f in scans:
        m = NNUNET_CHANNEL.match(stem(f))
        if msd:
            _add_msd_case(root, folder, f, task, images, problems)
        elif not m:
            problems.append((str(f), "nnU-Net images folder: name lacks the _0000 channel suffix (an MSD task "
                                     "needs its dataset.json beside imagesTr/)"))
        else:
            channels.setdefault(m["case"], {})[int(m["channel"])] = f
    for case, by_channel in channels.items():
        idx = sorted(by_channel)
        if idx != list(range(len(idx))):
            problems.append((str(by_channel[idx[0]]), f"nnU-Net case {case}: channels {idx} are not 0..{len(idx) - 1}"))
            continue
        hint = [task.channels.get(i, "") for i in idx]
        images[(folder, case)] = Candidate(_case_id(root, folder.parent / case), [str(by_channel[i]) for i in idx],
                                           names=[*hint, *_names(root, by_channel[0])], declared=task.declared,
                                           channel_hints=[h or stem(by_channel[i]) for h, i in zip(hint, idx)],
                                           label_names=task.labels)


def _add_msd_case(root: Path, folder: Path, f: Path, task, images: dict, problems: list[Problem]) -> None:
    """One MSD case: a 3D file, or a 4D NIfTI read as ``file#c0``, ``file#c1``... channels."""
    n = channels_in_header(f) if scan_format(f) == "nifti" else 1
    if task.channels and n != len(task.channels):
        names = ", ".join(task.channels[i] for i in sorted(task.channels))
        problems.append((str(f), f"MSD task: dataset.json names {len(task.channels)} channel(s) ({names}) but the "
                                 f"image has {n} on its 4th axis"))
        return
    paths = [channel_path(f, i) for i in range(n)] if n > 1 else [str(f)]
    hint = [task.channels.get(i, "") for i in range(n)]
    images[(folder, stem(f))] = Candidate(_case_id(root, folder.parent / stem(f)), paths,
                                          names=[*hint, *_names(root, f)], declared=task.declared,
                                          channel_hints=[h or f"c{i}" for i, h in enumerate(hint)] if n > 1 else [],
                                          label_names=task.labels)


def _attach(kind: str, folder: Path, base: str, path: Path, images: dict, problems: list[Problem],
            orphans: list[Orphan]) -> Candidate | None:
    """Set ``path`` as the label/anatomy/mask of its image (returned), or record why it has none."""
    cand = images.get((folder, base))
    if cand is None:
        near = [c for (d, b), c in images.items() if d == folder and re.match(re.escape(base) + r"[_\-. ]", b)]
        if len(near) > 1:
            problems.append((str(path), f"unpaired {kind} map: its name matches {len(near)} images ({base}_*); "
                                        f"rename it to <image>_{SUFFIX[kind]} beside its image"))
            return
        cand = near[0] if near else None
    if cand is None:
        orphans.append(Orphan(kind, path, base, f"named as a {kind} map, without a matching image {base}.* or "
                                                f"{base}_* beside it"))
        return
    if getattr(cand, kind):
        problems.append((str(path), f"unpaired {kind} map: second {kind} map for {cand.case_id} (already "
                                    f"{Path(getattr(cand, kind)).name}); remove one"))
        return None
    setattr(cand, kind, str(path))
    return cand


def _case_id(root: Path, path: Path) -> str:
    """'sub/dir/name' relative to root -> 'sub__dir__name', a valid case id (:mod:`medmae.io.case_id`)."""
    rel = path.relative_to(root) if path != root else Path(root.name)
    parts = [re.sub(r"[^A-Za-z0-9._-]+", "_", p) for p in rel.parts] or ["case"]
    return safe_case_id("__".join(parts))  # bounded length, no leading '.'; decided at scan time


def _names(root: Path, path: Path) -> list[str]:
    """Name texts for hints: the file stem, then its folders up to root (nearest first)."""
    rel = path.relative_to(root)
    return [stem(rel.name), *reversed(rel.parts[:-1])]


def _unique_ids(cands: list[Candidate]) -> list[Candidate]:
    """Sort by case id; a repeated id gets '-2', '-3'... in walk order."""
    seen: dict[str, int] = {}
    for c in cands:
        n = seen.get(c.case_id, 0) + 1
        seen[c.case_id] = n
        if n > 1:
            c.case_id = f"{c.case_id[: MAX_CASE_ID - len(str(n)) - 1]}-{n}"
    return sorted(cands, key=lambda c: c.case_id)
