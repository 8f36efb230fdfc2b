"""The `ptychopinn` console script.

Each sub-command lives in `ptychopinn_plugin.commands.<name>` and exposes
`register(subparsers) -> None`, which adds its parser and sets `func(args) -> int`.
Bad input (ValueError, OSError, CliError) is reported as one line on stderr with exit status 2;
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

COMMANDS = ("simulate", "train", "infer", "evaluate", "convert", "demo", "study")


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ptychopinn", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each epoch (logger 'ptychopinn')")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ptychopinn_plugin.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ptychopinn_plugin.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = args.debug or args.verbose
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, OSError, KeyError) as exc:
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"ptychopinn: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # its message, if any, says what was kept
        print(f"ptychopinn: interrupted{f': {interrupt}' if str(interrupt) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
