"""The ``paradis`` command: one module per verb (train, export, inspect, peer, run, profile, plan).

The only package that imports the training side, the exporter and the
runtime together. Only the verb being run is imported and given its flags,
so ``paradis --help`` answers without loading Keras or TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from paradis_cli import _interrupt as interrupt
from paradis_cli._common import CommandFailed, UsageError

__all__ = ["main", "UsageError", "VERBS"]

VERBS = ("train", "export", "inspect", "peer", "run", "profile", "plan", "serve-web", "demo")


def parser(verb: Optional[str] = None) -> argparse.ArgumentParser:
    """The command's parser; ``verb``'s sub-parser also gets its flags."""
    top = argparse.ArgumentParser(
        prog="paradis", description="paradis-tf: split models across devices.",
        epilog="Exit status: 0 success, 2 usage error (a flag or its value), 1 failure.")
    sub = top.add_subparsers(dest="command", required=True)
    for name in VERBS:
        module = importlib.import_module(f"paradis_cli.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        if name == verb:
            module.add_arguments(p)
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``paradis ARGV``; returns the exit status (argparse exits 2 itself)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    args = parser(verb if verb in VERBS else None).parse_args(argv)
    module = importlib.import_module(f"paradis_cli.{args.command.replace('-', '_')}")
    try:
        with interrupt.recorded():  # a Ctrl-C that TensorFlow mangled still exits 130
            module.run(args)
    except UsageError as e:
        print(f"paradis {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"paradis {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, CommandFailed) as e:
        # FileNotFoundError, FileExistsError and FusionGraphError are among these.
        print(f"paradis {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0
