"""`medmae synth`: generate brain MR or abdominal CT phantoms with labels and lesions."""

from __future__ import annotations

import argparse
import logging
import time

from tqdm import tqdm

log = logging.getLogger("medmae.synth")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="generate phantoms with labels and lesions",
        description="Write N phantoms (NIfTI image, anatomy label map, optional lesion mask) and a "
                    "manifest.csv that `medmae preprocess` reads.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--kind", choices=["brain", "abdomen"], required=True,
                   help="brain: T1 MR head with tissue classes; abdomen: CT in HU with organ ids")
    p.add_argument("--n", type=int, default=4, help="number of cases (default 4)")
    p.add_argument("--lesions", action="store_true",
                   help="insert lesions (brain: white-matter blobs, abdomen: hypodense liver lesions) "
                        "and write their masks as the manifest's label")
    p.add_argument("--brain-mask", action="store_true",
                   help="brain only: also write each case's brain mask (the intracranial tissues) as "
                        "the manifest's mask, so preprocessing works inside the brain as for "
                        "skull-stripped scans")
    p.add_argument("--seed", type=int, default=0, help="base seed; case i uses (seed, i)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), default=None,
                   help="grid size (default brain 96^3, abdomen 128x96x64)")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("SX", "SY", "SZ"), default=None,
                   help="voxel size in mm (default brain 2 mm, abdomen 3x3x3.5; with --shape alone "
                        "the default field of view is kept)")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="fraction of cases (the last ones) put in split 'val' (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medmae.config.base import ConfigError
    from medmae.synth.phantom import default_grid
    from medmae.synth.write import finish, generate

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    if args.brain_mask and args.kind != "brain":
        raise ConfigError(f"--brain-mask: {args.kind} phantoms have no brain mask")
    if not 0.0 <= args.val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    try:
        default_grid(args.kind, args.shape, args.spacing)
    except ValueError as e:
        raise ConfigError(f"--shape/--spacing: {e}") from None
    start = time.time()
    cases = []
    rows = generate(args.out, args.kind, args.n, seed=args.seed, lesions=args.lesions, shape=args.shape,
                    spacing=args.spacing, val_fraction=args.val_fraction, brain_mask=args.brain_mask)
    for case in tqdm(rows, total=args.n, desc=f"synth {args.kind}", unit="case"):
        cases.append(case)
    manifest = finish(args.out, cases)
    log.info("wrote %d %s phantoms and %s in %.1f s", len(cases), args.kind, manifest, time.time() - start)
    return 0
