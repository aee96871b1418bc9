"""``specgrove policies``: every registered policy, by kind, with its description."""

from __future__ import annotations

import argparse
import json

from specgrove import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    entries = registry.entries()
    if args.json:
        print(json.dumps([{"kind": e.kind, "name": e.name, "description": e.description} for e in entries], indent=2))
        return 0
    width = max(len(e.name) for e in entries)
    for kind in registry.KINDS:
        print(f"{kind}:")
        rows = [e for e in entries if e.kind == kind]
        for e in rows:
            print(f"  {e.name:<{width}}  {e.description}")
        if not rows:
            print("  (none registered yet)")
    return 0
