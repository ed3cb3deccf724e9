"""What every command of the CLI shares: the one-line error parser, progress bars, number and output
checks, the store a command records into, and how library warnings print.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings

from unlearn_core.errors import UnlearnWarning
from unlearn_core.parsing import ascii_int
from unlearn_core.progress import ProgressEvent
from unlearn_core.store import MAX_ROW_ID

EXIT_USAGE = 2


class CliError(Exception):
    """A usage error to print as one line."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise CliError(message)


class TerminalProgress:
    """A tqdm bar per stage when stderr is a terminal; silent otherwise."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        self.stage = None

    def __call__(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if event.stage != self.stage:
            self.close()
            self.stage = event.stage
            self.bar = tqdm(total=1000, desc=event.stage, file=sys.stderr, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
        self.bar.n = int(event.fraction * 1000)
        postfix = f"epoch {event.epoch}/{event.epochs}" if event.epochs else ""
        if event.loss is not None:
            postfix += f" loss {event.loss:.4f}"
        if event.accuracy is not None:
            postfix += f" acc {event.accuracy:.1f}%"
        self.bar.set_postfix_str(postfix.strip(), refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def parse_param_pairs(pairs: list[str] | None) -> dict[str, str]:
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--param expects KEY=VALUE, got {pair!r}")
        params[key.strip()] = value.strip()
    return params


def whole_number(low: int | None = None, high: int = MAX_ROW_ID):
    """An argparse type: ASCII digits only (``int()`` takes ``٣`` and ``1_000``), within [low, high]."""
    def parse(text: str) -> int:
        try:
            value = ascii_int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text[:40]!r} (whole numbers in digits 0-9)") \
                from None
        if (low is not None and value < low) or value > high:
            span = f"from {low} to {high}" if low is not None else f"up to {high}"
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is out of range: give a whole number {span}")
        return value
    return parse


def store_for_recording(path):
    """The run store a command will record into, refused before the work if it is read-only or the
    checkpoint quota setting is bad (both would otherwise only fail when the first run is recorded)."""
    from unlearn_core.store import RunStore, run_checkpoint_quota_bytes

    store = RunStore(path)
    store.require_writable()
    run_checkpoint_quota_bytes()
    return store


def check_outputs(named: dict[str, str | None], store_path=None) -> None:
    """Check every output path of a command before any work (one line naming the option on failure).

    Reused by every command that writes files (``sweep`` too): a run must never finish only to lose its
    report on an unwritable ``--json``.
    """
    from unlearn_core.outputs import check_output_paths

    check_output_paths(named, store_path)


def human_stream(*paths):
    """Where human-readable text goes: standard error when an output file is ``-`` (standard output holds the data)."""
    from unlearn_core.outputs import STDOUT

    return sys.stderr if any(path == STDOUT for path in paths) else sys.stdout


def write_output(path: str, data: bytes, option: str) -> None:
    from unlearn_core.outputs import write_output_bytes

    write_output_bytes(path, data, what=f"{option} output")


@contextlib.contextmanager
def one_line_warnings():
    """Print the library's own warnings (a skipped run, a pruned checkpoint) as one ``warning:`` line each."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UnlearnWarning):
            print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UnlearnWarning)
        warnings.showwarning = show
        yield


def add_common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--dataset", default="mnist5k", help="data set name (default: mnist5k); see `datasets`")
    sub.add_argument("--model", default=None, help="model name (default: the data set's default); see `models`")
    # 2**32 - 1 is forget.MAX_SEED, not imported here because forget pulls in torch for --help.
    sub.add_argument("--seed", type=whole_number(0, 2**32 - 1), default=0,
                     help="seed for weights, splits and methods (default: 0)")
    sub.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda[:N] or mps")
    sub.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")
    add_deterministic(sub)


def add_maps_flag(sub: argparse.ArgumentParser, stores: str) -> None:
    """``--maps REDUCERS``: which Embeddings maps a command computes and stores (``stores`` says which panels)."""
    sub.add_argument("--maps", default="pca,umap", metavar="REDUCERS",
                     help=f"store {stores} for the app's Embeddings page, comma separated: pca, umap "
                          "(default pca,umap; 'none' for no maps)")


def parse_maps(text: str) -> tuple[str, ...]:
    """The reducers of a ``--maps`` value (``none``: no maps); an unknown one is a usage error."""
    from unlearn_core.embeddings import REDUCERS

    if text.strip().lower() == "none":
        return ()
    maps = tuple(dict.fromkeys(m.strip().lower() for m in text.split(",") if m.strip()))
    unknown = [m for m in maps if m not in REDUCERS]
    if unknown or not maps:
        shown = repr(unknown[0][:40]) if unknown else "(empty)"
        raise CliError(f"--maps: unknown reducer {shown}; choose from {', '.join(REDUCERS)}, or none")
    return maps


def installed_maps(maps: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    """``maps`` without UMAP when umap-learn is not installed (a library-only install), and a note saying so
    ("" when nothing was dropped)."""
    from unlearn_core.umapfit import umap_installed

    if "umap" not in maps or umap_installed():
        return maps, ""
    return (tuple(m for m in maps if m != "umap"),
            "UMAP skipped: umap-learn is not installed; pip install 'unlearning-lab[app]'")


def add_deterministic(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--deterministic", action="store_true",
                     help="torch's deterministic algorithms and one torch thread, so the same seed gives the same "
                          "weights whatever the machine's core count (docs/REPRODUCIBILITY.md; slower)")


def write_json(path: str, payload: dict, option: str = "--json") -> None:
    write_output(path, (json.dumps(payload, indent=2) + "\n").encode(), option)


def write_text(path: str, text: str, option: str = "--out") -> None:
    write_output(path, (text + "\n").encode(), option)


def fmt_number(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    try:
        return f"{value:.{digits}f}"
    except (TypeError, ValueError):  # a hand-edited row: show it, do not fail the listing
        return "?"


def cell_text(value, width: int | None = None) -> str:
    """A stored value for a table cell: one line, no control characters, cut to ``width``."""
    text = " ".join(str("" if value is None else value).split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if width is None else text[:width]


def whole_text(text: str | None, flag: str, low: int, high: int) -> int | None:
    """An ASCII whole number in [low, high] (``int()`` would also take '٣' or '1_0')."""
    if text is None:
        return None
    text = str(text).strip()
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise CliError(f"{flag} must be a whole number from {low} to {high}, got {text!r}")
    return int(text)


#: The evidence kinds as help text lists them (unlearn_core.evidence.ALL_KINDS, written out so that building the
#: parser imports no torch; tests/test_cli.py checks the two agree).
EVIDENCE_HELP_KINDS = "probe, relearn, curves, cka, relearn_retain"


def add_evidence_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--evidence", default=None, metavar="KINDS",
                     help="evidence of forgetting for every method run, comma-separated: "
                          f"{EVIDENCE_HELP_KINDS} (or all); see docs/EVIDENCE.md")
    sub.add_argument("--evidence-param", action="append", metavar="KIND.KEY=VALUE",
                     help="an evidence parameter (repeatable), e.g. relearn.lr=0.05")


def evidence_request(args) -> dict | None:
    """``--evidence`` and ``--evidence-param`` as the plain dict a sweep carries (checked before any work)."""
    from unlearn_core.evidence import EvidenceRequest

    request = EvidenceRequest.parse(args.evidence, parse_param_pairs(args.evidence_param))
    return None if request is None else request.as_dict()
