"""The web peer's server: the page, the bundle's files and a frame relay.

``paradis serve-web`` runs one of these on a laptop (or a phone with Python)
on the LAN. Phones open the page; each runs one device of a switch with
LiteRT.js and talks to the other devices through this server over WebSocket
(subprotocol ``paradis-frames.1``, one frame per binary message,
``export/FRAME_FORMAT.md`` section 5).

The relay is a pipe, not a peer: the HELLO/AUTH handshake runs end to end
between the two devices, so the server never holds the session key and
cannot forge or read anything the key protects. A page asks for the link
from its device to another with ``/relay?switch=S&from=A&to=B``:

* if device B is a page too, the relay pairs this socket with B's socket for
  ``(S, B, A)`` and copies every binary message across, as it is;
* if device B is a Python peer (``tcp_peers``: a ``paradis peer`` address),
  the relay dials it over TCP and pipes both ways: a WebSocket message is
  written to the stream as one frame, and the stream is cut back into frames
  by their headers (64 bytes, then ``payload_len``) for the page.

What the relay checks is only what it needs to move bytes safely: a message
or frame larger than ``max_frame_bytes`` (header included) is refused before
it is buffered (close code 1009 / the TCP side closed), and on the way to TCP
a message must be exactly ``64 + payload_len`` bytes (else its stream would
lose framing: close code 1008). Every other check of section 6 is the
receiving device's. A text message is closed with 1003, as the spec asks.
When either side of a pair goes away, the relay closes the other with a
reason naming the device, so a page reports the loss at once instead of
waiting for its peer deadline.

Imports neither keras nor tensorflow (the layering test checks): only the
``websockets`` package (the ``web`` extra) and the standard library.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from paradis_runtime.frames import HEADER_LEN, MAGIC, MAX_FRAME_BYTES

__all__ = ["SUBPROTOCOL", "WebRelay", "WebRelayError"]

log = logging.getLogger("paradis.web")

SUBPROTOCOL = "paradis-frames.1"
# A page's link is buffered until its partner joins: HELLO (<= 388 bytes), AUTH (96)
# and perhaps an ERROR fit; more than this before pairing is not a handshake.
_PRE_PAIR_BYTES = 4096
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript",
          ".json": "application/json", ".wasm": "application/wasm", ".tflite": "application/octet-stream",
          ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png", ".md": "text/plain; charset=utf-8"}


class WebRelayError(ValueError):
    """A server that cannot start as configured (names the argument)."""


@dataclass
class _Link:
    """One device's socket for one (switch, from, to)."""

    ws: object
    switch: str
    src: int
    dst: int
    partner: Optional["_Link"] = None
    pending: list = field(default_factory=list)
    pending_bytes: int = 0
    tcp_writer: Optional[asyncio.StreamWriter] = None
    closed: bool = False


