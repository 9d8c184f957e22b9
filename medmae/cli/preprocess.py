"""`medmae preprocess MANIFEST --out CACHE_DIR [--config FILE] [--workers N] [KEY=VALUE ...]`."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    from medmae.cli.main import add_config_args

    p = subparsers.add_parser(
        "preprocess", help="build the memory-mappable cache from a manifest",
        description="Reorient to RAS, resample, mask the body, crop, normalise and compute priors "
                    "for every manifest case; write CACHE_DIR/cases/<id>/ plus index.csv, "
                    "report.csv (bad cases), config.yaml and fingerprint.json. Re-runs skip "
                    "cases whose sources and config are unchanged.")
    p.add_argument("manifest", help="manifest CSV (from `medmae data scan` or `medmae synth`)")
    p.add_argument("--out", "-o", required=True, help="cache folder to write")
    p.add_argument("--workers", "-j", type=int, default=None,
                   help="worker processes (0 = in this process; default: config's workers)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0 when at least one case is cached (bad cases are listed), 1 when none is."""
    from medmae.config.base import load_config
    from medmae.preprocess.batch import CacheBusyError, preprocess_manifest
    from medmae.preprocess.config import PreprocessConfig

    cfg = load_config(PreprocessConfig, args.config, args.overrides)
    if args.workers is not None:
        if args.workers < 0:
            print("medmae preprocess: error: --workers must be >= 0", file=sys.stderr)
            return 2
        cfg.workers = args.workers
    try:
        report = preprocess_manifest(args.manifest, args.out, cfg, progress=not args.no_progress)
    except (ValueError, CacheBusyError) as e:  # unreadable manifest, cache in use
        print(f"medmae preprocess: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0 if report.done or report.skipped or not report.bad else 1
