"""What every verb of the ``paradis`` command shares: argument types, the
usage-error convention and warnings printed as one line each.

Exit status: 0 success, 2 a usage error (a flag, its value, or a path named on
the command line), 1 a failure while doing the work (corrupt data, a model that
cannot be read, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path
from typing import Iterator

__all__ = ["CommandFailed", "UsageError", "int_at_least", "positive_int", "non_negative_int", "positive_float",
           "non_negative_float", "traffic_ratio", "printed_warnings", "bundle_path"]


class UsageError(ValueError):
    """A command-line argument that cannot work; ``paradis`` exits with 2."""


class CommandFailed(RuntimeError):
    """The work failed (a peer unreachable, inferences lost); ``paradis`` exits with 1."""


def int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum``, with a message naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, received {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def _float_where(accept, wanted: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        # NaN fails every comparison, so `accept` refuses it too.
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, received {text!r}")
        return value

    return parse


positive_float = _float_where(lambda v: 0 < v < float("inf"), "a number > 0")
non_negative_float = _float_where(lambda v: 0 <= v < float("inf"), "a number >= 0")
traffic_ratio = _float_where(lambda v: 0 < v <= 1, "a traffic ratio in (0, 1]")


@contextlib.contextmanager
def printed_warnings() -> Iterator[None]:
    """Warnings as ``warning: ...`` lines on stderr when they happen, without
    Python's ``file:line: UserWarning:`` prefix."""
    with warnings.catch_warnings():
        def show(message, category, filename, lineno, file=None, line=None):
            print(f"warning: {message}", file=sys.stderr)

        warnings.showwarning = show
        yield


def bundle_path(text: str, flag: str = "--bundle") -> Path:
    """A bundle folder, one switch's folder or a fusion graph file named by
    ``flag``; UsageError (a path on the command line) when it is none of them."""
    path = Path(text)
    if not path.exists():
        raise UsageError(f"{flag} {text}: no such folder.")
    if path.is_dir() and not ((path / "manifest.json").is_file() or (path / "fusion_graph.json").is_file()):
        raise UsageError(f"{flag} {text}: no manifest.json or fusion_graph.json there, so it is not a bundle folder; "
                         "pass the folder that 'paradis export --out' wrote.")
    return path
