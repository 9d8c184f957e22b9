"""`medmae preprocess MANIFEST --out CACHE_DIR [--config FILE] [--workers N] [--shard I/N | --merge] [KEY=VALUE ...]`."""

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
    p.add_argument("--max-image-mb", type=float, default=None, metavar="MB",
                   help="largest image read, in MB of voxel data, checked from the header before reading "
                        "(default: 2048 or an eighth of the memory; env MEDMAE_MAX_IMAGE_MB)")
    p.add_argument("--allow-outside-data", action="store_true",
                   help="read .mhd/.nhdr headers whose data file lies outside the header's folder")
    p.add_argument("--shard", metavar="I/N", default=None,
                   help="process only share I of N (I = 1..N) of the manifest into a shared cache, "
                        "e.g. one SLURM array task each; finish with --merge")
    p.add_argument("--merge", action="store_true",
                   help="after all --shard runs: write index.csv, report.csv, config.yaml and "
                        "fingerprint.json from the cached cases")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0 when at least one case is cached (bad cases are listed), 1 when none is."""
    from medmae.config.base import load_config
    from medmae.preprocess.batch import CacheBusyError, preprocess_manifest
    from medmae.preprocess.config import PreprocessConfig
    from medmae.preprocess.output import OutputError
    from medmae.preprocess.shard import merge_shards, parse_shard, preprocess_shard

    cfg = load_config(PreprocessConfig, args.config, args.overrides)
    if args.workers is not None:
        if args.workers < 0:
            print("medmae preprocess: error: --workers must be >= 0", file=sys.stderr)
            return 2
        cfg.workers = args.workers
    from medmae.io.limits import allow_outside_data, set_max_image_mb

    try:
        set_max_image_mb(args.max_image_mb)
    except ValueError as e:
        print(f"medmae preprocess: error: {e}", file=sys.stderr)
        return 2
    allow_outside_data(args.allow_outside_data)
    if args.shard and args.merge:
        print("medmae preprocess: error: --shard and --merge are separate runs", file=sys.stderr)
        return 2
    try:
        if args.merge:
            report = merge_shards(args.manifest, args.out, cfg)
            print(f"merged {len(report.skipped)} cached case(s), bad {len(report.bad)} -> {args.out}")
            print("\n".join(report.lines()[1:]))
            return 0 if report.skipped or not report.bad else 1
        if args.shard:
            index, count = parse_shard(args.shard)
            report = preprocess_shard(args.manifest, args.out, cfg, index, count, progress=not args.no_progress)
            print(f"shard {index}/{count}: " + "\n".join(report.lines()))
            if report.stopped is not None:
                print(f"medmae preprocess: error: {report.stopped}", file=sys.stderr)
                return 1
            return 0 if report.done or report.skipped or not report.bad else 1
        report = preprocess_manifest(args.manifest, args.out, cfg, progress=not args.no_progress)
    except (ValueError, CacheBusyError) as e:  # unreadable manifest, bad --shard, cache in use
        print(f"medmae preprocess: error: {e}", file=sys.stderr)
        return 2
    except OutputError as e:  # read-only or full cache folder: one line, no traceback
        print(f"medmae preprocess: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the same from --shard / --merge bookkeeping
        from medmae.io.errors import write_problem

        print(f"medmae preprocess: error: {args.out}: {write_problem(args.out, e)}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    if report.stopped is not None:
        print(f"medmae preprocess: error: {report.stopped}", file=sys.stderr)
        return 1
    return 0 if report.done or report.skipped or not report.bad else 1
