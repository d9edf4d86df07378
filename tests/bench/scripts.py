"""A bench script loaded by path for its tests: bench/ is not a package, and
its scripts import their helpers as ``_common``."""

import importlib.util
import os
import sys

BENCH = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "bench"))


def load(filename: str):
    """bench/``filename`` as a module named bench_<stem>."""
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    spec = importlib.util.spec_from_file_location(f"bench_{filename[:-3]}", os.path.join(BENCH, filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
