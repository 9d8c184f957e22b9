"""`medmae --help` lists every command, and every command has its own --help."""

import pytest

from medmae.cli.main import COMMANDS, build_parser, main

EXPECTED = ["data", "synth", "preprocess", "pretrain", "export", "anomaly", "finetune", "segment", "demo", "study",
            "config"]


def test_all_commands_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(c.dest for c in sub._choices_actions) == sorted(EXPECTED)  # listed in `medmae --help`
    assert sorted(sub.choices) == sorted([*EXPECTED, "segment evaluate"])  # `segment evaluate`: its own parser
    assert len(COMMANDS) == len(EXPECTED)


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in EXPECTED:
        assert name in out


@pytest.mark.parametrize("argv", [[c, "--help"] for c in EXPECTED] + [["data", "scan", "--help"], ["study", "run", "--help"],
                                                                     ["config", "reference", "--help"],
                                                                     *[["anomaly", s, "--help"] for s in
                                                                       ("score", "calibrate", "evaluate", "report")]])
def test_each_command_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage: medmae" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def _parsers(parser, path=()):
    """(command words, parser) of every command and subcommand, hidden ones included."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, *name.split()))


def _walk():
    return [(words, p) for words, p in _parsers(build_parser()) if words]


@pytest.mark.parametrize("words", [w for w, _ in _walk()], ids=" ".join)
def test_every_subcommand_has_its_own_help_and_every_option_says_what_it_is(words, capsys):
    """`medmae <words> --help` prints that command's own usage (`segment evaluate` too), every
    argument has help text, and no help says its default twice or shows a meaningless one."""
    import argparse
    import re

    with pytest.raises(SystemExit) as e:
        main([*words, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: medmae {' '.join(words)} "), out[:200]
    parser = dict(_walk())[words]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"medmae {' '.join(words)}: {name} has no help"
        if action.help == argparse.SUPPRESS:  # deliberately hidden (an older spelling)
            continue
        text = formatter._expand_help(action)
        assert len(re.findall(r"\(default\b", text)) <= 1, f"{name}: {text}"
        assert not re.search(r"\(default: (None|\[\]|False)\)", text), f"{name}: {text}"


def test_override_examples_are_each_commands_own_keys():
    """The KEY=VALUE example in each configurable command's help validates in its own schema."""
    import re

    from medmae.config.base import load_config
    try:  # where the pretraining schema lives (config.schema re-exports it)
        from medmae.training.pretrain_config import PretrainConfig
    except ImportError:
        from medmae.training.pretrain_config import PretrainConfig
    from medmae.heads.anomaly.config import AnomalyConfig
    from medmae.heads.segmentation.config import FinetuneConfig
    from medmae.heads.segmentation.evaluate import EvaluateConfig
    from medmae.preprocess.config import PreprocessConfig

    schemas = {"preprocess": PreprocessConfig, "pretrain": PretrainConfig, "finetune": FinetuneConfig,
               "anomaly": AnomalyConfig, "segment evaluate": EvaluateConfig, "demo": PretrainConfig}
    seen = set()
    for words, parser in _walk():
        (action,) = [a for a in parser._actions if a.dest == "overrides"] or [None]
        if action is None or action.help is None:
            continue
        example = re.search(r"e\.g\. (.*)$", action.help).group(1).split()
        assert example != ["section.key=value"], f"medmae {' '.join(words)}: add its example to OVERRIDE_EXAMPLES"
        key = " ".join(words) if " ".join(words) in schemas else words[0]
        load_config(schemas[key], None, example)  # raises on a key the command does not have
        seen.add(key)
    assert seen >= set(schemas) - {"demo"}


def test_segment_evaluate_runs_as_its_own_command(monkeypatch, tmp_path):
    """`segment evaluate` parses its config and overrides with its own parser (and the older
    `segment --config FILE evaluate` form still works)."""
    import medmae.cli.segment as segment

    calls = []
    monkeypatch.setattr(segment, "evaluate", lambda config, overrides: calls.append((config, overrides)) or 0)
    assert main(["-v", "segment", "evaluate", "--config", "e.yaml", "split=val", "seeds=[0,1]"]) == 0
    assert main(["segment", "--config", "e.yaml", "evaluate", "split=val"]) == 0
    assert calls == [("e.yaml", ["split=val", "seeds=[0,1]"]), ("e.yaml", ["split=val"])]
