"""Ctrl-C that always ends a command as "interrupted" (exit 130).

Python turns SIGINT into KeyboardInterrupt in whatever Python code runs next.
When that code is a callback inside TensorFlow's C++ (tracing a train step,
converting a model), the exception can be swallowed, so the work goes on as if
no key was pressed, or can come back as another exception (seen in CI:
``SystemError: Objects/listobject.c:338: bad argument to internal function``
from Keras' train step), a traceback and exit 1. So the signal is also
recorded: ``recorded()`` turns any exception that follows it into
KeyboardInterrupt, and long work calls ``check()`` at points where stopping is
safe (``paradis train``: every batch) to act on a signal that was swallowed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["check", "recorded"]

# SIGINTs received inside the innermost recorded() block (signals are per process).
_received: list = []


def check() -> None:
    """Raises KeyboardInterrupt if SIGINT arrived, even if it was swallowed."""
    if _received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def recorded() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt as usual and is remembered; an exception
    leaving the block after one becomes KeyboardInterrupt (the original is its
    ``__cause__``). A no-op outside the main thread, where Python does not
    deliver signals, and when SIGINT is ignored (a background job's)."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is signal.SIG_IGN:
        yield
        return

    def handler(signum, frame):
        _received.append(signum)
        raise KeyboardInterrupt

    _received.clear()
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        if _received:
            raise KeyboardInterrupt from e
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
        _received.clear()
