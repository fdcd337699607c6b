"""The ``brachycryo`` command: a thin argparse layer over the Python API.

Each subcommand lives in its own module under :mod:`brachycryo.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (pydicom's CLI pattern).
Command modules are imported only when the CLI starts, never by the library.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys

from brachycryo import __version__
from brachycryo.core.errors import BrachyCryoError
from brachycryo.core.warnings_channel import warning_channel

# Order is the order shown by ``brachycryo --help``.
COMMAND_MODULES = (
    "brachycryo.cli.phantom",
    "brachycryo.cli.info",
    "brachycryo.cli.dose",
    "brachycryo.cli.dvh",
    "brachycryo.cli.dvh_batch",
    "brachycryo.cli.outcomes",
    "brachycryo.cli.iceball",
    "brachycryo.cli.plan",
    "brachycryo.cli.postimplant",
    "brachycryo.cli.followup",
    "brachycryo.cli.demo",
    "brachycryo.cli.robust",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brachycryo",
        description="Treatment planning for I-125 seed brachytherapy combined with cryoablation.",
    )
    parser.add_argument("--version", action="version", version=f"brachycryo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is being done")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        with warning_channel():  # Python, pydicom and our warnings: logged, each once
            return int(args.func(args) or 0)
    except BrachyCryoError as exc:
        print(f"brachycryo {args.command_name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"brachycryo {args.command_name}: interrupted", file=sys.stderr)
        return 130


def entry_point() -> int:
    """The process entry (the ``brachycryo`` console script and ``python -m brachycryo.cli``):
    :func:`main`, then every object left is moved out of the garbage collector's reach
    (:func:`gc.freeze`), so the interpreter's exit does not traverse them again: the final
    collections over numba's type registries cost a ``brachycryo dvh`` process 0.15 s of CPU
    (of about 2).  Not done in :func:`main` itself: a long-lived caller (the tests) keeps
    its collector."""
    code = main()
    gc.freeze()
    return code
