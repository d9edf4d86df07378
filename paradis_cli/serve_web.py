"""``paradis serve-web``: the zero-install web peer on the LAN.

    paradis serve-web --bundle runs/r20/bundle [--host 0.0.0.0 --port 8000] \\
        [--tcp-peer 1=10.0.0.7:7001]

Serves the page (android_demo/web), the bundle's files and the frame relay
(``paradis_runtime.web_relay``), prints the page's URL and a QR code of it;
each phone opens the URL, picks its device and enters the session key (or
gets both in the URL's fragment, which never reaches the server). Python
peers join with ``--tcp-peer DEVICE=HOST:PORT`` (a running ``paradis peer``):
the server dials them for the pages. The HELLO/AUTH handshake stays end to
end between the devices: this server never needs the session key.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from paradis_cli._common import UsageError, positive_int

__all__ = ["HELP", "add_arguments", "run", "lan_address", "qr_text", "qr_svg"]

HELP = "serve the web peer page, the bundle and a frame relay on the LAN (runs until Ctrl-C)"

# The page lives next to the Python packages in a source checkout.
WEB_ROOT = Path(__file__).resolve().parents[1] / "android_demo" / "web"


def add_arguments(p) -> None:
    p.add_argument("--bundle", required=True, help="the bundle folder written by `paradis export`")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0: the whole LAN)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--tcp-peer", action="append", default=[], metavar="DEVICE=HOST:PORT",
                   help="a Python peer (`paradis peer`) that serves DEVICE; the server dials it for the pages "
                        "(repeatable)")
    p.add_argument("--url-host", default=None,
                   help="host name or IP the printed URL uses (default: this machine's LAN address)")
    p.add_argument("--max-frame-bytes", type=positive_int, default=64 * 1024 * 1024,
                   help="largest frame relayed, header included (default 64 MiB)")
    p.add_argument("--web-root", default=str(WEB_ROOT),
                   help="the page's folder (default: android_demo/web of this checkout, "
                        "with node_modules from `npm ci`)")


def lan_address() -> str:
    """This machine's address on its default route (no packet is sent:
    connecting a UDP socket only picks the route); 127.0.0.1 without one."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))
        return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


def _qr(url: str):
    try:
        import segno
    except ImportError:
        raise UsageError("serve-web needs the `web` extra for its QR code: pip install -e '.[web]'") from None
    return segno.make(url, error="m")


def qr_text(url: str) -> str:
    """The QR code of ``url`` drawn with block characters for a terminal."""
    import io

    buf = io.StringIO()
    _qr(url).terminal(out=buf, compact=True, border=2)
    return buf.getvalue()


def qr_svg(url: str) -> str:
    return _qr(url).svg_inline(scale=4, border=2)


def _tcp_peers(items) -> dict:
    from paradis_runtime.peer import parse_address

    out = {}
    for item in items:
        device, sep, address = item.partition("=")
        if not sep or not device.strip().isdigit() or int(device) < 1:
            raise UsageError(f"--tcp-peer must be DEVICE=HOST:PORT with DEVICE >= 1 (device 0 is the page that "
                             f"feeds the camera), received {item!r}.")
        try:
            out[int(device)] = parse_address(address, f"--tcp-peer {item}")
        except ValueError as e:
            raise UsageError(str(e)) from None
    return out


def run(args) -> None:
    from paradis_runtime.web_relay import WebRelay, WebRelayError

    bundle = Path(args.bundle)
    if not bundle.is_dir():
        raise UsageError(f"--bundle {args.bundle}: no such folder.")
    if not 0 <= args.port < 65536:
        raise UsageError(f"--port must be in 0..65535, received {args.port}.")
    peers = _tcp_peers(args.tcp_peer)
    try:
        relay = WebRelay(bundle, args.web_root, args.host, args.port, tcp_peers=peers,
                         max_frame_bytes=args.max_frame_bytes)
    except WebRelayError as e:
        raise UsageError(str(e)) from None
    except ImportError:
        raise UsageError("serve-web needs the `web` extra (websockets): pip install -e '.[web]'") from None
    relay.start()
    host = args.url_host or (lan_address() if args.host in ("0.0.0.0", "", "::") else args.host)
    url = f"http://{host}:{relay.port}/"
    relay.info.update({"url": url, "qr_svg": qr_svg(url)})
    print(qr_text(url), flush=True)
    print(f"serving {bundle} for the web peer at {url}  (open it on each phone: pick a device, enter the session "
          f"key; or add #device=N&key=KEY to the URL)", flush=True)
    for d, (h, p) in sorted(peers.items()):
        print(f"device {d}: Python peer at {h}:{p} (dialed by the server for the pages)", flush=True)
    stop = threading.Event()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        print("serve-web stopping", flush=True)
        relay.stop()
