"""``specgrove --help`` says what the tool is and lists its commands; every subcommand's
``--help`` shows its defaults and choices."""

import argparse

import pytest

from specgrove.cli import SUBCOMMANDS, HelpFormatter, build_parser, main


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser([name])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_top_level_help_describes_the_tool_and_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for words in ("speculative decoding", "executor", "simulator", "serve", "GPUs"):
        assert words in out
    for name, (_, help_text) in SUBCOMMANDS.items():
        assert f"    {name}" in out, name
    assert "presets" in SUBCOMMANDS and "capacity" in SUBCOMMANDS


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_option_with_a_default_shows_it(name):
    parser = _subparser(name)
    assert parser.formatter_class is HelpFormatter
    help_text = parser.format_help()
    formatter = HelpFormatter(parser.prog)
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        line = formatter._get_help_string(action) % {"default": action.default}
        if action.default not in (None, False, [], argparse.SUPPRESS):
            assert "default" in line, f"{name} {action.option_strings[0]}: {line}"
        if action.choices is not None:
            shown = help_text if action.metavar is None else line
            assert all(str(c) in shown for c in action.choices), f"{name} {action.option_strings[0]}"


def test_defaults_rendered(capsys):
    with pytest.raises(SystemExit):
        main(["capacity", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.05)" in out and "(default: 12)" in out
    with pytest.raises(SystemExit):
        main(["presets", "--help"])
    out = capsys.readouterr().out
    assert "{gpus,links,models,pairs}" in out
