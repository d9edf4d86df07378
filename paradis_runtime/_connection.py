"""One TCP connection between two devices of one graph (FRAME_FORMAT.md
sections 5-7): the HELLO/AUTH handshake, the checked read loop, writes of
whole frames, heartbeats and the peer deadline.

A connection knows nothing about requests: it hands checked frames to its
node (``paradis_runtime.peer.Peer``) and reports how it ended. Threads: one
reader per connection (it also runs the handshake) and one writer (frames
are queued from any thread; link emulation holds them in that queue).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, replace
from typing import Optional

from paradis_runtime.frames import (
    HEADER_LEN, MAX_FRAME_BYTES, MAX_REQUEST_ID, ErrorCode, FrameError, FrameType, Header, Hello, auth_mac,
    check_header, check_key, decode_error, decode_hello, encode_error, encode_header, encode_hello,
)
from paradis_runtime.link import Link, LinkWriter

__all__ = ["PeerConfig", "TLS", "TLSStream", "Connection", "HandshakeRefused", "PeerClosed"]

log = logging.getLogger("paradis.peer")

_READY_TYPES = (FrameType.TENSOR, FrameType.ERROR, FrameType.HEARTBEAT, FrameType.CANCEL)
_HEARTBEAT = encode_header(Header(type=FrameType.HEARTBEAT))
# A refused handshake lingers up to this long for the dialer to close (a
# stranger trickling bytes holds only its own connection's thread).
_REFUSE_LINGER_S = 0.25


@dataclass(frozen=True)
class TLS:
    """Optional TLS around every connection (the HELLO/AUTH handshake still
    runs inside it: TLS adds confidentiality and integrity on the path, the
    handshake keeps deciding who may join).

    Args:
        cert, key: PEM files of this device's certificate and key; a device
            that listens needs them.
        ca: PEM file of the certificate(s) a dialed peer must present (its
            own self-signed certificate, or the CA that signed it); a device
            that dials needs it. Host names are not checked: devices on a LAN
            are reached by IP, and the chain plus the session key decide.
    """

    cert: Optional[str] = None
    key: Optional[str] = None
    ca: Optional[str] = None

    def __post_init__(self):
        import os

        for name in ("cert", "key", "ca"):
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"TLS: {name} must be a PEM file, received {path!r} (no such file).")
        if (self.cert is None) != (self.key is None):
            raise ValueError(f"TLS: give cert and key together, received cert={self.cert!r}, key={self.key!r}.")
        if self.cert is None and self.ca is None:
            raise ValueError("TLS: give cert and key (to listen), ca (to dial), or both; received none.")

    def server_context(self):
        import ssl

        if self.cert is None:
            raise ValueError("TLS: this device listens, so it needs cert and key.")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self):
        import ssl

        if self.ca is None:
            raise ValueError("TLS: this device dials others, so it needs ca (the certificate they present).")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(self.ca)
        return ctx


@dataclass(frozen=True)
class PeerConfig:
    """What every connection of a peer obeys (FRAME_FORMAT.md defaults).

    Args:
        key: the shared secret (>= 16 bytes; str is taken as UTF-8).
        handshake_timeout, heartbeat_interval, peer_deadline,
        request_deadline: seconds (sections 5 and 7).
        max_inflight: live requests a peer holds before dropping the oldest.
        max_frame_bytes: the frame cap, header included.
        max_pending: unauthenticated connections a listener holds at once.
        link: sender-side link emulation (benchmarks; off by default).
        connect_timeout: seconds for one TCP connect attempt.
        tls: optional TLS around every connection.
    """

    key: bytes
    handshake_timeout: float = 5.0
    heartbeat_interval: float = 0.5
    peer_deadline: float = 2.0
    request_deadline: float = 2.0
    max_inflight: int = 8
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_pending: int = 8
    link: Link = Link()
    connect_timeout: float = 2.0
    tls: Optional[TLS] = None

    def __post_init__(self):
        object.__setattr__(self, "key", check_key(self.key))
        for name in ("handshake_timeout", "heartbeat_interval", "peer_deadline", "request_deadline",
                     "connect_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"PeerConfig: {name} must be a number of seconds > 0, received {value!r}.")
        for name, low in (("max_inflight", 1), ("max_frame_bytes", HEADER_LEN), ("max_pending", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"PeerConfig: {name} must be an int >= {low}, received {value!r}.")
        if self.peer_deadline <= self.heartbeat_interval + self.link.latency_ms / 1000.0:
            raise ValueError(
                f"PeerConfig: peer_deadline ({self.peer_deadline} s) must exceed heartbeat_interval "
                f"({self.heartbeat_interval} s) plus the emulated latency ({self.link.latency_ms} ms), or live "
                "peers are declared dead.")
        if not isinstance(self.link, Link):
            raise ValueError(f"PeerConfig: link must be a paradis_runtime.Link, received {self.link!r}.")


class TLSStream:
    """A TLS session over a plain socket through memory BIOs. One SSL object
    must never be used by two threads at once (OpenSSL), yet a connection's
    reader blocks in a read while writers send: here every SSL call holds a
    lock and never blocks, and the socket I/O happens outside it (raw writes
    in the order the SSL object produced them)."""

    def __init__(self, raw: socket.socket, context, server_side: bool):
        import ssl

        self._ssl = ssl
        self.raw = raw
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=server_side)
        self._lock = threading.Lock()  # the SSL object
        self._send_lock = threading.Lock()  # raw writes, in the order the SSL object made them

    def _release_and_flush(self) -> None:
        """Called holding the SSL lock: takes what TLS wants to send, releases
        the lock, writes it."""
        data = self._out.read()
        self._send_lock.acquire()
        self._lock.release()
        try:
            if data:
                self.raw.sendall(data)
        finally:
            self._send_lock.release()

    def _fill(self) -> bool:
        """Moves bytes from the socket into TLS; False at end of stream."""
        data = self.raw.recv(65536)
        with self._lock:
            if data:
                self._in.write(data)
            else:
                self._in.write_eof()
        return bool(data)

    def _call(self, fn, *args):
        """fn(*args) on the SSL object; None when it needs more bytes from the peer."""
        self._lock.acquire()
        try:
            result = fn(*args)
        except self._ssl.SSLWantReadError:
            result = None
        except BaseException:
            self._lock.release()
            raise
        self._release_and_flush()
        return result

    def handshake(self, deadline: float) -> None:
        while self._call(lambda: self._obj.do_handshake() or True) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("TLS handshake")
            self.raw.settimeout(left)
            if not self._fill():
                raise PeerClosed("the peer closed the connection during the TLS handshake")

    def recv_into(self, view, n: int) -> int:
        while True:
            try:
                got = self._call(self._obj.read, n, view)
            except self._ssl.SSLZeroReturnError:
                return 0
            if got is not None:
                return got
            if not self._fill():
                return 0

    def sendall(self, data) -> None:
        self._call(self._obj.write, data)

    def settimeout(self, seconds) -> None:
        self.raw.settimeout(seconds)

    def setsockopt(self, *args) -> None:
        self.raw.setsockopt(*args)

    def shutdown(self, how) -> None:
        self.raw.shutdown(how)

    def close(self) -> None:
        self.raw.close()


class PeerClosed(ConnectionError):
    """The other side closed the socket (or it broke)."""


class HandshakeRefused(ConnectionError):
    """The handshake failed; ``code`` is the ERROR code (sent or received)."""

    def __init__(self, code: int, message: str, remote: bool):
        self.code = code
        self.remote = remote
        name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code) if code else ""
        super().__init__(f"{'the peer refused: ' if remote and code else ''}{name + ': ' if name else ''}{message}")


def in_use_detail(device: int, me: int, switch: str) -> str:
    """The DEVICE_IN_USE message (FRAME_FORMAT.md section 5), whichever check
    refuses: the HELLO's, or two handshakes of one device ready at once."""
    return (f"device {device} is already connected to device {me} on switch {switch!r}, and that connection is "
            f"live: two processes claim device index {device}? Give each device its own index (a device that "
            "reconnects after a drop gets in once its old connection closes, within the peer deadline)")


