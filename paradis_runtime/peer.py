"""Peer: one device of a deployed bundle, in its own process, over TCP.

A peer holds its device's part of every switch it serves (one
``DeviceProgram`` per switch), keeps one authenticated connection per
device pair and switch, and runs each stage of a request as soon as the
stage's inputs have arrived, sending what the graph says right after the
stage that produced it. The wire is ``export/FRAME_FORMAT.md``.

Who dials: the lower device index dials the higher (device 0, the input
device, dials everyone), so every peer but device 0 listens. Every process
gets the same address list: entry ``k - 1`` is device ``k``'s address.

Threads: a listener, one reader per connection (dialed connections are
run by their dialer thread, which redials when they drop), one compute
worker (a device runs one stage at a time, as a phone would), and a
housekeeping tick for heartbeats and request deadlines.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from paradis_runtime._connection import Connection, HandshakeRefused, PeerConfig, TLSStream, in_use_detail, leave
from paradis_runtime._program import DeviceProgram, programs_for
from paradis_runtime.frames import ErrorCode, FrameError, FrameType, Header, decode_error, encode_error
from paradis_runtime.schedule import fuse_partials

__all__ = ["Peer", "PeerConfig", "parse_address", "parse_peers", "serve"]

log = logging.getLogger("paradis.peer")

_RING = 256  # finished request ids remembered per graph (section 7)
_TICK_S = 0.05
# Frames held for one missing connection, per live request a peer may hold
# (a stage sends at most a few tensors to one device per request).
_HELD_PER_REQUEST = 4


# A graceful leave waits up to this long (all connections together) for the
# other sides to close after SHUTTING_DOWN, so that the frame is read, not lost
# to a reset; a receiver on a loaded machine may take several hundred ms.
_LEAVE_LINGER_S = 1.0

def parse_address(text: str, what: str = "address") -> tuple:
    """``HOST:PORT`` -> (host, port), with a message naming the value."""
    host, sep, port = str(text).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be HOST:PORT with a port in 1..65535, received {text!r}.")
    return host.strip("[]"), int(port)


def parse_peers(text) -> dict:
    """``'HOST:PORT,HOST:PORT,...'`` or a list (devices 1, 2, ...) -> {device: (host, port)};
    a dict {device: (host, port)} is returned as it is."""
    if isinstance(text, dict):
        return dict(text)
    items = [p for p in (text.split(",") if isinstance(text, str) else list(text or [])) if str(p).strip()]
    return {k + 1: (p if isinstance(p, tuple) else parse_address(p, f"peer address {k + 1} (device {k + 1})"))
            for k, p in enumerate(items)}


class _Request:
    __slots__ = ("rid", "created", "wall", "tensors", "next", "compute_s", "wire_s", "stages", "arrivals")

    def __init__(self, rid: int):
        self.rid = rid
        self.created = time.monotonic()
        self.wall = time.time()
        self.tensors: dict = {}
        self.next = 0
        self.compute_s = 0.0
        self.wire_s = 0.0
        self.stages: list = []  # (name, start, end) seconds after `created`
        self.arrivals: dict = {}  # device -> seconds after `created` of its last frame


class _Requests:
    """Live request state of one graph, and the ring of the last 256 ids dropped."""

    def __init__(self):
        self.live: "collections.OrderedDict[int, _Request]" = collections.OrderedDict()
        self.ring: collections.deque = collections.deque(maxlen=_RING)
        self.ring_set: set = set()

    def drop(self, rid: int) -> Optional[_Request]:
        st = self.live.pop(rid, None)
        if rid not in self.ring_set:
            if len(self.ring) == self.ring.maxlen:
                self.ring_set.discard(self.ring[0])
            self.ring.append(rid)
            self.ring_set.add(rid)
        return st


class Peer:
    """Device ``programs[i].device`` of each of its switches.

    Args:
        programs: one per switch served, best switch first (all the same device).
        config: keys, deadlines, caps, link emulation.
        addresses: {device: (host, port)} of the devices this peer dials
            (those above its own index); others are ignored.
        listen: (host, port) to accept the lower devices on; None for device 0.
        trace: a file to append one JSON line per finished request to
            (its stages' start/end, compute and send seconds).
    """

    def __init__(self, programs: list, config: PeerConfig, addresses: Optional[dict] = None,
                 listen: Optional[tuple] = None, trace: Optional[Path] = None):
        if not programs:
            raise ValueError("Peer: programs must hold at least one DeviceProgram, received none.")
        devices = {p.device for p in programs}
        if len(devices) != 1:
            raise ValueError(f"Peer: every program must be the same device, received devices {sorted(devices)}.")
        self.device = programs[0].device
        self.programs = list(programs)
        self.config = config
        self.addresses = dict(addresses or {})
        self.listen = listen
        self._by_sha = {p.sha256: p for p in programs}
        self._tables = {p.sha256: _Requests() for p in programs}
        self._conns: dict = {}  # (sha256, peer device) -> ready Connection
        # Frames for a device with no ready connection (being made, or lost
        # and redialed), oldest first: (sha256, peer device) -> deque of
        # (monotonic deadline, frame). They go out when the connection is
        # made and are dropped at their deadline (the tick). A send never
        # waits: it runs on the compute thread, where a wait would hold every
        # other request (of every switch) behind one missing device, and a
        # link between two peers that drops and comes back within the peer
        # deadline loses no frame (the coordinator cannot see that link: it
        # may send a request while the two peers still redial each other).
        self._held: dict = {}
        self._lock = threading.RLock()
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._compute = threading.Lock()  # one stage at a time, on whichever thread runs it
        self._running = False
        self._threads: list = []
        self._listener: Optional[socket.socket] = None
        self._pending = 0
        self.dial_errors: dict = {}  # (sha256, device) -> last HandshakeRefused / OSError of a dial
        self._in_use_said: set = set()  # (sha256, device, dialed): DEVICE_IN_USE said, until it connects
        self._trace = open(trace, "a", encoding="utf-8") if trace else None
        # Hooks for the coordinator (the input device).
        self.on_result: Optional[Callable] = None  # (program, request, output) on the fusion device
        self.on_peer_ready: Optional[Callable] = None  # (program, device)
        self.on_peer_lost: Optional[Callable] = None  # (program, device, reason, code)
        self.on_request_error: Optional[Callable] = None  # (program, device, request id, code, message)
        self.on_tick: Optional[Callable] = None  # (monotonic now)

    # -- life ------------------------------------------------------------------
    def start(self) -> "Peer":
        tls = self.config.tls
        if tls is not None:
            # Contexts once, and their errors (a device that listens without a certificate) before any thread.
            if self.listen is not None:
                self._server_tls = tls.server_context()
            if any(d > self.device for p in self.programs for d in p.neighbours):
                self._client_tls = tls.client_context()
        self._running = True
        if self.listen is not None:
            sock = socket.create_server(self.listen, reuse_port=False)
            sock.settimeout(0.2)
            self._listener = sock
            self.listen = sock.getsockname()[:2]
            self._spawn(self._accept_loop, f"listen-{self.device}")
        self._spawn(self._compute_loop, f"compute-{self.device}")
        self._spawn(self._tick_loop, f"tick-{self.device}")
        for p in self.programs:
            for d in p.neighbours:
                if d > self.device:
                    if d not in self.addresses:
                        raise ValueError(
                            f"{p.describe()} exchanges with device {d}, but no address was given for it: "
                            f"--peers needs {d} entries (device 1 first), received {len(self.addresses)}.")
                    self._spawn(self._dial_loop, f"dial-{self.device}-{d}-{p.switch}", p, d)
        return self

    def _spawn(self, target, name, *args, keep: bool = True) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        if keep:  # accepted connections come and go: their threads are not kept
            self._threads.append(t)

    def stop(self, graceful: bool = True) -> None:
        """Leaves: SHUTTING_DOWN on every connection (the coordinator falls back
        at once), then closes everything."""
        if not self._running:
            return
        self._running = False
        # No new connection while leaving: a coordinator that has just read
        # SHUTTING_DOWN may redial at once, and a handshake completed during
        # the linger would bring this device back for a moment, then lose it
        # to the exit (a reset, not SHUTTING_DOWN, in the coordinator's log).
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns = list(self._conns.values())
        if graceful:
            leave(conns, ErrorCode.SHUTTING_DOWN, f"device {self.device} is leaving", _LEAVE_LINGER_S)
        else:
            for c in conns:
                c.close("stopped")
        self._work.put(None)
        if self._trace:
            self._trace.close()
            self._trace = None

    def connected(self, program: DeviceProgram, device: int) -> bool:
        return (program.sha256, device) in self._conns

    def in_use(self, program: DeviceProgram, device: int) -> bool:
        """Whether ``device`` has a ready connection for ``program`` that is
        not closing: a new one from it is refused (DEVICE_IN_USE)."""
        with self._lock:
            conn = self._conns.get((program.sha256, device))
        return conn is not None and not conn.closed

    def program_for(self, sha256: bytes) -> Optional[DeviceProgram]:
        return self._by_sha.get(sha256)

    # -- connections -----------------------------------------------------------
    def _accept_loop(self) -> None:
        while self._running:
            try:
                sock, addr = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if not self._running:
                sock.close()  # leaving (stop closed the listener while accept returned)
                return
            with self._lock:
                if self._pending >= self.config.max_pending:
                    sock.close()  # too many strangers at once (section 6)
                    continue
                self._pending += 1
            conn = Connection(self, sock, f"{addr[0]}:{addr[1]}")
            conn._counted = True
            self._spawn(self._serve_accepted, f"conn-{self.device}-{addr[1]}", conn, keep=False)

    def _serve_accepted(self, conn: Connection) -> None:
        if self.config.tls is not None:
            # The TLS handshake runs here, not in the accept loop, under the handshake deadline.
            try:
                stream = TLSStream(conn.sock, self._server_tls, server_side=True)
                stream.handshake(time.monotonic() + self.config.handshake_timeout)
                conn.sock = stream
            except (OSError, ValueError) as e:
                conn.sock.close()
                conn.closed = True
                self._handshake_failed(conn, HandshakeRefused(0, f"TLS: {e}", remote=False))
                log.info("device %d: TLS handshake from %s failed: %s", self.device, conn.address, e)
                return
        conn.run()

    def _dial_loop(self, program: DeviceProgram, device: int) -> None:
        host, port = self.addresses[device]
        backoff = 0.05
        while self._running:
            try:
                sock = socket.create_connection((host, port), timeout=self.config.connect_timeout)
            except OSError as e:
                with self._lock:
                    self.dial_errors[(program.sha256, device)] = e
                time.sleep(backoff)
                backoff = min(1.0, backoff * 2)
                continue
            if self.config.tls is not None:
                try:
                    stream = TLSStream(sock, self._client_tls, server_side=False)
                    stream.handshake(time.monotonic() + self.config.handshake_timeout)
                    sock = stream
                except (OSError, ValueError) as e:
                    sock.close()
                    with self._lock:
                        self.dial_errors[(program.sha256, device)] = HandshakeRefused(0, f"TLS: {e}", remote=False)
                    time.sleep(backoff)
                    backoff = min(1.0, backoff * 2)
                    continue
            conn = Connection(self, sock, f"{host}:{port}", program=program, peer=device)
            conn.run()  # returns when the connection ends
            if conn.ready:
                backoff = 0.05
            else:
                time.sleep(backoff)
                backoff = min(1.0, backoff * 2)

    def _uncount(self, conn: Connection) -> None:
        if getattr(conn, "_counted", False):
            conn._counted = False
            with self._lock:
                self._pending -= 1

    def _handshake_failed(self, conn: Connection, error: HandshakeRefused) -> None:
        self._uncount(conn)
        if error.code != ErrorCode.DEVICE_IN_USE:
            if conn.dialed:
                with self._lock:
                    self.dial_errors[(conn.program.sha256, conn.peer)] = error
            return
        # Two processes with one device index: said once on each side (per
        # graph and device, until that device connects again), not at every
        # redial. The dialer keeps redialing: the other may be a stale link.
        key = (conn.program.sha256, conn.peer, conn.dialed)
        with self._lock:
            if conn.dialed:
                self.dial_errors[key[:2]] = error
            news = key not in self._in_use_said
            self._in_use_said.add(key)
            current = self._conns.get(key[:2])
        if not news:
            return
        if conn.dialed:
            log.warning("device %d: device %d at %s refuses this device on switch %s: %s", self.device, conn.peer,
                        conn.address, conn.program.switch, error)
        else:
            log.warning("device %d: refused a connection from %s claiming device %d on switch %s: device %d is "
                        "connected from %s already (DEVICE_IN_USE); does another process use device index %d?",
                        self.device, conn.address, conn.peer, conn.program.switch, conn.peer,
                        current.address if current is not None else "?", conn.peer)

    def _connection_ready(self, conn: Connection) -> None:
        self._uncount(conn)
        if not self._running:
            # A handshake that completed while leaving: the other side reads
            # SHUTTING_DOWN, as from every connection the leave found.
            conn.fail(ErrorCode.SHUTTING_DOWN, f"device {self.device} is leaving")
            return
        key = (conn.program.sha256, conn.peer)
        with self._lock:
            old = self._conns.get(key)
            taken = old is not None and not old.closed
            if not taken:
                self._conns[key] = conn
                held = self._held.pop(key, ())
                self.dial_errors.pop(key, None)
                self._in_use_said.difference_update({key + (True,), key + (False,)})
                if conn.peer == conn.program.input_device and not conn.program.is_input:
                    # A new HELLO from the input device: its request ids start afresh (section 7).
                    self._tables[conn.program.sha256].live.clear()
        if taken:
            # Two handshakes of one device index at once both passed the HELLO
            # check (section 5): the connection that was ready first keeps it.
            log.warning("device %d: device %d (%s) connected twice at once, from %s and %s; keeping the first "
                        "(DEVICE_IN_USE to the second: does another process use device index %d?)", self.device,
                        conn.peer, conn.program.switch, old.address, conn.address, conn.peer)
            conn.fail(ErrorCode.DEVICE_IN_USE, in_use_detail(conn.peer, self.device, conn.program.switch))
            return
        if old is not None:
            old.close("replaced by a newer connection from the same device")  # it was closing already
        now = time.monotonic()
        for deadline, frame in held:
            if deadline >= now:
                conn.send(frame)
        log.info("device %d: connected to device %d (%s) at %s", self.device, conn.peer, conn.program.switch,
                 conn.address)
        if self.on_peer_ready:
            self.on_peer_ready(conn.program, conn.peer)

    def _connection_closed(self, conn: Connection, reason: str, code: Optional[int], remote: bool) -> None:
        if conn.program is None or conn.peer is None or not conn.ready:
            if code != ErrorCode.DEVICE_IN_USE:  # that one is said once, by _handshake_failed
                log.info("device %d: connection from %s closed during the handshake: %s", self.device,
                         conn.address, reason)
            return
        key = (conn.program.sha256, conn.peer)
        with self._lock:
            current = self._conns.get(key) is conn
            if current:
                del self._conns[key]
        if not current:
            return
        if self._running:
            log.warning("device %d: lost device %d (%s): %s", self.device, conn.peer, conn.program.switch, reason)
        if self.on_peer_lost and self._running:
            self.on_peer_lost(conn.program, conn.peer, reason, code)

    def send_to(self, program: DeviceProgram, device: int, frame: bytes, hold: Optional[float] = None) -> bool:
        """One whole frame to ``device`` on ``program``'s connection, never
        waiting. With no ready connection the frame is held up to ``hold``
        seconds (default peer_deadline; 0: not held) and sent when one is
        made. False if the frame was neither sent nor held."""
        key = (program.sha256, device)
        with self._lock:
            conn = self._conns.get(key)
        if conn is not None and conn.send(frame):
            return True
        if hold is None:
            hold = self.config.peer_deadline
        with self._lock:
            conn = self._conns.get(key)  # made (and its held frames sent) since the look above
            if conn is None:
                if hold <= 0 or not self._running:
                    return False
                held = self._held.setdefault(key, collections.deque())
                if len(held) >= self.config.max_inflight * _HELD_PER_REQUEST:
                    held.popleft()  # the oldest belongs to a request the input device gives up first
                held.append((time.monotonic() + hold, frame))
                return True
        return conn.send(frame)

    # -- frames ----------------------------------------------------------------
    def _frame(self, conn: Connection, h: Header, payload) -> None:
        program = conn.program
        if h.type == FrameType.TENSOR:
            name = program.names[h.tensor_id]
            with self._lock:
                table = self._tables[program.sha256]
                if h.request_id in table.ring_set:
                    return  # finished or abandoned: read and dropped (section 6, step 8)
                st = table.live.get(h.request_id)
                if st is None:
                    if program.is_input:
                        return  # the input device makes every id; an unknown one is stale
                    st = self._new_request(program, h.request_id)
                if name in st.tensors:
                    raise FrameError(ErrorCode.DUPLICATE_TENSOR,
                                     f"tensor {name!r} twice for request {h.request_id}")
                st.tensors[name] = program.wire_array(name, payload)
                st.arrivals[conn.peer] = time.monotonic() - st.created
            # Compute here, on the reader thread, when no stage is running (one
            # thread hand-off less per exchange); else the compute thread will.
            if self._compute.acquire(blocking=False):
                try:
                    self._run(program, h.request_id)
                finally:
                    self._compute.release()
            else:
                self._work.put((program, h.request_id))
        elif h.type == FrameType.CANCEL:
            with self._lock:
                self._tables[program.sha256].drop(h.request_id)
        elif h.type == FrameType.ERROR:
            code, _, message = decode_error(payload)
            log.warning("device %d: device %d reports %s for request %d: %s", self.device, conn.peer,
                        ErrorCode(code).name if code in ErrorCode._value2member_map_ else code, h.request_id,
                        message)
            if self.on_request_error:
                self.on_request_error(program, conn.peer, h.request_id, code, message)

    def _new_request(self, program: DeviceProgram, rid: int) -> _Request:
        """Live state for ``rid`` (under the lock); beyond max_inflight the
        oldest is dropped with OVERLOADED to the input device."""
        table = self._tables[program.sha256]
        while len(table.live) >= self.config.max_inflight:
            oldest = next(iter(table.live))
            table.drop(oldest)
            if not program.is_input:
                self._notify_input(program, ErrorCode.OVERLOADED, oldest,
                                   f"device {self.device} holds {self.config.max_inflight} live requests")
        st = table.live[rid] = _Request(rid)
        return st

    def _missing_links(self, program: DeviceProgram) -> str:
        """"; no connection to device 2 (why)" for each device other than the
        input device that ``program`` talks to and has no connection with: the
        input device sees only its own links, and this tells it why a request
        cannot complete here (a peer down, or refusing this one)."""
        with self._lock:
            missing = [(d, self.dial_errors.get((program.sha256, d))) for d in program.neighbours
                       if d != program.input_device and (program.sha256, d) not in self._conns]
        if not missing:
            return ""
        return "; no connection to " + ", ".join(
            f"device {d}" + (f" ({str(e)[:240]})" if e is not None else "") for d, e in missing)

    def _notify_input(self, program: DeviceProgram, code: int, rid: int, message: str) -> None:
        conn = self._conns.get((program.sha256, program.input_device))
        if conn is not None:
            conn.send(encode_error(code, message, request_id=rid))

    # -- requests (the input device's side) ------------------------------------
    def begin(self, program: DeviceProgram, rid: int, tensors: dict) -> _Request:
        """The input device starts request ``rid`` with its local tensors
        (its stages run once ``kick`` is called)."""
        with self._lock:
            st = self._new_request(program, rid)
            st.tensors.update(tensors)
        return st

    def kick(self, program: DeviceProgram, rid: int) -> None:
        """Runs what can run of request ``rid`` (on the compute thread)."""
        self._work.put((program, rid))

    def abandon(self, program: DeviceProgram, rid: int) -> Optional[_Request]:
        with self._lock:
            return self._tables[program.sha256].drop(rid)

    # -- compute ---------------------------------------------------------------
    def _compute_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            with self._compute:
                self._run(*item)

    def _run(self, program: DeviceProgram, rid: int) -> None:
        """``_advance`` under the compute lock; a stage that raises fails its request only."""
        try:
            self._advance(program, rid)
        except Exception as e:  # a stage raised: this request fails, the peer keeps serving
            # LiteRT repeats its error reporter's text on every failed call: keep the first line.
            e = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
            log.error("device %d: request %d failed in %s: %s", self.device, rid, program.describe(), e)
            with self._lock:
                self._tables[program.sha256].drop(rid)
            if not program.is_input:
                self._notify_input(program, ErrorCode.STAGE_FAILED, rid, f"device {self.device}: {e}")
            elif self.on_request_error:
                self.on_request_error(program, self.device, rid, ErrorCode.STAGE_FAILED, str(e))

    def _advance(self, program: DeviceProgram, rid: int) -> None:
        """Runs every stage of ``rid`` whose inputs are here, in order, and
        sends each output right after the stage that made it."""
        table = self._tables[program.sha256]
        while True:
            with self._lock:
                st = table.live.get(rid)
                if st is None:
                    return
                if st.next >= len(program.stages):
                    break
                stage = program.stages[st.next]
                if not all(t in st.tensors for t in stage.inputs):
                    return
                feeds = {t: st.tensors[t] for t in stage.inputs}
            start = time.monotonic()
            outputs = stage.runner(**feeds)
            end = time.monotonic()
            with self._lock:
                st.tensors.update(outputs)
                st.next += 1
                st.compute_s += end - start
                st.stages.append((stage.name, start - st.created, end - st.created))
                # After its last stage's sends this device is done with rid, and
                # the input device may fuse and start request rid + in_flight at
                # once: free the slot before sending, or that request could
                # find max_inflight still held here and evict a live one
                # (OVERLOADED at in_flight == max_inflight).
                done = st.next >= len(program.stages) and not program.is_fusion
                mine = done and table.live.get(rid) is st  # not dropped meanwhile (deadline, abandon)
                if mine:
                    table.drop(rid)
            for name in stage.outputs:
                for device in program.send_to.get(name, ()):
                    t0 = time.monotonic()
                    frame = program.frame(name, rid, outputs[name])
                    if not self.send_to(program, device, frame):
                        log.warning("device %d: request %d: no connection to device %d (%s) for %r", self.device,
                                    rid, device, program.switch, name)
                    st.wire_s += time.monotonic() - t0
            if done:
                if mine:
                    self._write_trace(program, st)
                return
        if program.is_fusion:
            with self._lock:
                if not all(t in st.tensors for t in program.fusion["inputs"]):
                    return  # partials from other devices still in flight
                if table.live.get(rid) is not st:
                    return
                table.drop(rid)
            output = fuse_partials(program.fusion, program.fusion_quant,
                                   [st.tensors[t] for t in program.fusion["inputs"]])
            self._write_trace(program, st)
            if self.on_result:
                self.on_result(program, st, output)
        else:  # a device without stages for this switch
            with self._lock:
                table.drop(rid)
            self._write_trace(program, st)

    def _write_trace(self, program: DeviceProgram, st: _Request) -> None:
        if self._trace is None:
            return
        record = {"switch": program.switch, "graph_sha256": program.sha256.hex(), "device": self.device,
                  "request_id": st.rid, "wall_start": st.wall,
                  "compute_s": st.compute_s, "wire_s": st.wire_s, "total_s": time.monotonic() - st.created,
                  "stages": st.stages, "arrivals": {str(k): v for k, v in st.arrivals.items()},
                  "link": self.config.link.describe(), "link_mbps": self.config.link.mbps,
                  "link_latency_ms": self.config.link.latency_ms}
        self._trace.write(json.dumps(record) + "\n")
        self._trace.flush()

    # -- housekeeping ----------------------------------------------------------
    def _tick_loop(self) -> None:
        while self._running:
            time.sleep(_TICK_S)
            now = time.monotonic()
            with self._lock:
                conns = list(self._conns.values())
                expired = []
                for program in self.programs:
                    if program.is_input:
                        continue  # the coordinator keeps its own deadlines
                    table = self._tables[program.sha256]
                    for rid, st in list(table.live.items()):
                        if now - st.created > self.config.request_deadline:
                            table.drop(rid)
                            expired.append((program, rid))
                dropped = []
                for key, held in list(self._held.items()):
                    n = 0
                    while held and held[0][0] < now:
                        held.popleft()
                        n += 1
                    if not held:
                        del self._held[key]
                    if n:
                        dropped.append((key[1], n))
            for device, n in dropped:
                log.warning("device %d: dropped %d frame(s) for device %d: no connection to it within %g s",
                            self.device, n, device, self.config.peer_deadline)
            for c in conns:
                c.heartbeat(now)
            for program, rid in expired:
                self._notify_input(program, ErrorCode.DEADLINE_EXCEEDED, rid,
                                   f"device {self.device} abandoned the request after "
                                   f"{self.config.request_deadline} s{self._missing_links(program)}")
            if self.on_tick:
                self.on_tick(now)


def serve(bundle, device: int, config: PeerConfig, peers: Optional[dict] = None, listen: Optional[tuple] = None,
          switches: Optional[list] = None, trace: Optional[Path] = None, num_threads: int = 1) -> Peer:
    """Loads ``device``'s part of every switch of ``bundle`` (or those named)
    and starts serving; returns the running Peer (``stop()`` it)."""
    if isinstance(device, bool) or not isinstance(device, int) or device < 1:
        raise ValueError(f"device must be an int >= 1 (device 0 is the input device: `paradis run`), "
                         f"received {device!r}.")
    peers = dict(peers or {})
    programs = programs_for(Path(bundle), device, switches, max_frame_bytes=config.max_frame_bytes,
                            num_threads=num_threads)
    # A switch is served when every device this one dials (the higher ones it exchanges with) has an address.
    staffed = [p for p in programs if all(d in peers for d in p.neighbours if d > device)]
    if not staffed:
        need = max(programs, key=lambda p: -p.num_devices)
        raise ValueError(f"device {device}: no switch of {bundle} can be served with the {len(peers)} address(es) "
                         f"in --peers: {need.describe()} needs devices up to {need.num_devices - 1} (device 1 "
                         "first).")
    skipped = [p.switch for p in programs if p not in staffed]
    if skipped:
        log.info("device %d: not serving %s (--peers lists no address for some of their devices)", device,
                 ", ".join(skipped))
    programs = staffed
    if listen is None:
        if device not in peers:
            raise ValueError(f"device {device} needs an address to listen on: --listen HOST:PORT, or its own "
                             f"entry in --peers (entry {device}); received {len(peers)} peer address(es).")
        listen = peers[device]
    return Peer(programs, config, peers, listen=listen, trace=trace).start()
