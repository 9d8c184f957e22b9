"""`medmae config reference [--out docs/config.md] [--check]`: the generated config reference."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("config", help="configuration reference",
                              description="Tools for the config schemas.")
    sub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    ref = sub.add_parser("reference", help="write the configuration reference (Markdown)",
                         description="Every key of every command's config with type, default and meaning.")
    ref.add_argument("--out", "-o", default=None, help="file to write (default: print)")
    ref.add_argument("--check", action="store_true", help="exit 1 when --out differs from the schemas")
    ref.set_defaults(func=run_reference)


def run_reference(args: argparse.Namespace) -> int:
    from medmae.atomic import atomic_write_text
    from medmae.config.reference import render

    text = render()
    if args.out is None:
        print(text, end="")
        return 0
    out = Path(args.out)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.is_file() else ""
        if current != text:
            print(f"{out} is out of date: run `medmae config reference --out {out}`", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(out, text)
    print(f"wrote {out}")
    return 0