class WebRelay:
    """Serves ``web_root`` (the page), ``bundle`` (under ``/bundle/``), the
    LiteRT.js files (``web_root/node_modules/@litertjs`` under ``/vendor/``)
    and the relay at ``/relay``, on ``host:port``.

    Args:
        bundle: a bundle folder (``manifest.json``) or one switch's folder
            (``fusion_graph.json``).
        web_root: the page's folder (android_demo/web).
        host, port: where to listen (port 0: any free port).
        tcp_peers: {device: (host, port)} of Python peers (``paradis peer``)
            that the relay dials for pages.
        max_frame_bytes: the frame cap, header included.
        info: extra fields for ``/session.json`` (the URL, its QR code).
    """

    def __init__(self, bundle, web_root, host: str = "0.0.0.0", port: int = 8000, tcp_peers: Optional[dict] = None,
                 max_frame_bytes: int = MAX_FRAME_BYTES, info: Optional[dict] = None):
        self.bundle = Path(bundle).resolve()
        self.web_root = Path(web_root).resolve()
        if not (self.bundle / "manifest.json").is_file() and not (self.bundle / "fusion_graph.json").is_file():
            raise WebRelayError(f"bundle: {bundle} holds neither manifest.json nor fusion_graph.json; give a folder "
                                "written by `paradis export`.")
        if not (self.web_root / "index.html").is_file():
            raise WebRelayError(f"web_root: {web_root} has no index.html; give the android_demo/web folder.")
        self.vendor = self.web_root / "node_modules" / "@litertjs"
        if not (self.vendor / "core" / "wasm").is_dir():
            raise WebRelayError(f"web_root: {self.vendor}/core/wasm is missing: run `npm ci` in {self.web_root} "
                                "(`make web-deps`), which installs LiteRT.js.")
        if isinstance(max_frame_bytes, bool) or not isinstance(max_frame_bytes, int) or max_frame_bytes < HEADER_LEN:
            raise WebRelayError(f"max_frame_bytes must be an int >= {HEADER_LEN}, received {max_frame_bytes!r}.")
        self.host, self.port = host, port
        self.tcp_peers = dict(tcp_peers or {})
        self.max_frame_bytes = max_frame_bytes
        self.info = dict(info or {})
        self._waiting: dict = {}  # (switch, src, dst) -> _Link waiting for its partner
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server = None
        self._thread: Optional[threading.Thread] = None
        self._started = threading.Event()
        self._stop: Optional[asyncio.Event] = None
        self._error: Optional[BaseException] = None
        self.switches = self._switches()

    # -- the bundle --------------------------------------------------------------------------------------
    def _switches(self) -> list:
        """[{name, graph (URL path), num_devices}] in the manifest's fallback order."""
        manifest = self.bundle / "manifest.json"
        if manifest.is_file():
            doc = json.loads(manifest.read_text(encoding="utf-8"))
            entries = {e["name"]: e for e in doc["switches"]}
            return [{"name": n, "graph": f"bundle/{entries[n]['graph']}", "num_devices": entries[n]["num_devices"]}
                    for n in doc.get("fallback", list(entries))]
        graph = json.loads((self.bundle / "fusion_graph.json").read_text(encoding="utf-8"))
        return [{"name": graph["switch"], "graph": "bundle/fusion_graph.json", "num_devices": len(graph["devices"])}]

    def session(self) -> dict:
        return {**self.info, "switches": self.switches, "subprotocol": SUBPROTOCOL,
                "max_frame_bytes": self.max_frame_bytes,
                "tcp_peers": {str(d): f"{h}:{p}" for d, (h, p) in sorted(self.tcp_peers.items())}}

    # -- HTTP --------------------------------------------------------------------------------------------
    def _file(self, path: str) -> Optional[Path]:
        """The file a URL path names, confined to the three served folders."""
        path = urllib.parse.unquote(path.split("?", 1)[0])
        if path in ("/", ""):
            return self.web_root / "index.html"
        for prefix, root in (("/bundle/", self.bundle), ("/vendor/@litertjs/", self.vendor),
                             ("/js/", self.web_root / "js"), ("/static/", self.web_root / "static")):
            if path.startswith(prefix):
                target = (root / path[len(prefix):]).resolve()
                if target.is_file() and (target == root or root in target.parents):
                    return target
                return None
        return None

    def _process_request(self, connection, request):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        path = request.path
        if path.split("?", 1)[0] == "/relay":
            return None  # the WebSocket handshake goes on
        # Cross-origin isolation (COOP/COEP) lets a browser give LiteRT.js
        # SharedArrayBuffer, which its threaded WASM build needs.
        headers = Headers({"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
                           "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-store"})
        if path.split("?", 1)[0] == "/session.json":
            body = json.dumps(self.session()).encode()
            headers["Content-Type"] = "application/json"
            return Response(200, "OK", headers, body)
        target = self._file(path)
        if target is None:
            headers["Content-Type"] = "text/plain; charset=utf-8"
            return Response(404, "Not Found", headers, f"no such file: {path}\n".encode())
        headers["Content-Type"] = _TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or \
            "application/octet-stream"
        return Response(200, "OK", headers, target.read_bytes())

    # -- the relay ---------------------------------------------------------------------------------------
    def _parse(self, path: str) -> tuple:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        try:
            switch = query["switch"][0]
            src, dst = int(query["from"][0]), int(query["to"][0])
        except (KeyError, ValueError, IndexError):
            raise WebRelayError(f"/relay needs ?switch=NAME&from=DEVICE&to=DEVICE, received {path!r}") from None
        entry = next((s for s in self.switches if s["name"] == switch), None)
        if entry is None:
            raise WebRelayError(f"/relay: no switch {switch!r} in the bundle; it holds "
                                f"{[s['name'] for s in self.switches]}")
        n = entry["num_devices"]
        if not (0 <= src < n and 0 <= dst < n and src != dst):
            raise WebRelayError(f"/relay: devices from={src} to={dst} must differ and lie in 0..{n - 1} for {switch}")
        if src in self.tcp_peers:
            raise WebRelayError(f"/relay: device {src} is the Python peer at {self.tcp_peers[src]}, not a page")
        return switch, src, dst

    async def _handler(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            switch, src, dst = self._parse(ws.request.path)
        except WebRelayError as e:
            await ws.close(1008, str(e)[:120])
            return
        link = _Link(ws, switch, src, dst)
        try:
            if dst in self.tcp_peers:
                await self._pipe_tcp(link)
            else:
                await self._pipe_pages(link)
        except ConnectionClosed:
            pass
        finally:
            await self._drop(link, f"device {src} left")

    async def _pipe_pages(self, link: _Link) -> None:
        key, other = (link.switch, link.src, link.dst), (link.switch, link.dst, link.src)
        old = self._waiting.pop(key, None)
        if old is not None:  # a page that reconnects replaces its older socket
            await self._drop(old, f"replaced by a newer connection of device {link.src}")
        partner = self._waiting.pop(other, None)
        if partner is not None and not partner.closed:
            link.partner, partner.partner = partner, link
            for message in partner.pending:  # what the partner sent while it waited (its HELLO)
                await link.ws.send(message)
            partner.pending.clear()
            log.info("relay %s: device %d <-> device %d paired", link.switch, link.src, link.dst)
        else:
            self._waiting[key] = link
        async for message in link.ws:
            if isinstance(message, str):
                await link.ws.close(1003, "text message: frames are binary messages")
                return
            if len(message) > self.max_frame_bytes:  # websockets' max_size also bounds it
                await link.ws.close(1009, f"message of {len(message)} bytes over the cap {self.max_frame_bytes}")
                return
            if link.partner is None:
                link.pending_bytes += len(message)
                if link.pending_bytes > _PRE_PAIR_BYTES:
                    await link.ws.close(1008, f"more than {_PRE_PAIR_BYTES} bytes before device {link.dst} joined")
                    return
                link.pending.append(message)
            elif not link.partner.closed:
                await link.partner.ws.send(message)

    async def _pipe_tcp(self, link: _Link) -> None:
        host, port = self.tcp_peers[link.dst]
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
        except (OSError, asyncio.TimeoutError) as e:
            await link.ws.close(1011, f"device {link.dst} (Python peer at {host}:{port}) unreachable: "
                                      f"{type(e).__name__}"[:120])
            return
        import socket

        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link.tcp_writer = writer
        log.info("relay %s: device %d <-> device %d (TCP %s:%d)", link.switch, link.src, link.dst, host, port)
        down = asyncio.ensure_future(self._tcp_to_ws(link, reader))
        try:
            async for message in link.ws:
                if isinstance(message, str):
                    await link.ws.close(1003, "text message: frames are binary messages")
                    return
                problem = _framing_problem(message, self.max_frame_bytes)
                if problem:
                    await link.ws.close(1008, problem[:120])
                    return
                writer.write(message)  # one frame, whole: the stream keeps its framing
                await writer.drain()
        finally:
            down.cancel()
            writer.close()

    async def _tcp_to_ws(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Cuts the Python peer's stream into frames, one WebSocket message each."""
        reason = f"device {link.dst} (Python peer) closed the connection"
        try:
            while True:
                header = await reader.readexactly(HEADER_LEN)
                payload_len = int.from_bytes(header[16:24], "little")
                if HEADER_LEN + payload_len > self.max_frame_bytes:
                    reason = f"device {link.dst} sent a frame of {HEADER_LEN + payload_len} bytes, over the cap"
                    break
                payload = await reader.readexactly(payload_len) if payload_len else b""
                await link.ws.send(header + payload)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            return
        try:
            await link.ws.close(1001, reason[:120])
        except Exception:  # the page may be gone already
            pass

    async def _drop(self, link: _Link, reason: str) -> None:
        if link.closed:
            return
        link.closed = True
        key = (link.switch, link.src, link.dst)
        if self._waiting.get(key) is link:
            del self._waiting[key]
        if link.tcp_writer is not None:
            link.tcp_writer.close()
        try:
            await link.ws.close(1001, reason[:120])
        except Exception:
            pass
        partner = link.partner
        if partner is not None and not partner.closed:
            # The other page learns at once which device went away (1001: going away).
            await self._drop(partner, reason)

    # -- life --------------------------------------------------------------------------------------------
    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        try:
            # Compression off: tensors barely compress, and it costs CPU on a phone.
            async with serve(self._handler, self.host, self.port, subprotocols=[SUBPROTOCOL],
                             process_request=self._process_request, compression=None,
                             max_size=self.max_frame_bytes, ping_interval=None) as server:
                self._server = server
                self.port = server.sockets[0].getsockname()[1]
                self._started.set()
                await self._stop.wait()
        except BaseException as e:
            self._error = e
            self._started.set()
            raise

    def start(self) -> "WebRelay":
        """Serves from a background thread; returns once listening."""
        def run():
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._main())
            except BaseException:
                pass
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="web-relay", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise WebRelayError(f"cannot listen on {self.host}:{self.port}: {self._error}") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)


def _framing_problem(message: bytes, cap: int) -> Optional[str]:
    """Why a WebSocket message cannot be written to a TCP stream as one frame, or None."""
    if len(message) < HEADER_LEN:
        return f"message of {len(message)} bytes, shorter than a 64-byte header"
    if message[:4] != MAGIC:
        return "message does not start with PRDS: not a frame"
    payload_len = int.from_bytes(message[16:24], "little")
    if HEADER_LEN + payload_len > cap:
        return f"frame of {HEADER_LEN + payload_len} bytes over the cap {cap}"
    if len(message) != HEADER_LEN + payload_len:
        return f"message of {len(message)} bytes for a frame of {HEADER_LEN + payload_len}"
    return None
