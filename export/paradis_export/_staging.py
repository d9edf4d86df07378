"""Write a folder beside its target, then move it into place in one rename.

    with staged(out, overwrite) as tmp:
        ...write into tmp...
    # out now holds tmp's content; on any exception, Ctrl-C or SIGTERM,
    # tmp is removed and out is untouched.

Both signals are also recorded, because the code they interrupt may be a
Python callback inside TensorFlow's C++ (the converter), which can swallow the
exception or hand back another one: a recorded signal still stops the export
before anything is replaced (an exception after Ctrl-C leaves as
KeyboardInterrupt, the original as its cause).

The staging folder is ``.NAME.partial-PID-RANDOM`` beside ``out``, created with
the mode the umask gives (not ``tempfile.mkdtemp``'s 0700, which made the
bundle unreadable to a runtime or web server running as another user).
A process killed with SIGKILL still leaves its folder: the next export of
the same target removes every staging folder of a process that no longer
exists, if this user owns it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import threading
from pathlib import Path
from typing import Iterator

__all__ = ["staged", "stale_partials"]


def _make_dir(parent: Path, prefix: str) -> Path:
    for _ in range(100):
        path = parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()  # mode 0o777 & ~umask, like any folder the user creates
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a staging folder {prefix}* in {parent}.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else
    return True


def stale_partials(out: Path) -> list:
    """Staging folders of ``out`` left by this user's processes that are gone."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(partial|old)-(\d+)-[0-9a-f]+$")
    found = []
    if not out.parent.is_dir():
        return found
    for entry in out.parent.iterdir():
        m = pattern.match(entry.name)
        if not m or not entry.is_dir() or entry.is_symlink():
            continue
        pid = int(m.group(2))
        if m.group(1) == "old" and not out.exists():
            continue  # killed between the two renames: the old bundle is all there is
        if entry.stat().st_uid == os.getuid() and pid != os.getpid() and not _alive(pid):
            found.append(entry)
    return found


class _Terminated(BaseException):
    """SIGTERM arrived while staging; unwinds like KeyboardInterrupt."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[list]:
    """SIGTERM raises inside the block so cleanup runs; afterwards the signal
    is delivered again to whatever handler was there (default: the process
    ends as killed by SIGTERM). Only in the main thread, where Python
    delivers signals, and not when SIGTERM is ignored."""
    received = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        raise _Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _sigint_recorded() -> Iterator[list]:
    """SIGINT goes to the handler that was there (Python's: KeyboardInterrupt)
    and is recorded. Only in the main thread, and only when that handler is a
    Python function (not when SIGINT is ignored or left to the OS)."""
    received: list = []
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def staged(out: Path, overwrite: bool) -> Iterator[Path]:
    out = Path(os.path.abspath(out))  # "runs/b/.." or "b/." has no usable name to stage beside
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_partials(out):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        with _sigterm_unwinds() as received, _sigint_recorded() as interrupted:
            tmp = _make_dir(out.parent, f".{out.name}.partial-")
            try:
                try:
                    yield tmp
                except (KeyboardInterrupt, _Terminated):
                    raise
                except BaseException as e:
                    if interrupted:  # Ctrl-C came back as another exception
                        raise KeyboardInterrupt from e
                    raise
                # A handler's exception swallowed by code it interrupted (a
                # Python callback inside TensorFlow's C++): stop here.
                if received:
                    raise _Terminated()
                if interrupted:
                    raise KeyboardInterrupt
                if out.exists():
                    if not overwrite:
                        raise FileExistsError(f"out: {out} appeared while exporting; nothing was replaced.")
                    old = _make_dir(out.parent, f".{out.name}.old-")
                    out.rename(old / out.name)
                    tmp.rename(out)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    tmp.rename(out)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except _Terminated:
        # Cleaned up above; now end as SIGTERM would have ended us.
        signal.raise_signal(signal.SIGTERM)
        raise InterruptedError("export interrupted by SIGTERM; nothing was written.") from None
