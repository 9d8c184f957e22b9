"""`medmae` command line: one module per command under ``medmae.cli``.

Each command module defines ``register(subparsers)`` which adds its parser and sets
``func`` (called with the parsed ``argparse.Namespace``; returns an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

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


SUBCOMMANDS = {("segment", "evaluate"): "segment evaluate"}
"""Two words parsed as one command by its own parser: ``segment`` takes input files, so
``evaluate`` cannot be an argparse subcommand of it (see :func:`_join_subcommand`)."""

OVERRIDE_EXAMPLES = {
    "preprocess": "spacing=[2,2,2] priors.supervoxels=128",
    "pretrain": "train.steps=2000 masking.strategy=anatomy model.patch_size=[8,8,8]",
    "finetune": "train.steps=500 data.label_cases=2",
    "anomaly": "score.draws=8 evaluation.bootstrap=200",
    "segment evaluate": "label_counts=[2,5] seeds=[0,1] finetune=[train.steps=300]",
}
"""Each configurable command's own keys, shown in its --help (tests/cli/test_help.py applies them)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` only where it says something: not for None, empty or False
    defaults, and not when the help text already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default in (None, [], False, argparse.SUPPRESS)
                or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))):
            return text
        return super()._get_help_string(action)


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _all_parsers(sub)


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
    for p in _all_parsers(parser):  # one help style for every command
        p.formatter_class = HelpFormatter
    return parser


def _join_subcommand(argv: list[str]) -> list[str]:
    """``[-v] segment evaluate ...`` -> ``[-v] "segment evaluate" ...`` (see SUBCOMMANDS)."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] == "--threads" else 1
    name = SUBCOMMANDS.get(tuple(argv[i:i + 2]))
    return [*argv[:i], name, *argv[i + 2:]] if name else argv


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The two config arguments every configurable command takes (the override example in
    its help: the command's own keys, from OVERRIDE_EXAMPLES)."""
    words = parser.prog.split()[1:]
    example = OVERRIDE_EXAMPLES.get(" ".join(words)) or OVERRIDE_EXAMPLES.get(words[0], "section.key=value")
    parser.add_argument("--config", "-c", default=None, help="YAML config file (defaults when omitted)")
    parser.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help=f"dotted config overrides, applied after the file, e.g. {example}")


def require_cache(cache_dir: str) -> None:
    """ConfigError unless ``data.cache_dir`` holds a medmae cache (its index.csv)."""
    from pathlib import Path

    from medmae.config.base import ConfigError

    if not (Path(cache_dir) / "index.csv").is_file():
        raise ConfigError(f"data.cache_dir={cache_dir!r} is not a medmae cache (no index.csv); "
                          "build one with `medmae preprocess`")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(_join_subcommand(sys.argv[1:] if argv is None else list(argv)))
    # argparse does not match a positional after options once an earlier positional was
    # consumed, so `cmd FILE --out X key=value` leaves key=value over: they are overrides.
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not args.verbose:  # MONAI's deprecation notices about its own internals: nothing a user can act on
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"monai(\.|$)")
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
        sub = "evaluate"  # the older form, `segment --config FILE evaluate ...`
    return f"{args.command} {sub}" if sub else str(args.command)


if __name__ == "__main__":
    sys.exit(main())
