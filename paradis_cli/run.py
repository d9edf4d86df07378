"""``paradis run``: the input device. Feeds inputs to the peers, collects the
fused outputs, and reports accuracy and latency.

    paradis run --bundle runs/r20/bundle --peers 10.0.0.5:7001 --session-key-file key.txt \\
        (--image shoe.png | --dataset fashion-mnist --count 100) [--in-flight 4]

Per inference the latency is split, on device 0, into compute (its stages),
wire (writing its frames) and wait (for the other devices); for each other
device, when its last frame arrived.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from paradis_cli._common import (CommandFailed, UsageError, bundle_path, positive_float, positive_int,
                                 printed_warnings)
from paradis_cli._net import add_network_arguments, peer_addresses, peer_config

__all__ = ["HELP", "add_arguments", "run", "load_image"]

HELP = "run inferences across the peers as the input device (device 0)"


def add_arguments(p) -> None:
    p.add_argument("--bundle", required=True, help="the bundle folder (the same export on every device)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="one image file (PNG/JPEG, the model's input size) or a .npy model input")
    src.add_argument("--dataset", help="'fashion-mnist': the first --count test images, with their labels")
    p.add_argument("--count", type=positive_int, default=None, help="images of --dataset to run (default 100)")
    p.add_argument("--switch", default=None,
                   help="comma-separated switches allowed (default: every switch the peers can staff)")
    p.add_argument("--in-flight", type=positive_int, default=1,
                   help="inferences on the wire at once, 1 to 8 (a peer holds 8 live requests; default 1: one at "
                        "a time, clean latencies)")
    p.add_argument("--connect-timeout", type=positive_float, default=10.0,
                   help="seconds to wait for the best switch's peers at start (default 10); then the run starts "
                        "on the best switch whose devices all answered, and moves up when the others do")
    add_network_arguments(p)
    p.add_argument("--report", default=None,
                   help="write the summary as JSON (a list of rows, one per switch used)")
    p.add_argument("--trace", default=None,
                   help="append one JSON line per request (device 0's stage times) to this file; with the "
                        "peers' --trace files it makes a profile: 'paradis profile --from-trace'")


def load_image(path: Path, graph: dict):
    """An image file as the model input the graph declares (preprocessing
    applied); a .npy is taken as the model input itself."""
    import numpy as np

    from paradis_runtime import InputCheck

    shape = tuple(graph["input"]["shape"])
    if path.suffix == ".npy":
        try:
            array = np.load(path)
        except (OSError, ValueError) as e:
            raise UsageError(f"--image {path}: not a .npy file numpy can read ({e}).") from None
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise UsageError(f"--image {path}: the array's dtype is {array.dtype}; a model input is a real number "
                             "array (float32 as input.preprocessing says).")
        try:  # the runtime's rule for a batch: (N, ...) with N >= 1, or one input without its batch axis
            return InputCheck(graph, f"--image {path}").batch(array).astype("float32")
        except ValueError as e:
            raise UsageError(str(e)) from None
    try:
        from PIL import Image
    except ImportError:
        raise UsageError(f"--image {path}: reading image files needs Pillow (pip install pillow), or pass a "
                         ".npy model input.") from None
    try:
        img = Image.open(path)
        pre = graph["input"]["preprocessing"]
        if img.mode.startswith("I") or img.mode == "F":
            # 16-bit, 32-bit or float pixels: convert() clips them to 0..255,
            # which turned a 16-bit photo into a black-and-white one, silently.
            raise UsageError(f"--image {path}: the image's pixels are {img.mode!r} (16-bit, 32-bit or float); "
                             "the model's preprocessing takes 8-bit pixels (0 to 255). Save it with 8 bits per "
                             "channel, or pass the model input as a .npy.")
        img = img.convert("L" if shape[-1] == 1 or pre.get("color") == "grayscale" else "RGB")
    except OSError as e:
        raise UsageError(f"--image {path}: not an image file Pillow can read ({e}).") from None
    pixels = np.asarray(img, dtype="float32")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape != shape[1:]:
        raise UsageError(f"--image {path}: the image is {pixels.shape[1]}x{pixels.shape[0]} with "
                         f"{pixels.shape[2]} channel(s); the model takes {shape[2]}x{shape[1]} with {shape[3]} "
                         "(resize it first).")
    return (pixels * pre["pixel_scale"] + pre["pixel_offset"])[None].astype("float32")


def _dataset(name: str, count: int, graph: dict):
    import numpy as np

    if name != "fashion-mnist":
        raise UsageError(f"--dataset {name!r}: the runner knows 'fashion-mnist'; pass --image for other inputs.")
    from paradis_tf.data import CLASS_NAMES, load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    if count > len(images):
        print(f"--count {count}: the fashion-mnist test split holds {len(images)} images; running all of them",
              flush=True)
    shape = tuple(graph["input"]["shape"])
    if shape[1:] != (28, 28, 1):
        raise UsageError(f"--dataset fashion-mnist gives 28x28x1 images; this bundle takes {list(shape[1:])}.")
    pre = graph["input"]["preprocessing"]
    x = images[:count].astype("float32") * pre["pixel_scale"] + pre["pixel_offset"]
    return x, labels[:count].astype(np.int64), CLASS_NAMES


def _ms(values) -> str:
    import numpy as np

    return f"{np.median(values) * 1e3:7.2f}" if len(values) else "      -"


def run(args) -> None:
    with printed_warnings():  # the input checks' warnings as one line each
        _run(args)


def _run(args) -> None:
    from paradis_runtime import Coordinator, FusionGraphError, RequestFailed, SelectionError, read_graph, resolve_graph

    bundle = bundle_path(args.bundle)
    config = peer_config(args)
    peers = peer_addresses(args, timeout=args.connect_timeout)
    graph = read_graph(resolve_graph(bundle), check_files=False)
    labels, names = None, None
    if args.image:
        path = Path(args.image)
        if not path.is_file():
            raise UsageError(f"--image {args.image}: no such file.")
        images = load_image(path, graph)
        if args.count is not None:
            print(f"warning: --count {args.count} is for --dataset; --image runs every input of {path}",
                  file=sys.stderr)
    else:
        images, labels, names = _dataset(args.dataset, args.count or 100, graph)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    switches = [s for s in args.switch.split(",") if s] if args.switch else None
    try:
        session = Coordinator(bundle, peers, switches=switches, in_flight=args.in_flight, config=config,
                              trace=Path(args.trace) if args.trace else None)
    except SelectionError as e:  # --switch names what the bundle lacks
        raise UsageError(str(e)) from None
    except FusionGraphError:
        raise  # the bundle itself is wrong: a failure, not a usage error
    except ValueError as e:  # --in-flight, or too few --peers for every switch
        raise UsageError(f"--in-flight {args.in_flight}: {e}" if "in_flight" in str(e) else str(e)) from None
    try:
        try:
            session.connect(args.connect_timeout)
        except ConnectionError as e:
            raise CommandFailed(str(e)) from None
        print(f"connected: switch {session.switch} ({len(peers)} peer(s)); {config.link.describe()}", flush=True)
        n = len(images)
        futures = []
        results, failed = [], []
        step = max(1, n // 10)

        def collect(block: bool) -> None:
            # In order, as they finish: progress shows while requests still go
            # out (submit waits while --in-flight requests are on the wire).
            while len(results) + len(failed) < len(futures):
                i = len(results) + len(failed)
                if not block and not futures[i].done():
                    return
                try:
                    results.append((i, futures[i].result()))
                except RequestFailed as e:
                    failed.append((i, str(e)))
                if n > 1 and ((i + 1) % step == 0 or i + 1 == n):
                    print(f"  {i + 1}/{n} inferences", flush=True)

        try:
            for i in range(n):
                futures.append(session.submit(images[i : i + 1]))
                collect(block=False)
        except ValueError as e:
            raise UsageError(f"--image: {e}" if args.image else str(e)) from None
        collect(block=True)
    finally:
        session.close()
    _report(args, config, results, failed, labels, names, n, graph["output"].get("kind", "logits"))


def _report(args, config, results, failed, labels, names, n, kind: str) -> None:
    import numpy as np

    if n == 1 and results:
        r = results[0][1]
        others = ", ".join(f"device {d} last frame at {t * 1e3:.2f} ms" for d, t in sorted(r.arrivals.items()))
        out = r.output[0]
        if kind == "logits":
            top = int(np.argmax(out))
            label = f" ({names[top]})" if names else ""
            # Printed from Python floats: float32's 0.581 would print as 0.5809999704360962.
            print(f"class {top}{label}, logits [{', '.join(f'{v:.3f}' for v in out.ravel())}]")
        else:  # an image, segmentation logits or CenterNet maps: too many values to print
            print(f"output ({kind}) of shape {list(out.shape)}: values in [{float(out.min()):.3f}, "
                  f"{float(out.max()):.3f}], mean {float(out.mean()):.3f}")
        print(f"switch {r.switch}: {r.latency_s * 1e3:.2f} ms (device 0: compute {r.compute_s * 1e3:.2f}, wire "
              f"{r.wire_s * 1e3:.2f}, wait {r.wait_s * 1e3:.2f} ms{'; ' + others if others else ''})")
    rows = []
    header = (f"{'switch':>14} {'count':>6} {'top-1':>7} {'latency ms':>10} {'p90 ms':>7} {'compute':>8} "
              f"{'wire':>7} {'wait':>7}")
    if n > 1:
        print(header)
        print("-" * len(header))
    for switch in dict.fromkeys(r.switch for _, r in results):
        mine = [(i, r) for i, r in results if r.switch == switch]
        lat = [r.latency_s for _, r in mine]
        acc = None
        if labels is not None:
            acc = float(np.mean([int(np.argmax(r.output[0])) == labels[i] for i, r in mine]))
        row = {"switch": switch, "count": len(mine), "accuracy": acc, "median_ms": float(np.median(lat) * 1e3),
               "p90_ms": float(np.percentile(lat, 90) * 1e3),
               "compute_ms": float(np.median([r.compute_s for _, r in mine]) * 1e3),
               "wire_ms": float(np.median([r.wire_s for _, r in mine]) * 1e3),
               "wait_ms": float(np.median([r.wait_s for _, r in mine]) * 1e3),
               "in_flight": args.in_flight, "link_mbps": config.link.mbps,
               "link_latency_ms": config.link.latency_ms, "link": config.link.describe()}
        rows.append(row)
        if n > 1:
            print(f"{switch:>14} {len(mine):>6} {'-' if acc is None else f'{acc:.2%}':>7} {_ms(lat):>10} "
                  f"{row['p90_ms']:>7.2f} {_ms([r.compute_s for _, r in mine]):>8} "
                  f"{_ms([r.wire_s for _, r in mine]):>7} {_ms([r.wait_s for _, r in mine]):>7}")
    if n > 1:
        print(f"medians on device 0 (compute: its stages; wire: writing frames; wait: for the peers); "
              f"{config.link.describe()}")
    if labels is not None and results:
        correct = sum(int(np.argmax(r.output[0])) == labels[i] for i, r in results)
        print(f"top-1 {correct / len(results):.2%} over {len(results)} answered inference(s)")
    for i, why in failed[:5]:
        print(f"inference {i}: failed: {why}", file=sys.stderr)
    if args.report:
        Path(args.report).write_text(json.dumps(rows, indent=1) + "\n")
    if failed:
        raise CommandFailed(f"{len(failed)} of {n} inference(s) failed.")
