"""Real peer processes for the runtime tests: `paradis peer` in a subprocess
per device, on loopback ports, stopped (and reaped) whatever happens."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KEY = "paradis-test-key-" + "0123456789abcdef" * 2


def free_ports(n: int) -> list:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def key_file(folder: Path, key: str = KEY) -> Path:
    path = folder / "session.key"
    path.write_text(key + "\n")
    return path


class PeerProcess:
    """``paradis peer`` for one device; ``ready`` waits for its banner.
    Subclasses run another peer program with the same flags and banner
    (``command``), e.g. the Java core's."""

    name = "peer"

    def __init__(self, bundle, device: int, peers: str, key: Path, *extra, log: Path):
        self.device = device
        self.log = log
        self._out = open(log, "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [*self.command(), "--bundle", str(bundle), "--device", str(device), "--peers", peers,
             "--session-key-file", str(key), *extra],
            cwd=REPO, stdout=self._out, stderr=subprocess.STDOUT, env=env)

    def command(self) -> list:
        return [sys.executable, "-m", "paradis_cli", "peer"]

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"device {self.device} ready on" in self.log.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} {self.device} exited {self.proc.returncode}:\n"
                                   f"{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} {self.device} not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig=signal.SIGINT, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode


@contextlib.contextmanager
def peers(bundle, count: int, folder: Path, extra=()):
    """``count`` peer processes (devices 1..count) on fresh loopback ports;
    yields (address list for --peers, [PeerProcess])."""
    ports = free_ports(count)
    addresses = ",".join(f"127.0.0.1:{p}" for p in ports)
    key = key_file(folder)
    procs = []
    try:
        for d in range(1, count + 1):
            procs.append(PeerProcess(bundle, d, addresses, key, *extra, log=folder / f"peer{d}.log"))
        for p in procs:
            p.wait_ready()
        yield addresses, procs
    finally:
        for p in procs:
            p.stop()
