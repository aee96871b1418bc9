"""CLI subcommands, one module each with ``add_arguments(parser)`` and ``run(args)``.

``UsageError`` lives here, below every subcommand and the dispatcher that catches it.
"""


class UsageError(Exception):
    """Raised by subcommands for bad input; printed as one line, exit code 2."""
