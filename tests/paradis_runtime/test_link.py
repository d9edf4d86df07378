"""Sender-side link emulation (FRAME_FORMAT.md section 9)."""

import threading
import time

import pytest

from paradis_runtime import Link, PeerConfig
from paradis_runtime.link import LinkWriter


def test_link_arguments_are_checked():
    for bad in (-1, float("nan"), float("inf"), "10", True):
        with pytest.raises(ValueError, match=r"Link: mbps must be a finite number >= 0, received"):
            Link(mbps=bad)
    with pytest.raises(ValueError, match="latency_ms"):
        Link(latency_ms=-0.5)
    assert not Link().active and Link(0, 2).active
    assert "emulated link: 50 Mbps, 2 ms one-way" in Link(50, 2).describe()
    assert Link().describe().startswith("no link emulation")
    with pytest.raises(ValueError, match=r"peer_deadline \(2.0 s\) must exceed heartbeat_interval"):
        PeerConfig(key="k" * 16, link=Link(10, 1600))


def test_due_times_follow_section_9():
    # 8 Mbps = 1 byte per microsecond; latency 10 ms.
    writer = LinkWriter(Link(mbps=8, latency_ms=10), lambda frame: None, lambda e: None)
    try:
        assert writer.due(1000, queued=0.0) == pytest.approx(0.011)  # finish 1 ms, + latency
        assert writer.due(1000, queued=0.0) == pytest.approx(0.012)  # behind the first: bandwidth adds up
        assert writer.due(1000, queued=0.0105) == pytest.approx(0.0215)  # link idle again: starts when queued
        unlimited = LinkWriter(Link(0, 3), lambda frame: None, lambda e: None)
        assert unlimited.due(10**9, queued=1.0) == pytest.approx(1.003)  # latency only; overlaps
    finally:
        writer.close()


def test_frames_are_written_in_order_no_earlier_than_due():
    written = []
    done = threading.Event()

    def write(frame):
        written.append((time.monotonic(), frame))
        if len(written) == 3:
            done.set()

    writer = LinkWriter(Link(mbps=8, latency_ms=20), write, lambda e: None)
    start = time.monotonic()
    for i, n in enumerate((4000, 100, 100)):
        writer.put(bytes([i]) * n)
    assert done.wait(5)
    writer.close()
    # Due: 4 ms + 20, then 4.1 + 20, 4.2 + 20 (ms after start).
    for (t, frame), due_ms in zip(written, (24.0, 24.1, 24.2)):
        assert t - start >= due_ms / 1000 - 1e-4
    assert [f[0] for _, f in written] == [0, 1, 2]


def test_a_failed_write_is_reported_once_and_later_frames_dropped():
    errors, calls = [], []

    def write(frame):
        calls.append(frame)
        raise BrokenPipeError("gone")

    writer = LinkWriter(Link(latency_ms=1), write, errors.append)
    writer.put(b"a")
    time.sleep(0.1)
    writer.put(b"b")
    time.sleep(0.05)
    assert len(errors) == 1 and isinstance(errors[0], BrokenPipeError) and calls == [b"a"]
