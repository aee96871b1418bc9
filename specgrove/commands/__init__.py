"""CLI subcommands, one module each with ``add_arguments(parser)`` and ``run(args)``.

``UsageError`` lives here, below every subcommand and the dispatcher that catches it.
"""


class UsageError(Exception):
    """Raised by subcommands for bad input; printed as one line, exit code 2."""


def int_list(text: str, flag: str) -> list[int]:
    """A comma-separated list of integers >= 1 (``--batch-sizes 1,4,16``)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"{flag} must list integers >= 1, got {text!r}")
    return values
