"""`medmae data scan DIR --out manifest.csv`: find scans, check them, write the manifest.

Paths in the manifest are relative to the manifest's folder. Files that cannot be used go to
``<out stem>.bad.csv`` (path, problem), written every run, so it never shows a stale list.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

from medmae.atomic import atomic_write_text
from medmae.io.errors import ScanError, write_problem
from medmae.io.manifest import Case, write_manifest
from medmae.io.paths import SERIES_SEP, printable_path, split_series_path
from medmae.io.channels import parse_channels
from medmae.io.limits import allow_outside_data, set_max_image_mb
from medmae.io.roles import parse_role_overrides


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="find scans and write a manifest (data scan)",
                                 description="Dataset commands.")
    data.set_defaults(func=lambda args: _usage(data))
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    scan = sub.add_parser(
        "scan", help="find every scan under DIR, check it, and write a manifest CSV",
        description="Find NIfTI, NRRD/MHA/MHD files and DICOM series under DIR, tell label maps, anatomy "
                    "maps and body/brain masks from images (by name and content), pair them with their "
                    "images, check every file (corrupt, truncated, wrong dimensions, NaNs, "
                    "mismatched label grids, incomplete DICOM series), and write a manifest. Unusable "
                    "files are listed in <out stem>.bad.csv with the reason. See docs/ingestion.md.")
    scan.add_argument("dir", metavar="DIR", help="folder to scan (searched recursively)")
    scan.add_argument("--out", "-o", required=True, help="manifest CSV to write (atomically)")
    scan.add_argument("--val-fraction", type=float, default=0.0,
                      help="fraction of cases put in the 'val' split, chosen by a hash of the case id (default 0)")
    scan.add_argument("--seed", type=int, default=0, help="seed of the split hash (default 0)")
    scan.add_argument("--roles", action="append", metavar="FILE_GLOB=ROLE", default=[],
                      help="force the role of files whose name matches FILE_GLOB (case-insensitive; repeatable): "
                           "image, label, anatomy or mask. Wins over name words and the content check, e.g. "
                           "--roles '*_brain.nii.gz=mask' --roles 'atlas*.nii=image'")
    scan.add_argument("--no-content-check", action="store_true",
                      help="take roles from file names only: do not turn files whose voxels look like a label "
                           "map or mask (whole numbers, binary or few flat regions) into maps")
    scan.add_argument("--channels", metavar="NAMES", default="",
                      help="make multi-contrast cases: comma-separated channel patterns in channel order, e.g. "
                           "flair,t1,t2 (sequence keywords, whole words or globs of the file name, any case); "
                           "a case lacking a channel is reported. See docs/ingestion.md")
    scan.add_argument("--keep-other-images", action="store_true",
                      help="with --channels: scan images that no channel names, beside a multi-channel case, as "
                           "cases of their own (default: list them and leave them out)")
    scan.add_argument("--totalseg-role", choices=("anatomy", "label"), default="anatomy",
                      help="what a TotalSegmentator output folder (segmentations/<organ>.nii.gz, combined into one "
                           "map with TotalSegmentator's ids) is to the scan beside it: its anatomy map, the prior of "
                           "anatomy masking (default), or its label map, to fine-tune on")
    scan.add_argument("--max-image-mb", type=float, default=None, metavar="MB",
                      help="largest image read, in MB of voxel data, checked from the header before reading "
                           "(default: 2048 or an eighth of the memory; env MEDMAE_MAX_IMAGE_MB)")
    scan.add_argument("--allow-outside-data", action="store_true",
                      help="read .mhd/.nhdr headers whose data file lies outside the header's folder "
                           "(refused by default)")
    scan.add_argument("--no-progress", action="store_true", help="no progress bar")
    scan.set_defaults(func=run_scan)


def run_scan(args: argparse.Namespace) -> int:
    from medmae.io.scan import scan_folder

    root = Path(args.dir)
    if not root.is_dir():
        raise ScanError(root, "not a folder")
    if not 0.0 <= args.val_fraction < 1.0:
        raise ScanError(root, f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    try:
        roles = parse_role_overrides(args.roles)
        channels = parse_channels(args.channels)
        set_max_image_mb(args.max_image_mb)
        allow_outside_data(args.allow_outside_data)
    except ValueError as e:
        raise ScanError(root, str(e)) from None
    out = Path(args.out)
    names: dict = {}
    cases, bad = scan_folder(root, val_fraction=args.val_fraction, seed=args.seed, progress=not args.no_progress,
                             roles=roles, content_check=not args.no_content_check, channels=channels,
                             keep_other_images=args.keep_other_images, names=names,
                             totalseg_role=args.totalseg_role)
    bad_path = bad_list_path(out)
    bad = [(printable_path(p), printable_path(q)) for p, q in bad]
    try:
        write_bad_list(bad, bad_path)
        print(summary(cases, bad))
        if not cases:
            raise ScanError(root, f"no usable scans found ({len(bad)} bad, see {bad_path})")
        write_manifest([relative_case(c, out.resolve().parent) for c in cases], out)
        names_path = write_label_names(names, out)
    except OSError as e:  # full disk, read-only folder: one line naming the folder and the cause
        raise ScanError(out.parent.resolve(), f"cannot write the manifest: {write_problem(out.parent, e)}") from None
    print(f"wrote {out} ({len(cases)} cases)" + (f" and {bad_path} ({len(bad)} bad)" if bad else "")
          + (f"; label names of {len(names)} case(s) in {names_path}" if names else ""))
    return 0


def write_label_names(names: dict, out: Path) -> Path:
    """``<out stem>.labels.json``: {case_id: {'label' | 'anatomy': {id: name}}} beside the
    manifest (written when the dataset names its labels, else removed so it is never stale)."""
    path = out.with_name(f"{out.stem}.labels.json")
    if names:
        text = json.dumps({cid: {kind: {str(k): v for k, v in table.items()} for kind, table in kinds.items()}
                           for cid, kinds in sorted(names.items())}, indent=1)
        atomic_write_text(path, text + "\n")
    elif path.is_file():
        path.unlink()
    return path


def bad_list_path(out: Path) -> Path:
    """manifest.csv -> manifest.bad.csv beside it."""
    return out.with_name(f"{out.stem}.bad.csv")


def write_bad_list(bad: list[tuple[str, str]], path: Path) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "problem"])
    w.writerows(bad)
    return atomic_write_text(path, buf.getvalue())


def summary(cases: list[Case], bad: list[tuple[str, str]]) -> str:
    """Counts by modality and split, one line per role, then one line per bad file."""
    by_mod = Counter(c.modality for c in cases)
    by_split = Counter(c.split for c in cases)
    labelled = sum(1 for c in cases if c.label)
    lines = [f"{len(cases)} case(s): " + ", ".join(f"{m} {n}" for m, n in sorted(by_mod.items()))
             + "; splits: " + ", ".join(f"{s} {n}" for s, n in sorted(by_split.items()))
             + f"; {labelled} with a label map"]
    lines.append(role_summary(cases, bad))
    lines.append(f"{len(bad)} bad file(s)" + (":" if bad else ""))
    lines += [f"  {shown(path)}: {shown(problem)}" for path, problem in bad]
    return "\n".join(lines)


def role_summary(cases: list[Case], bad: list[tuple[str, str]]) -> str:
    """'roles: images N (in M cases), labels N, anatomy maps N, masks N, unpaired maps N'."""
    images = sum(len(c.image) for c in cases)
    unpaired = sum(1 for _, problem in bad if problem.startswith("unpaired "))
    return (f"roles: images {images} (in {len(cases)} case(s)), labels {sum(bool(c.label) for c in cases)}, "
            f"anatomy maps {sum(bool(c.anatomy) for c in cases)}, masks {sum(bool(c.mask) for c in cases)}, "
            f"unpaired maps {unpaired}")


def shown(text: str) -> str:
    """``text`` on one line: control characters of odd file names (newlines) escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def relative_case(case: Case, base: Path) -> Case:
    """The case with paths under ``base`` (the manifest's folder) made relative; others stay absolute."""
    def rel(p: str) -> str:
        if not p:
            return ""
        path, key = split_series_path(p)
        r = os.path.relpath(path, base) if path.is_relative_to(base) else str(path)
        return r if key is None else f"{r}{SERIES_SEP}{key}"

    return replace(case, image=[rel(p) for p in case.image], label=rel(case.label), anatomy=rel(case.anatomy),
                   mask=rel(case.mask))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
