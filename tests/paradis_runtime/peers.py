"""Real peer processes for the runtime tests: `paradis peer` in a subprocess
per device, on loopback ports, stopped (and reaped) whatever happens."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
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


class Relay:
    """A TCP relay on loopback in front of one peer's listener: the network
    path between two peers, which can drop its connections and stay dark for
    a while (``cut``), as Wi-Fi does, while the peers' other links stay up."""

    def __init__(self, target: tuple):
        self.target = target
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._pairs: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            self._open.wait()  # dark: the dialer's connect succeeds, its handshake waits
            try:
                b = socket.create_connection(self.target)
            except OSError:  # the peer behind is not listening yet: the dialer sees an end and redials
                a.close()
                continue
            with self._lock:
                self._pairs.append((a, b))
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self, dark: float) -> None:
        """Ends every relayed connection (both peers read an end of stream)
        and relays nothing new for ``dark`` seconds."""
        self._open.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        threading.Timer(dark, self._open.set).start()

    def close(self) -> None:
        self.sock.close()
        self.cut(0)


def wait_for_line(path, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"{path.name}: no {text!r} within {timeout} s:\n{path.read_text()}"
        time.sleep(0.01)

