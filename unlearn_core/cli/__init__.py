"""Command-line interface: ``python -m unlearn_core <command>``.

Bad arguments print one clear line and exit with code 2; a progress bar is
drawn on a terminal. Output paths are checked before any work starts, and
store, disk and file-system errors are one ``error:`` line too. One module
per command group: :mod:`~unlearn_core.cli.unlearn` (``train``, ``unlearn``),
:mod:`~unlearn_core.cli.runs`, :mod:`~unlearn_core.cli.bench`,
:mod:`~unlearn_core.cli.sweep`, :mod:`~unlearn_core.cli.report` (``report``,
``prepare``) and :mod:`~unlearn_core.cli.info` (``methods``, ``datasets``,
``models``); :mod:`~unlearn_core.cli.common` holds what they share.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys

from unlearn_core.cli import bench, info, report, runs, sweep, unlearn
from unlearn_core.cli.common import EXIT_USAGE, CliError, Parser, TerminalProgress, one_line_warnings
from unlearn_core.errors import Cancelled, UnlearnError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m unlearn_core",
                    description="Unlearning Lab: train, unlearn and evaluate image classifiers.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    unlearn.add_parsers(commands)  # train, unlearn
    runs.add_parsers(commands)
    bench.add_parsers(commands)
    sweep.add_parsers(commands)
    report.add_parsers(commands)  # report, prepare
    info.add_parsers(commands)  # methods, datasets, models
    return parser


def _maybe_deterministic(args):
    """``--deterministic``: the whole command runs in :func:`unlearn_core.device.deterministic_mode` (one thread).

    A sweep or bench on Ray is refused with it: each Ray worker is its own process with its own thread count,
    so the mode would hold in the driver only.
    """
    if not getattr(args, "deterministic", False):
        return contextlib.nullcontext()
    if getattr(args, "engine", "inline") == "ray":
        raise CliError("--deterministic needs --engine inline (a Ray worker would not run in deterministic mode)")
    from unlearn_core.device import deterministic_mode

    return deterministic_mode(threads=1)


def main(argv: list[str] | None = None) -> int:
    with one_line_warnings():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    progress = None
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        handler = getattr(args, "handler", None)
        if handler is None:
            raise CliError(f"unknown command {args.command!r}")
        if args.command in ("methods", "datasets", "models"):  # listings: no progress bar
            return handler(args)
        progress = TerminalProgress(False if getattr(args, "no_progress", False) else None)
        with _maybe_deterministic(args):
            return handler(args, progress)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Cancelled as error:
        print(f"cancelled: {error}", file=sys.stderr)
        return 130
    except UnlearnError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `runs list | head`: the reader left; that is not an error to report (and stdout cannot take one).
        # Point stdout at /dev/null so the flush at exit does not raise again (the recipe of Python's docs).
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        # Disk full, a quota, a file system gone read-only mid-run: one line, not a 19-line traceback.
        from unlearn_core.outputs import describe_os_error

        where = f" ({error.filename!r})" if getattr(error, "filename", None) else ""
        print(f"error: {describe_os_error(error)}{where}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as error:
        print(f"error: run store: {' '.join(str(error).split())[:200]}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if isinstance(progress, TerminalProgress):
            progress.close()
