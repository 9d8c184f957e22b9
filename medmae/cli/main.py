"""`medmae` command line: one module per command under ``medmae.cli``.

Each command module defines ``register(subparsers)`` which adds its parser and sets
``func`` (called with the parsed ``argparse.Namespace``; returns an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from medmae import __version__

# (module, help) in the order `medmae --help` lists them.
COMMANDS = [
    ("medmae.cli.data", "find scans and write a manifest (data scan)"),
    ("medmae.cli.synth", "generate phantoms with labels and lesions"),
    ("medmae.cli.preprocess", "build the memory-mappable cache from a manifest"),
    ("medmae.cli.pretrain", "pretrain a 3D masked autoencoder"),
    ("medmae.cli.export", "export a pretrained encoder for downstream networks"),
    ("medmae.cli.anomaly", "anomaly maps, healthy calibration, evaluation and report"),
    ("medmae.cli.finetune", "fine-tune a segmentation head on a pretrained encoder"),
    ("medmae.cli.segment", "segment scans with a fine-tuned model; evaluate it"),
    ("medmae.cli.demo", "run the CPU demo end to end"),
    ("medmae.cli.study", "run, show and list reproducible studies"),
    ("medmae.cli.config", "configuration reference generated from the schemas"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medmae",
        description="Self-supervised masked autoencoders for 3D medical scans.",
    )
    parser.add_argument("--version", action="version", version=f"medmae {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="compute threads (default: the cores this process may use, from its CPU affinity "
                             "and cgroup quota; $OMP_NUM_THREADS when set)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, _help in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The two config arguments every configurable command takes."""
    parser.add_argument("--config", "-c", default=None, help="YAML config file (defaults when omitted)")
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="KEY=VALUE",
        help="dotted overrides, e.g. train.base_lr=1e-4 model.patch_size=[8,8,8]",
    )


def require_cache(cache_dir: str) -> None:
    """ConfigError unless ``data.cache_dir`` holds a medmae cache (its index.csv)."""
    from pathlib import Path

    from medmae.config.base import ConfigError

    if not (Path(cache_dir) / "index.csv").is_file():
        raise ConfigError(f"data.cache_dir={cache_dir!r} is not a medmae cache (no index.csv); "
                          "build one with `medmae preprocess`")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse does not match a positional after options once an earlier positional was
    # consumed, so `cmd FILE --out X key=value` leaves key=value over: they are overrides.
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from medmae.training.threads import configure_process_threads

    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1 (got {args.threads})")
    configure_process_threads(args.threads)  # before PyTorch loads (medmae/training/threads.py)
    from medmae.config.base import ConfigError
    from medmae.interrupts import exit_code, sigterm_interrupts
    from medmae.io.errors import ScanError

    try:
        with sigterm_interrupts():  # SIGTERM stops every command as Ctrl-C does (exit 143)
            return int(args.func(args) or 0)
    except (ConfigError, ScanError) as e:
        print(f"medmae {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        code = exit_code(e)
        print(f"medmae {command_name(args)}: {e or 'interrupted'} (exit {code}); what was complete before "
              "the signal is kept", file=sys.stderr)
        return code


def command_name(args: argparse.Namespace) -> str:
    """``anomaly score``, ``segment evaluate``, ``study run``, ... for messages."""
    sub = getattr(args, "anomaly_command", None) or getattr(args, "study_command", None)
    if args.command == "segment" and getattr(args, "inputs", None) and args.inputs[0] == "evaluate":
        sub = "evaluate"
    return f"{args.command} {sub}" if sub else str(args.command)


if __name__ == "__main__":
    sys.exit(main())
