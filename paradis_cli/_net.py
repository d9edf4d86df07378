"""Flags shared by the verbs that talk to peers (``peer``, ``run``): the
session key file, the address list, link emulation and deadlines."""

from __future__ import annotations

from pathlib import Path

from paradis_cli._common import UsageError, non_negative_float, positive_float

__all__ = ["add_network_arguments", "peer_config", "peer_addresses"]


def add_network_arguments(p) -> None:
    p.add_argument("--peers", default="",
                   help="comma-separated HOST:PORT of devices 1, 2, ... (the same list on every device)")
    p.add_argument("--discover", action="store_true",
                   help="find the peers with DNS-SD (_paradis._tcp; needs the [discovery] extra) instead of --peers")
    p.add_argument("--mdns-interface", action="append", default=None, metavar="IP",
                   help="with --discover/--advertise: the interface to use (repeatable; default all)")
    p.add_argument("--session-key-file", required=True,
                   help="file holding the shared secret (>= 16 bytes; 32 random bytes as hex recommended)")
    p.add_argument("--link-mbps", type=non_negative_float, default=0.0,
                   help="emulate a link of this bandwidth when sending (benchmarks; 0 = off)")
    p.add_argument("--link-latency-ms", type=non_negative_float, default=0.0,
                   help="emulate this one-way latency when sending (benchmarks; 0 = off)")
    p.add_argument("--tls-cert", default=None, help="TLS: this device's certificate (PEM); a listening device needs it")
    p.add_argument("--tls-key", default=None, help="TLS: the key of --tls-cert (PEM)")
    p.add_argument("--tls-ca", default=None,
                   help="TLS: the certificate(s) the devices this one dials must present (PEM)")
    p.add_argument("--peer-deadline", type=positive_float, default=2.0,
                   help="seconds of silence after which a peer is declared lost (default 2)")
    p.add_argument("--request-deadline", type=positive_float, default=2.0,
                   help="seconds an inference may take before it is abandoned (default 2)")


def peer_addresses(args, above: int = 0, timeout: float = 5.0) -> dict:
    """{device: (host, port)}: --peers, or with --discover the devices above
    ``above`` found on the network within ``timeout`` (1, 2, ... in a row)."""
    from paradis_runtime.peer import parse_peers

    if args.discover:
        if args.peers:
            raise UsageError("--discover and --peers exclude each other: give one.")
        from paradis_runtime.discovery import discover
        from paradis_runtime.manifest import read_manifest

        bundle = Path(args.bundle)
        most = max((e.get("num_devices", 1) for e in read_manifest(bundle)["switches"]), default=1) \
            if (bundle / "manifest.json").is_file() else 1
        try:
            found = discover(bundle, range(above + 1, most), timeout, args.mdns_interface)
        except ImportError as e:
            raise UsageError(f"--discover: {e}") from None
        out = {}
        for d in range(1, most):
            if d in found:
                out[d] = found[d]
            elif d > above:
                break  # addresses are positional: stop at the first device not found
        print(f"discovered: {', '.join(f'device {d} at {h}:{p}' for d, (h, p) in out.items() if d > above) or 'none'}",
              flush=True)
        return out
    try:
        return parse_peers(args.peers)
    except ValueError as e:
        raise UsageError(f"--peers: {e}") from None


def peer_config(args):
    from paradis_runtime import Link, PeerConfig

    path = Path(args.session_key_file)
    if not path.is_file():
        raise UsageError(f"--session-key-file {args.session_key_file}: no such file (write one with "
                         "`python -c 'import secrets; print(secrets.token_hex(32))' > KEY`).")
    key = path.read_bytes().strip()
    from paradis_runtime import TLS

    try:
        tls = TLS(args.tls_cert, args.tls_key, args.tls_ca) if (args.tls_cert or args.tls_key or args.tls_ca) else None
    except ValueError as e:
        raise UsageError(f"--tls-cert/--tls-key/--tls-ca: {e}") from None
    try:
        return PeerConfig(key=key, link=Link(args.link_mbps, args.link_latency_ms), peer_deadline=args.peer_deadline,
                          request_deadline=args.request_deadline, tls=tls)
    except ValueError as e:
        if "peer_deadline" in str(e):  # in the flags' terms, not PeerConfig's fields
            beat = PeerConfig.__dataclass_fields__["heartbeat_interval"].default
            least = beat + (args.link_latency_ms or 0.0) / 1000.0
            raise UsageError(f"--peer-deadline {args.peer_deadline:g}: must exceed the {beat:g} s heartbeat interval "
                             f"plus --link-latency-ms, or live peers are declared dead; pass more than {least:g}.") \
                from None
        raise UsageError(f"--session-key-file {args.session_key_file}: {e}" if "session key" in str(e)
                         else str(e)) from None
