"""The ``specgrove`` command line: a thin dispatcher that imports each subcommand lazily.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Only the chosen subcommand's module is imported, so ``specgrove sim``
or ``specgrove policies`` never pay for importing torch.

Bad input ends with one line on stderr, ``specgrove: error: ...``, and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from specgrove import __version__
from specgrove.commands import UsageError

# name -> (module, one-line help). The module is imported only when the subcommand runs.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "policies": ("specgrove.commands.policies", "list every registered policy by kind"),
    "generate": ("specgrove.commands.generate", "stream a prompt's continuation with speculative decoding"),
    "bench": ("specgrove.commands.bench", "benchmark methods and batch sizes; writes JSON, markdown and a plot"),
    "showcase": (
        "specgrove.commands.showcase",
        "run every tree policy on a synthetic draft/target pair and compare tau",
    ),
    "sim": ("specgrove.commands.sim", "simulate a serving scenario (TOML) and write its metrics"),
    "sweep": ("specgrove.commands.sweep", "simulate variants of a scenario in parallel; table and plot"),
    "calibrate": ("specgrove.commands.calibrate", "fit the simulator's cost and acceptance models to step traces"),
    "replay": ("specgrove.commands.replay", "replay a recorded real run in the simulator under other policies"),
    "validate": ("specgrove.commands.validate", "run the same workload on the real executor and the calibrated simulator; errors and rankings"),
    "profile": ("specgrove.commands.profile", "time forwards of a model shape with random weights; fit and roofline error"),
    "serve": ("specgrove.commands.serve", "serve the engine over an OpenAI-compatible HTTP API"),
    "load": ("specgrove.commands.load", "replay a timed workload against a server, open loop; CSV and summary"),
    "study": ("specgrove.commands.study", "dynamic against static trees: real runs and simulated clusters; report.md"),
    "dashboard": ("specgrove.commands.dashboard", "the Streamlit app: what-if runs, sweeps, executor results, studies"),
    "presets": ("specgrove.commands.presets", "list the simulator's GPU, link, model and pair presets with their figures"),
    "capacity": ("specgrove.commands.capacity",
                 "find the highest request rate a scenario serves within an SLO, per tree policy"),
}

DESCRIPTION = """\
specgrove: dynamic-tree speculative decoding, from one GPU to a cluster. A small draft model
proposes a tree of candidate tokens whose shape a policy picks per request and per step; the
target model verifies the whole tree in one forward. The executor runs real models (generate,
bench, profile, calibrate); the simulator (sim, sweep, capacity, replay, validate) predicts
latency, throughput and SLO goodput of a serving deployment across GPUs and nodes from a
scenario file; serve exposes the engine over an OpenAI-compatible HTTP API and load replays
timed workloads against it. `specgrove COMMAND --help` describes each command."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (when it has one that is not already said)
    and its choices (when a metavar hides them); descriptions keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.help is argparse.SUPPRESS:
            return text
        if action.choices is not None and action.metavar is not None and "choices" not in text:
            text += " (choices: " + ", ".join(str(c) for c in action.choices).replace("%", "%%") + ")"
        default = action.default
        shown = action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
        if (shown and "default" not in text and "%(default)" not in text
                and default not in (None, False, [], argparse.SUPPRESS)):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage dump
        raise UsageError(message)


def _peek_subcommand(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = _Parser(prog="specgrove", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"specgrove {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, title="commands")
    chosen = _peek_subcommand(argv)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
        if args.command is None:
            build_parser(["--help"]).print_help()
            return 2
        module = importlib.import_module(SUBCOMMANDS[args.command][0])
        return int(module.run(args) or 0)
    except UsageError as exc:
        print(f"specgrove: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("specgrove: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`specgrove generate ... | head`): stop quietly. Point
        # stdout at devnull so the interpreter's flush at exit does not fail again (Python docs,
        # "Note on SIGPIPE").
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # no file descriptor behind stdout (an embedding caller)
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
