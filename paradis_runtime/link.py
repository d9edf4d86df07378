"""Link emulation in the sender, exactly as FRAME_FORMAT.md section 9 says.

``tc netem`` is missing on these machines, so a benchmark asks each sender to
hold every frame as long as a link of ``mbps`` and one-way ``latency_ms``
would: per directed link, frame i of n_i bytes queued at t_i starts at
``max(t_i, finish_{i-1})``, finishes ``8 n_i / bandwidth`` later, and is
written at ``finish_i + latency``. Bandwidth delays add up across frames,
latency delays overlap, order is kept. Off by default; every result measured
with it says so (``Link.describe``).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["Link", "LinkWriter"]

# OS sleeps overshoot ~0.09 ms here: busy-wait only the last 0.12 ms (a spin
# steals the core the device computes on).
_SPIN_S = 0.00012


@dataclass(frozen=True)
class Link:
    """An emulated link: ``mbps`` megabits per second (0 = unlimited) and a
    one-way ``latency_ms``."""

    mbps: float = 0.0
    latency_ms: float = 0.0

    def __post_init__(self):
        for name in ("mbps", "latency_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Link: {name} must be a finite number >= 0, received {value!r}.")

    @property
    def active(self) -> bool:
        return self.mbps > 0 or self.latency_ms > 0

    def transfer_s(self, nbytes: int) -> float:
        """Seconds the link is busy with ``nbytes`` (0 when unlimited)."""
        return 0.0 if self.mbps <= 0 else 8.0 * nbytes / (self.mbps * 1e6)

    def describe(self) -> str:
        if not self.active:
            return "no link emulation (the real network)"
        bw = f"{self.mbps:g} Mbps" if self.mbps > 0 else "unlimited bandwidth"
        return (f"emulated link: {bw}, {self.latency_ms:g} ms one-way (sender-side, FRAME_FORMAT.md section 9: "
                "this device's sends only; give every device the same link flags)")


class LinkWriter:
    """One directed link's queue: ``put(frame)`` returns at once; a thread
    writes each frame with ``write(frame)`` when the emulated link delivers it.

    ``on_error(exc)`` is called once if a write fails; later frames are dropped.
    """

    def __init__(self, link: Link, write: Callable[[bytes], None], on_error: Callable[[BaseException], None],
                 name: str = "link"):
        self.link = link
        self._write = write
        self._on_error = on_error
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._finish = 0.0  # finish_{i-1} on the monotonic clock
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def due(self, nbytes: int, queued: float) -> float:
        """When a frame of ``nbytes`` queued at ``queued`` is written (and
        advances the link's finish time)."""
        start = max(queued, self._finish)
        self._finish = start + self.link.transfer_s(nbytes)
        return self._finish + self.link.latency_ms / 1000.0

    def put(self, frame: bytes) -> None:
        with self._cond:
            if self._closed:
                return
            self._queue.append((self.due(len(frame), time.monotonic()), frame))
            self._cond.notify()

    @property
    def idle(self) -> bool:
        """Nothing queued or being written."""
        return not self._queue

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                due, frame = self._queue[0]
            wait = due - time.monotonic()
            if wait > _SPIN_S:
                time.sleep(wait - _SPIN_S)
            while time.monotonic() < due:
                pass
            try:
                self._write(frame)
            except (OSError, ValueError) as e:
                self.close()
                self._on_error(e)
                return
            with self._cond:
                # Popped only once written: while a frame is queued or being
                # written, `idle` is False and nobody writes past it.
                if self._queue:
                    self._queue.popleft()

