"""Finding the peers of a bundle with DNS-SD (optional; ``pip install
'paradis-tf[discovery]'``, the ``zeroconf`` package).

A peer advertises the service ``_paradis._tcp`` (which Android's NsdManager
also browses and registers) with TXT records naming the export it holds and
its device index; the input device, and any peer that dials higher devices,
browses for the same export and takes the addresses found. The static
``--peers`` list stays the default: discovery is a convenience on a LAN whose
routers pass multicast, and it never replaces the handshake (an advertised
address is dialed and must still pass HELLO/AUTH).

TXT records: ``bundle`` (``bundle_id``: 16 hex digits over the sha256 of
every graph file of the bundle, so another export never matches),
``device``, ``model`` and ``frames`` (the frame format version).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from pathlib import Path
from typing import Optional

from paradis_runtime.frames import VERSION

__all__ = ["SERVICE", "Advertiser", "bundle_id", "discover"]

SERVICE = "_paradis._tcp.local."


def _zeroconf():
    try:
        import zeroconf
    except ImportError:
        raise ImportError("discovery needs the zeroconf package: pip install 'paradis-tf[discovery]' "
                          "(or give the addresses with --peers).") from None
    return zeroconf


def bundle_id(bundle) -> str:
    """16 hex digits naming one export: over the sha256 of each switch's
    graph file (which records its device files' sha256)."""
    from paradis_runtime.manifest import read_manifest

    bundle = Path(bundle)
    h = hashlib.sha256()
    if (bundle / "manifest.json").is_file():
        files = [bundle / e["graph"] for e in sorted(read_manifest(bundle)["switches"], key=lambda e: e["name"])]
    else:
        from paradis_runtime.executor import resolve_graph

        files = [resolve_graph(bundle)]
    for f in files:
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def _interfaces(interfaces):
    zc = _zeroconf()
    return zc.InterfaceChoice.All if not interfaces else list(interfaces)


class Advertiser:
    """Advertises device ``device`` of ``bundle`` at ``host:port`` until ``close()``."""

    def __init__(self, bundle, device: int, host: str, port: int, interfaces: Optional[list] = None,
                 model: str = ""):
        zc = _zeroconf()
        if host in ("", "0.0.0.0"):
            raise ValueError(f"advertise: give the address other devices reach this one at, received host "
                             f"{host!r} (use --listen with this machine's LAN address).")
        self.id = bundle_id(bundle)
        self._zc = zc.Zeroconf(interfaces=_interfaces(interfaces), ip_version=zc.IPVersion.V4Only)
        name = f"paradis-{self.id[:8]}-d{device}-{port}.{SERVICE}"
        self.info = zc.ServiceInfo(
            SERVICE, name, addresses=[socket.inet_aton(socket.gethostbyname(host))], port=port,
            properties={"bundle": self.id, "device": str(device), "model": model, "frames": str(VERSION)},
            server=f"paradis-{self.id[:8]}-d{device}.local.")
        self._zc.register_service(self.info)

    def close(self) -> None:
        try:
            self._zc.unregister_service(self.info)
        finally:
            self._zc.close()


def discover(bundle, devices, timeout: float = 5.0, interfaces: Optional[list] = None) -> dict:
    """Browses ``_paradis._tcp`` for peers holding this export; returns
    {device: (host, port)} once every device in ``devices`` was found, or
    what was found when ``timeout`` seconds have passed."""
    zc = _zeroconf()
    wanted = set(devices)
    ident = bundle_id(bundle)
    found: dict = {}
    done = threading.Event()
    conf = zc.Zeroconf(interfaces=_interfaces(interfaces), ip_version=zc.IPVersion.V4Only)

    class _Listener:
        def add_service(self, z, kind, name):
            info = z.get_service_info(kind, name, timeout=2000)
            if info is None or not info.addresses:
                return
            props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
            if props.get("bundle") != ident or not props.get("device", "").isdigit():
                return  # another export, or not ours
            found[int(props["device"])] = (socket.inet_ntoa(info.addresses[0]), info.port)
            if wanted <= set(found):
                done.set()

        update_service = add_service

        def remove_service(self, z, kind, name):
            pass

    browser = zc.ServiceBrowser(conf, SERVICE, _Listener())
    try:
        done.wait(timeout)
        time.sleep(0)  # let a last callback finish its dict write
    finally:
        browser.cancel()
        conf.close()
    return {d: a for d, a in sorted(found.items()) if d in wanted or not wanted}