def _recv_exact(sock: socket.socket, n: int, deadline: Optional[float] = None) -> bytearray:
    """Exactly ``n`` bytes (allocated only now, after the header checks).

    ``deadline`` (monotonic): the whole read must end by then, however the
    bytes trickle in (a socket timeout bounds each recv, not the read).
    """
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("deadline")
            sock.settimeout(left)
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise PeerClosed("the peer closed the connection" if got == 0 else
                             f"the peer closed the connection inside a frame ({got} of {n} bytes)")
        got += k
    return buf


class Connection:
    """A socket between this node's device and one peer device of one graph.

    ``program`` and ``peer`` are known up front when this side dialed; an
    accepted connection learns them from the dialer's HELLO.
    """

    def __init__(self, node, sock: socket.socket, address: str, program=None, peer: Optional[int] = None):
        self.node = node
        self.config: PeerConfig = node.config
        self.sock = sock
        self.address = address
        self.program = program
        self.peer = peer
        self.dialed = program is not None
        self.ready = False
        self.closed = False
        self.nonce = secrets.token_bytes(32)
        self.last_recv = self.last_sent = time.monotonic()
        self._wlock = threading.Lock()
        self._writer: Optional[LinkWriter] = None
        self._accept: dict = {}  # header bytes but request_id -> Header (section 6 fast path)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __repr__(self) -> str:
        where = self.program.describe() if self.program else "unbound"
        return f"<Connection {where} <-> device {self.peer} at {self.address}>"

    # -- writing -------------------------------------------------------------
    def _write(self, frame: bytes) -> None:
        with self._wlock:
            try:
                self.sock.sendall(frame)  # one call per frame: header and payload in one buffer
            except BlockingIOError:  # SO_SNDTIMEO ran out (see run)
                raise TimeoutError(f"unresponsive: the peer took nothing for {self.config.peer_deadline} s") from None

    def send(self, frame: bytes) -> bool:
        """Queues one whole frame for the writer thread (which writes it at
        once, or when the emulated link delivers it); False if the connection
        is gone (it is then closed and reported)."""
        if self.closed:
            return False
        self.last_sent = time.monotonic()
        writer = self._writer
        if writer is None:  # before the handshake completed: HELLO and AUTH are written directly
            try:
                self._write(frame)
                return True
            except (OSError, ValueError) as e:
                self.close(f"a write failed ({_why(e)})")
                return False
        if not self.config.link.active and self.config.tls is None:
            # The real network: write at once from this thread when nothing is
            # queued and the socket takes the frame without blocking (no thread
            # hand-off); what it does not take goes to the writer, in order.
            with self._wlock:
                sent, error = 0, None
                if writer.idle:
                    try:
                        # A blocking socket (see run): MSG_DONTWAIT takes what fits, or raises.
                        sent = self.sock.send(frame, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        sent = 0
                    except (OSError, ValueError) as e:
                        sent, error = -1, e
                if sent == len(frame):
                    return True
                if sent >= 0:
                    writer.put(memoryview(frame)[sent:] if sent else frame)
                    return True
            self.close(f"a write failed ({_why(error)})")
            return False
        writer.put(frame)
        return True

    def heartbeat(self, now: float) -> None:
        if self.ready and not self.closed and now - self.last_sent >= self.config.heartbeat_interval:
            self.send(_HEARTBEAT)

    # -- closing -------------------------------------------------------------
    def fail(self, code: int, detail: str, tensor_id: Optional[int] = None, request_id: int = 0,
             linger: float = 0.0) -> None:
        """A violation: one ERROR frame (not waited for), shut down writing, close, report.

        ``linger`` > 0: before closing, read and drop what the other side
        still sends until it closes, at most that long (see ``leave``: a
        refused handshake's ERROR then reaches a dialer that is still
        writing, rather than a reset in its place). Only from the thread
        that reads this connection."""
        if self._announce(code, detail, tensor_id, request_id):
            _linger_and_release([self], code, detail, linger)

    def close(self, reason: str, code: Optional[int] = None, remote: bool = False) -> None:
        if self._stop_writing():
            self._release(reason, code, remote)

    def _announce(self, code: int, detail: str, tensor_id: Optional[int] = None, request_id: int = 0) -> bool:
        """The ERROR frame, then the end of writing; False if already closed."""
        if self.closed:
            return False
        try:
            self.sock.settimeout(0.2)
            self._write(encode_error(code, detail, tensor_id, request_id))
        except (OSError, ValueError):
            pass
        return self._stop_writing()

    def _stop_writing(self) -> bool:
        """Marks the connection closed (send refuses) and shuts down writing
        (the other side reads EOF after what was sent); False if it already was."""
        if self.closed:
            return False
        self.closed = True
        if self._writer is not None:
            self._writer.close()
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return True

    def _release(self, reason: str, code: Optional[int], remote: bool) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        self.node._connection_closed(self, reason, code, remote)

    # -- reading -------------------------------------------------------------
    def _read(self, allowed, ready: bool, deadline: Optional[float] = None):
        header = _recv_exact(self.sock, HEADER_LEN, deadline)
        self.last_recv = time.monotonic()
        if ready:
            # Fast path: a header equal, but for request_id, to one the graph
            # says this peer sends passes every check of section 6 by
            # construction; anything else goes through them in order.
            known = self._accept.get(bytes(header[:24]) + bytes(header[32:]))
            if known is not None:
                rid = int.from_bytes(header[24:32], "little")
                if (1 <= rid <= MAX_REQUEST_ID) if known.type == FrameType.TENSOR else rid == 0:
                    payload = _recv_exact(self.sock, known.payload_len) if known.payload_len else bytearray()
                    self.last_recv = time.monotonic()
                    return (replace(known, request_id=rid) if rid else known), payload
        expected = None
        peer_is_input = False
        if self.program is not None and self.peer is not None:
            expected = self.program.expected.get(self.peer, {})
            peer_is_input = self.peer == self.program.input_device
        h = check_header(header, allowed, expected, peer_is_input=peer_is_input, ready=ready,
                         max_frame_bytes=self.config.max_frame_bytes)
        payload = _recv_exact(self.sock, h.payload_len, deadline) if h.payload_len else bytearray()
        self.last_recv = time.monotonic()
        return h, payload

    def _handshake(self) -> None:
        """HELLO, then AUTH, both ways (section 5); raises HandshakeRefused."""
        deadline = time.monotonic() + self.config.handshake_timeout

        def timeout():
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            return left

        def read(kind):
            h, payload = self._read((kind, FrameType.ERROR), ready=False, deadline=deadline)
            if h.type == FrameType.ERROR:
                code, _, message = decode_error(payload)
                raise HandshakeRefused(code, message, remote=True)
            return payload

        def hello() -> bytes:
            return encode_hello(Hello(self.program.sha256, self.nonce, self.program.device, self.peer,
                                      self.program.switch))

        if self.dialed:
            self.sock.settimeout(timeout())
            self._write(hello())
        theirs = decode_hello(read(FrameType.HELLO))
        program = self.program or self.node.program_for(theirs.graph_sha256)
        if program is None or (self.dialed and theirs.graph_sha256 != program.sha256):
            served = sorted({p.switch for p in getattr(self.node, "programs", ())})
            if program is None and served and theirs.switch not in served:
                # The same bundle, but this peer was started for other switches
                # (`paradis peer --switch`): say so, not "another export".
                raise FrameError(ErrorCode.GRAPH_MISMATCH,
                                 f"switch {theirs.switch!r} is not served by this peer, which serves "
                                 f"{', '.join(served)}: serve it too (`paradis peer --switch`), or run only the "
                                 "switches every peer serves (`paradis run --switch`)")
            raise FrameError(ErrorCode.GRAPH_MISMATCH,
                             f"graph sha256 {theirs.graph_sha256.hex()[:16]}... (switch {theirs.switch!r}) is not "
                             "a graph this peer loaded: both sides need the same export of the bundle")
        if theirs.switch != program.switch:
            raise FrameError(ErrorCode.GRAPH_MISMATCH, f"switch {theirs.switch!r}, the graph's is {program.switch!r}")
        me = program.device
        if (not 0 <= theirs.device < program.num_devices or theirs.device == me or theirs.peer_device != me
                or (self.dialed and theirs.device != self.peer)):
            raise FrameError(ErrorCode.BAD_DEVICE,
                             f"HELLO from device {theirs.device} to device {theirs.peer_device}; this is device {me} "
                             f"of {program.num_devices}" + (f", dialing device {self.peer}" if self.dialed else ""))
        if theirs.nonce == self.nonce:
            raise FrameError(ErrorCode.AUTH_FAILED, "the peer's nonce is this side's own (a reflected HELLO)")
        self.program, self.peer = program, theirs.device
        if not self.dialed and self.node.in_use(program, theirs.device):
            # Refused before this side's AUTH, so the dialer never counts it
            # ready. An open connection is live (silence closes one within the
            # peer deadline), so a device back after a drop gets in on a redial.
            raise FrameError(ErrorCode.DEVICE_IN_USE, in_use_detail(theirs.device, me, program.switch))
        self.sock.settimeout(timeout())
        mine = auth_mac(self.config.key, program.sha256, me, self.peer, self.nonce, theirs.nonce)
        if self.dialed:
            self._write(encode_header(Header(type=FrameType.AUTH, payload_len=32)) + mine)
        else:
            # The listener learns the graph from the dialer's HELLO, then answers HELLO and AUTH at once.
            self._write(hello() + encode_header(Header(type=FrameType.AUTH, payload_len=32)) + mine)
        mac = bytes(read(FrameType.AUTH))
        want = auth_mac(self.config.key, program.sha256, self.peer, me, theirs.nonce, self.nonce)
        if not hmac.compare_digest(mac, want):
            raise FrameError(ErrorCode.AUTH_FAILED, "wrong MAC: the two sides hold different session keys")

    def run(self) -> None:
        """The connection's thread: handshake, then frames until closed."""
        try:
            self._handshake()
        except socket.timeout:
            self.fail(ErrorCode.HANDSHAKE_TIMEOUT, f"no complete handshake within {self.config.handshake_timeout} s",
                      linger=_REFUSE_LINGER_S)
            self.node._handshake_failed(self, HandshakeRefused(ErrorCode.HANDSHAKE_TIMEOUT, "timeout", False))
            return
        except FrameError as e:
            self.fail(e.code, e.detail, linger=_REFUSE_LINGER_S)
            self.node._handshake_failed(self, HandshakeRefused(e.code, e.detail, remote=False))
            return
        except HandshakeRefused as e:
            self.close(str(e), code=e.code, remote=True)
            self.node._handshake_failed(self, e)
            return
        except (OSError, ValueError) as e:
            self.close(f"the handshake broke off ({_why(e)})")
            self.node._handshake_failed(self, HandshakeRefused(0, _why(e), remote=True))
            return
        if self.config.tls is None:
            # A blocking socket whose kernel timeouts are the peer deadline: each
            # recv and send is then one system call (a Python socket timeout
            # polls before every call), which is most of a frame's cost here.
            self.sock.settimeout(None)
            deadline = _timeval(self.config.peer_deadline)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, deadline)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, deadline)
        else:
            self.sock.settimeout(self.config.peer_deadline)
        # Frames leave from a writer thread, so a stage's compute never waits for
        # the receiver to drain its socket (on one core per device it may be
        # busy computing); with link emulation the same queue holds each frame
        # until the emulated link delivers it.
        self._writer = LinkWriter(self.config.link, self._write, lambda e: self.close(f"a write failed ({_why(e)})"),
                                  name=f"writer-{self.program.device}-{self.peer}")
        self._accept = dict(self.program.accept.get(self.peer, {}))
        self._accept[_HEARTBEAT[:24] + _HEARTBEAT[32:]] = Header(type=FrameType.HEARTBEAT)
        self.ready = True
        self.node._connection_ready(self)
        self._loop()

    def _loop(self) -> None:
        while not self.closed:
            try:
                h, payload = self._read(_READY_TYPES, ready=True)
                if h.type == FrameType.HEARTBEAT:
                    continue
                if h.type == FrameType.ERROR:
                    code, tensor_id, message = decode_error(payload)
                    if code < 128:
                        # Fatal: both sides close; a peer never answers an ERROR with an ERROR.
                        name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else f"code {code}"
                        self.close(f"the peer sent {name}: {message}", code=code, remote=True)
                        return
                self.node._frame(self, h, payload)
            except FrameError as e:
                self.fail(e.code, e.detail)
                return
            except (socket.timeout, BlockingIOError):  # BlockingIOError: SO_RCVTIMEO ran out
                self.close(f"unresponsive: nothing received for {self.config.peer_deadline} s")
                return
            except (OSError, ValueError) as e:
                self.close(_why(e), remote=isinstance(e, PeerClosed))
                return
            except Exception as e:  # a defect here must cost one connection, never the peer
                log.exception("internal error on %r", self)
                self.close(f"internal error ({type(e).__name__}: {e})")
                return


