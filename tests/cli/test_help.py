"""`medmae --help` lists every command, and every command has its own --help."""

import pytest

from medmae.cli.main import COMMANDS, build_parser, main

EXPECTED = ["data", "synth", "preprocess", "pretrain", "export", "anomaly", "finetune", "segment", "demo", "study",
            "config"]


def test_all_commands_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(EXPECTED)
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
