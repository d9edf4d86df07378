"""Coordinator: the input device (device 0). It feeds inputs to the peers,
runs device 0's stages, fuses the partial outputs, and keeps serving when a
peer leaves by moving to the bundle's next switch that does without it.

    from paradis_runtime import connect
    with connect("runs/r20/bundle", ["10.0.0.5:7001"], key=open("key").read().strip()) as session:
        logits = session.predict(images)          # (N, classes), one inference each
        result = session.run(images[0])           # Result: output, switch, latency split

Requests: each inference gets a fresh request id (the first drawn at random
from [1, 2^32], FRAME_FORMAT.md section 7). A request whose switch loses a
device is cancelled and started again once on the switch now active; one
that fails twice, or passes its deadline, fails its future with
``RequestFailed``. Every future is resolved exactly once.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from paradis_runtime._connection import HandshakeRefused, PeerConfig
from paradis_runtime._program import DeviceProgram, InputCheck, programs_for, quantize_input
from paradis_runtime.frames import ErrorCode, FrameType, Header, encode_header
from paradis_runtime.peer import Peer, parse_peers

__all__ = ["Coordinator", "Result", "RequestFailed", "connect"]

log = logging.getLogger("paradis.run")

_MAX_ATTEMPTS = 2  # the original switch, then one fallback
# A peer that refuses the handshake for one of these is misconfigured: retrying cannot help.
_FATAL = (ErrorCode.GRAPH_MISMATCH, ErrorCode.BAD_DEVICE, ErrorCode.AUTH_FAILED, ErrorCode.UNSUPPORTED_VERSION,
          ErrorCode.BAD_MAGIC)


class RequestFailed(RuntimeError):
    """An inference that no switch answered (a device failed, or the deadline passed)."""


@dataclass(frozen=True)
class Result:
    """One inference.

    ``latency_s`` runs from ``submit`` to the fused output (a retry on a
    fallback switch included). On device 0: ``compute_s`` in its stages,
    ``wire_s`` writing frames, ``wait_s`` the rest (waiting for peers).
    ``arrivals``: device -> seconds after the attempt began at which its
    last frame arrived.
    """

    output: np.ndarray
    switch: str
    request_id: int
    latency_s: float
    compute_s: float
    wire_s: float
    wait_s: float
    arrivals: dict = field(default_factory=dict)
    attempts: int = 1


class _Pending:
    __slots__ = ("future", "image", "submitted", "started", "attempts", "program", "rid", "state")

    def __init__(self, image: np.ndarray):
        self.future: Future = Future()
        self.image = image
        self.submitted = time.monotonic()
        self.started = self.submitted
        self.attempts = 0
        self.program: Optional[DeviceProgram] = None
        self.rid = 0
        self.state = None


class Coordinator:
    """Device 0 of a bundle, talking to the peers at ``peers``.

    Args:
        bundle: a bundle folder (or one switch folder / graph file).
        peers: addresses of devices 1, 2, ... (``'HOST:PORT,HOST:PORT'`` or a list).
        key: the shared session key (>= 16 bytes), or pass ``config``.
        switches: restrict to these switch names (default: every switch
            of the bundle that the peers can staff).
        in_flight: requests on the wire at once (``submit`` blocks beyond),
            at most ``config.max_inflight`` (the live requests a peer holds).
        config: a full PeerConfig (deadlines, link emulation, ...).
    """

    def __init__(self, bundle: Union[str, Path], peers, key: Union[bytes, str, None] = None,
                 switches: Optional[list] = None, in_flight: int = 1, config: Optional[PeerConfig] = None,
                 num_threads: int = 1, trace: Optional[Path] = None):
        if config is None:
            if key is None:
                raise ValueError("Coordinator: give the session key (key=...) or a PeerConfig (config=...).")
            config = PeerConfig(key=key)
        if isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 1:
            raise ValueError(f"in_flight must be an int >= 1, received {in_flight!r}.")
        if in_flight > config.max_inflight:
            # A peer holds max_inflight live requests and drops the oldest
            # beyond them (OVERLOADED, FRAME_FORMAT.md section 7): more in
            # flight would fail requests, not speed them up.
            raise ValueError(f"in_flight must be at most {config.max_inflight}, the live requests a peer holds "
                             f"(PeerConfig.max_inflight; more are dropped as OVERLOADED); received {in_flight}.")
        self.config = config
        self.peers = parse_peers(peers)
        programs = programs_for(Path(bundle), 0, switches, max_frame_bytes=config.max_frame_bytes,
                                num_threads=num_threads)
        staffed = [p for p in programs if p.num_devices <= 1 + len(self.peers)]
        if not staffed:
            raise ValueError(f"{bundle}: every switch needs more devices than the {len(self.peers)} peer "
                             f"address(es) given plus this one: {[p.switch for p in programs]}.")
        self.programs = staffed
        self._check = InputCheck(staffed[0].graph, Path(bundle))
        for p in staffed:
            if not p.is_input or not p.is_fusion:
                raise ValueError(f"{p.graph_path}: the coordinator runs the input and fusion device; this graph "
                                 f"has input on device {p.input_device} and fusion on {p.fusion['device']}.")
        self.peer = Peer(staffed, config, self.peers, listen=None, trace=trace)
        self.peer.on_result = self._on_result
        self.peer.on_peer_lost = self._on_peer_lost
        self.peer.on_peer_ready = lambda program, device: self._update_switch()
        self.peer.on_request_error = self._on_request_error
        self.peer.on_tick = self._on_tick
        self._lock = threading.RLock()
        self._pending: dict = {}
        self._rid = secrets.randbelow(2**32) + 1
        self._slots = threading.BoundedSemaphore(in_flight)
        self._current: Optional[DeviceProgram] = None
        self._closed = False
        self._connected = False  # switches are reported once connect() is done
        self.switch_log: list = []  # (monotonic time, from, to, why): every move between switches
        self._refusals: dict = {}  # (graph sha256, device) -> ErrorCode reported by _report_refusals

    # -- connection ------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> "Coordinator":
        """Dials every peer and waits up to ``timeout`` s until the best switch
        the peer list can staff is ready. If it is not by then, starts on the
        best switch whose devices all answered (a warning names the missing
        ones; new requests move up when they answer, as after a fallback).
        Raises ConnectionError naming each missing peer when no switch is
        ready, and at once when a peer refuses the handshake as misconfigured
        (another export, another key)."""
        self.peer.start()
        best = self.programs[0]
        deadline = time.monotonic() + timeout
        while True:
            missing = [d for d in best.neighbours if not self.peer.connected(best, d)]
            if not missing:
                break
            errors = {d: self.peer.dial_errors.get((best.sha256, d)) for d in missing}
            fatal = {d: e for d, e in errors.items() if isinstance(e, HandshakeRefused) and e.code in _FATAL}
            late = not fatal and time.monotonic() > deadline
            if fatal or late:
                shown = fatal or errors
                lines = "; ".join(f"device {d} at {self.peers[d][0]}:{self.peers[d][1]}: "
                                  f"{e if e is not None else 'no answer'}" for d, e in shown.items())
                # A device down at start is what ParaDiS serves: the run goes
                # on the devices there, as it would after losing one mid-run.
                # A misconfigured one is not: the user must fix it.
                ready = self._available() if late else None
                if ready is not None:
                    log.warning("switch %r not ready within %g s (%s); starting on switch %r, the best one whose "
                                "devices all answered; new requests move up when the missing devices answer",
                                best.switch, timeout, lines, ready.switch)
                    break
                self.close()
                in_use = any(isinstance(e, HandshakeRefused) and e.code == ErrorCode.DEVICE_IN_USE
                             for e in errors.values())
                hint = ("the peers must run `paradis peer` on the same bundle, serving this switch, with the same "
                        "session key" if fatal else f"not ready within {timeout:g} s, and no other switch allowed "
                        "is either: " + ("another device 0 (another `paradis run`) holds those peers; let it end "
                                         "first" if in_use else "is `paradis peer` running there?"))
                raise ConnectionError(f"switch {best.switch!r} cannot start: {lines} ({hint}).")
            time.sleep(0.02)
        with self._lock:
            self._current = self._available()
        self._connected = True
        log.info("connected: switch %s", self.switch)
        return self

    def __enter__(self) -> "Coordinator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Fails what is still pending and leaves (SHUTTING_DOWN to the peers)."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for p in pending:
            self._resolve(p, error=RequestFailed(f"request {p.rid}: the coordinator closed"))
        self.peer.stop(graceful=True)

    @property
    def switch(self) -> Optional[str]:
        """The switch new requests go to."""
        return None if self._current is None else self._current.switch

    def _available(self) -> Optional[DeviceProgram]:
        for p in self.programs:
            if all(self.peer.connected(p, d) for d in p.neighbours):
                return p
        return None

    def _update_switch(self, why: Optional[str] = None) -> None:
        """Moves new requests to the best switch whose devices are all
        connected, and says why (``why`` None: a device came back)."""
        if not self._connected or self._closed:
            return
        with self._lock:
            new = self._available()
            if new is self._current:
                return
            old = self._current
            if why is None and old is not None and any(not self.peer.connected(old, d) for d in old.neighbours):
                # A device of the current switch is gone, and the tick saw it
                # first: the peer calls _on_peer_lost right after, which moves
                # with the reason (a reset, SHUTTING_DOWN, unresponsive).
                return
            self._current = new
        if why is None:
            better = old is None or (new is not None and self.programs.index(new) < self.programs.index(old))
            why = "a better switch is ready" if better else "another switch is ready"
        self.switch_log.append((time.monotonic(), old and old.switch, new and new.switch, why))
        log.warning("%s: switch %s -> %s", why, old.switch if old else "none", new.switch if new else "none")

    # -- requests --------------------------------------------------------------
    def submit(self, image) -> Future:
        """Starts one inference; the future gives a ``Result`` (or raises
        ``RequestFailed``). Blocks while ``in_flight`` requests are out."""
        if self._closed:
            raise RuntimeError("submit: this coordinator is closed; connect again.")
        image = self._check(image)
        self._slots.acquire()
        p = _Pending(image)
        self._start(p)
        return p.future

    def run(self, image, timeout: Optional[float] = None) -> Result:
        """One inference, waited for."""
        return self.submit(image).result(timeout)

    def predict(self, images) -> np.ndarray:
        """Fused outputs of a batch (N, ...), one inference each, in order;
        raises RequestFailed if any inference failed. One input without its
        batch axis is a batch of one."""
        images = self._check.batch(images)
        futures = [self.submit(images[i : i + 1]) for i in range(len(images))]
        results = [f.exception() or f.result() for f in futures]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise RequestFailed(f"{len(failed)} of {len(images)} inferences failed; the first: {failed[0]}")
        return np.concatenate([r.output for r in results], axis=0)

    def _start(self, p: _Pending) -> None:
        with self._lock:
            program = self._current = self._current or self._available()
            if program is None or self._closed:
                error = RequestFailed("no switch of the bundle can run: every one needs a device that is down")
                program = None
            else:
                rid = self._rid
                self._rid += 1
                p.program, p.rid, p.started = program, rid, time.monotonic()
                p.attempts += 1
                self._pending[rid] = p
                # State first, so no answer can arrive for an id the device does not know yet.
                wire = quantize_input(p.image, program.input_quant)
                p.state = self.peer.begin(program, rid, {program.input_name: wire})
        if program is None:
            self._resolve(p, error=error)
            return
        targets = program.send_to.get(program.input_name, ())
        if targets:
            frame = program.frame(program.input_name, rid, wire)
            t0 = time.monotonic()
            for d in targets:
                self.peer.send_to(program, d, frame, hold=0)
            p.state.wire_s += time.monotonic() - t0
        self.peer.kick(program, rid)

    def _resolve(self, p: _Pending, result: Optional[Result] = None, error: Optional[BaseException] = None) -> None:
        if p.future.done():
            return
        if error is not None:
            p.future.set_exception(error)
        else:
            p.future.set_result(result)
        self._slots.release()

    def _on_result(self, program: DeviceProgram, st, output: np.ndarray) -> None:
        with self._lock:
            p = self._pending.get(st.rid)
            if p is None or p.program is not program:
                return
            del self._pending[st.rid]
        now = time.monotonic()
        attempt = now - p.started
        self._resolve(p, Result(
            output=output, switch=program.switch, request_id=st.rid, latency_s=now - p.submitted,
            compute_s=st.compute_s, wire_s=st.wire_s, wait_s=max(0.0, attempt - st.compute_s - st.wire_s),
            arrivals=dict(st.arrivals), attempts=p.attempts))

    def _cancel(self, p: _Pending) -> None:
        """Abandons ``p``'s current attempt here and on every peer of its switch."""
        self.peer.abandon(p.program, p.rid)
        frame = encode_header(Header(type=FrameType.CANCEL, request_id=p.rid))
        for d in p.program.neighbours:
            self.peer.send_to(p.program, d, frame, hold=0)

    def _retry_or_fail(self, p: _Pending, why: str) -> None:
        if p.attempts < _MAX_ATTEMPTS and not self._closed:
            self._start(p)
        else:
            self._resolve(p, error=RequestFailed(f"request {p.rid} ({p.program.switch}): {why}"))

    def _on_peer_lost(self, program: DeviceProgram, device: int, reason: str, code) -> None:
        self._update_switch(f"device {device} lost ({reason})")
        with self._lock:
            hit = [p for p in self._pending.values() if p.program is program]
            for p in hit:
                del self._pending[p.rid]
        for p in hit:
            self._cancel(p)
            self._retry_or_fail(p, f"device {device} was lost ({reason})")

    def _on_request_error(self, program: DeviceProgram, device: int, rid: int, code: int, message: str) -> None:
        with self._lock:
            p = self._pending.pop(rid, None)
        if p is None:
            return
        self._cancel(p)
        name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else f"code {code}"
        self._resolve(p, error=RequestFailed(f"request {rid} ({program.switch}): device {device} sent {name}: "
                                             f"{message}"))

    def _on_tick(self, now: float) -> None:
        self._update_switch()
        self._report_refusals()
        expired = []
        with self._lock:
            for rid, p in list(self._pending.items()):
                if now - p.started > self.config.request_deadline:
                    del self._pending[rid]
                    expired.append(p)
        for p in expired:
            got = set(p.state.tensors) if p.state is not None else set()
            missing = sorted(d for d, specs in p.program.expected.items()
                             if any(s.name not in got for s in specs.values()))
            self._cancel(p)
            self._resolve(p, error=RequestFailed(
                f"request {p.rid} ({p.program.switch}): no answer within {self.config.request_deadline:g} s; "
                f"frames missing from device(s) {missing}"))

    def _report_refusals(self) -> None:
        """Once connected, says once per device and cause when a peer
        refuses the handshake as misconfigured (another export, key or
        device): a device restarted with the wrong bundle otherwise stayed
        out of the run with nothing said here (connect() raises instead)."""
        if not self._connected:
            return
        errors = dict(self.peer.dial_errors)
        for key in [k for k in self._refusals if k not in errors]:
            del self._refusals[key]  # it connected since (or gave up): a later refusal is news again
        for (sha, device), e in errors.items():
            misconfigured = isinstance(e, HandshakeRefused) and e.code in _FATAL
            if not misconfigured or self._refusals.get((sha, device)) == e.code:
                continue
            self._refusals[(sha, device)] = e.code
            switch = next((p.switch for p in self.programs if p.sha256 == sha), "?")
            host, port = self.peers[device]
            log.warning("device %d at %s:%d refuses switch %s: %s; the run goes on without it until that peer runs "
                        "`paradis peer` on the same bundle with the same session key", device, host, port, switch, e)


def connect(bundle, peers, key=None, timeout: float = 10.0, **kwargs) -> Coordinator:
    """A connected Coordinator (device 0) for ``bundle`` and the peers at
    ``peers`` (devices 1, 2, ...); see ``Coordinator`` for the options."""
    return Coordinator(bundle, peers, key, **kwargs).connect(timeout)