def _timeval(seconds: float) -> bytes:
    """``struct timeval`` for SO_RCVTIMEO / SO_SNDTIMEO."""
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


def leave(conns, code: int, detail: str, linger: float) -> None:
    """A graceful leave of every connection at once: each sends one ERROR
    frame and shuts down writing; then what the other sides still send is
    read and dropped until every one of them has closed or ``linger``
    seconds pass; then all close.

    Closing a socket with unread data, or one that data reaches afterwards
    (a heartbeat in flight), makes the kernel answer with a reset, and a
    reset that reaches the other side before its reader has taken the ERROR
    frame discards it: that side would report a reset, not ``code``. A busy
    receiver may take a while to read and close, so all connections linger
    together (one ``linger`` for the whole leave, not one per connection).
    """
    _linger_and_release([c for c in conns if c._announce(code, detail)], code, detail, linger)


def _linger_and_release(announced, code: int, detail: str, linger: float) -> None:
    """Drains the connections that announced ``code`` (up to ``linger``
    seconds in all), then closes and reports them."""
    if linger > 0:
        _drain([getattr(c.sock, "raw", c.sock) for c in announced], linger)  # below TLS when there is one
    for c in announced:
        c._release(_reason(code, detail), code, remote=False)


def _drain(socks, seconds: float) -> None:
    """Reads and drops what ``socks`` receive until each reads end of file
    or ``seconds`` pass. Their connections' reader threads may take some of
    the bytes (and the end of file) first: a socket at end of file stays
    readable and keeps reading empty, so both see it."""
    end = time.monotonic() + seconds
    open_ = [s for s in socks if s.fileno() >= 0]
    while open_ and (left := end - time.monotonic()) > 0:
        try:
            readable, _, _ = select.select(open_, [], [], left)
        except (OSError, ValueError):
            return
        for s in readable:
            try:
                if not s.recv(65536, socket.MSG_DONTWAIT):
                    open_.remove(s)
            except BlockingIOError:
                pass  # the reader thread took it first
            except (OSError, ValueError):
                open_.remove(s)


def _reason(code: int, detail: str) -> str:
    return f"{ErrorCode(code).name if code in ErrorCode._value2member_map_ else code}: {detail}"


def _why(e: BaseException) -> str:
    return str(e) or type(e).__name__
