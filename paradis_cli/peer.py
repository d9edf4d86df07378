"""``paradis peer``: serve one device of a bundle until stopped.

    paradis peer --bundle runs/r20/bundle --device 1 --peers 10.0.0.5:7001 \\
        --session-key-file key.txt [--listen 0.0.0.0:7001]

Serves the device in every switch of the bundle that has it (or those named
by --switch), so the input device can fall back between them. Ctrl-C (or
SIGTERM) leaves gracefully: SHUTTING_DOWN to every connected device.
"""

from __future__ import annotations

import errno
import logging
import signal
import sys
import threading
from pathlib import Path

from paradis_cli._common import UsageError, bundle_path, positive_int
from paradis_cli._net import add_network_arguments, peer_addresses, peer_config

__all__ = ["HELP", "add_arguments", "run"]

HELP = "serve one device of a bundle to the other devices (runs until Ctrl-C)"


def add_arguments(p) -> None:
    p.add_argument("--bundle", required=True, help="the bundle folder (the same export on every device)")
    p.add_argument("--device", required=True, type=positive_int,
                   help="this device's index (1, 2, ...; device 0 is the input device: `paradis run`)")
    p.add_argument("--switch", default=None,
                   help="comma-separated switches to serve (default: every switch that has this device)")
    p.add_argument("--listen", default=None,
                   help="HOST:PORT to accept connections on (default: this device's entry in --peers)")
    add_network_arguments(p)
    p.add_argument("--advertise", action="store_true",
                   help="advertise this device with DNS-SD (_paradis._tcp) at its --listen address")
    p.add_argument("--trace", default=None, help="append one JSON line per request (stage times) to this file")


def run(args) -> None:
    from paradis_runtime import FusionGraphError, SelectionError
    from paradis_runtime.peer import parse_address, serve

    bundle = bundle_path(args.bundle)
    config = peer_config(args)
    listen = None
    if args.listen:
        try:
            listen = parse_address(args.listen, "--listen")
        except ValueError as e:
            raise UsageError(str(e)) from None
    if args.advertise and listen is None:
        raise UsageError("--advertise needs --listen HOST:PORT (the address other devices reach this one at).")
    peers = peer_addresses(args, above=args.device, timeout=10.0)
    switches = [s for s in args.switch.split(",") if s] if args.switch else None
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        peer = serve(bundle, args.device, config, peers, listen, switches, Path(args.trace) if args.trace else None)
    except SelectionError as e:  # --switch or --device names what the bundle lacks
        raise UsageError(str(e)) from None
    except FusionGraphError:
        raise
    except ValueError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        where = args.listen or f"this device's entry in --peers ({args.peers})"
        raise UsageError(f"--listen {where}: the port is in use (another peer, or another program, listens there); "
                         "stop it or pass a free port.") from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    host, port = peer.listen
    advertiser = None
    if args.advertise:
        from paradis_runtime.discovery import Advertiser

        try:
            advertiser = Advertiser(bundle, args.device, host, port, args.mdns_interface,
                                    model=peer.programs[0].graph["model"])
        except (ImportError, ValueError) as e:
            peer.stop(graceful=False)
            raise UsageError(f"--advertise: {e}") from None
    print(f"device {args.device} ready on {host}:{port}: switches "
          f"{', '.join(p.switch for p in peer.programs)}; {config.link.describe()}"
          + ("; advertised as _paradis._tcp" if advertiser else ""), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        print(f"device {args.device} leaving", flush=True)
        if advertiser:
            advertiser.close()
        peer.stop(graceful=True)
