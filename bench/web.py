"""The web peer against the Python runtime, on this machine, from one run.

* Per stage: LiteRT.js (WASM, CPU, one thread) in Debian's headless Chromium
  against ``ai_edge_litert`` (one thread) on the same stages of the same
  files: float32 (the device file) and int8 (the page runs the browser file,
  uint8 I/O; Python the int8 file). The page's time is its engine's
  ``run`` (tensor creation, the WASM call, the output copy and, int8, the
  XOR), timed inside the page with ``performance.now()``; Python's is the
  signature runner's call. Median over ``--runs`` calls after warm-up.
* End to end: one inference at a time, 2 browser pages (devices 0 and 1
  through ``paradis serve-web``'s relay) against 2 Python peers (``connect``
  in this process, ``paradis peer`` in another), both on loopback. Median
  latency over ``--runs`` inferences.

Model: ResNet-20 (width 1.0, 28x28x1, 10 classes, seeded random weights and
gates at budget 0.2; latency does not depend on trained weights), switch
2x0.5, device 0's stages. Writes docs/results/web.json and web.md.

    python bench/web.py [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "docs" / "results"
SWITCH = "2x0.5"
KEY = "web-bench-session-key-" + "0" * 16
CHROMIUM = "/usr/bin/chromium"

NOTES = ("Reading: these stages are tiny (under 1 MFLOP each), so both columns measure per-call overhead more "
         "than arithmetic: a LiteRT.js call costs about 0.1 ms (tensor objects in and out of the WASM heap), an "
         "ai_edge_litert call about 15 us. End to end, each of the ~30 exchanges of 2x0.5 crosses the relay "
         "(browser -> asyncio websockets server -> browser), which costs about 2 ms a hop here against ~0.1 ms "
         "for the Python peers' direct TCP; where that time goes (browser message dispatch, the relay's event "
         "loop, two pages in one browser on 2 shared cores) was not broken down. Both pages ran in one headless "
         "Chromium on this machine, not on phones.")

STAGE_TIMER = """async ([runs]) => {
  const peer = window.paradis.state.peer;
  const engine = peer.engine, program = peer.program;
  const out = {};
  for (const stage of program.stages) {
    const feeds = {};
    for (const name of stage.inputs) {
      const s = program.specs[name];
      const n = s.shape.reduce((a, b) => a * b, 1);
      feeds[name] = s.dtype === 'int8' ? new Int8Array(n).map((_, i) => (i * 37) % 256 - 128)
                                       : new Float32Array(n).map((_, i) => ((i * 37) % 101) / 101);
    }
    for (let i = 0; i < 5; i++) await engine.run(stage, feeds);
    const times = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await engine.run(stage, feeds);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    out[stage.name] = times[Math.floor(times.length / 2)];
  }
  return out;
}"""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def export(root: Path) -> None:
    import keras

    from paradis_export import export_bundle
    from paradis_tf.models import CifarResNet
    from paradis_tf.data import load_fashion_mnist
    import numpy as np

    keras.utils.set_random_seed(0)
    model = CifarResNet(depth=20, width=1.0, num_classes=10, input_shape=(28, 28, 1), switches=SWITCH)
    rng = np.random.default_rng(0)
    for v in model.weights:
        if "gate_logits" in v.path:
            v.assign(rng.normal(size=v.shape).astype("float32"))
    model.finalize_gates(budget=0.2)
    images = load_fashion_mnist("test")[0][:64].astype("float32") / 255.0
    export_bundle(model, SWITCH, root / "float32", progress=None)
    export_bundle(model, SWITCH, root / "int8", int8=True, calibration=images, progress=None, browser=True)


def python_stages(folder: Path, precision: str, runs: int) -> dict:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    doc = json.loads((folder / "fusion_graph.json").read_text())
    dev = doc["devices"][0]
    interp = Interpreter(model_path=str(folder / dev["file"]), num_threads=1)
    out = {}
    for s in dev["stages"]:
        runner = interp.get_signature_runner(s["signature"])
        feeds = {}
        for t in s["inputs"]:
            shape = doc["tensors"][t]["shape"]
            n = int(np.prod(shape))
            feeds[t] = ((np.arange(n) * 37 % 256 - 128).astype(np.int8) if precision == "int8"
                        else (np.arange(n) * 37 % 101 / 101).astype(np.float32)).reshape(shape)
        for _ in range(5):
            runner(**feeds)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            runner(**feeds)
            times.append((time.perf_counter() - t) * 1000)
        out[s["name"]] = statistics.median(times)
    return out


@contextlib.contextmanager
def serve_web(bundle: Path, log: Path):
    proc = subprocess.Popen([sys.executable, "-m", "paradis_cli", "serve-web", "--bundle", str(bundle), "--host",
                             "127.0.0.1", "--port", "0", "--url-host", "127.0.0.1"], cwd=ROOT,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        for _ in range(600):
            m = re.search(r"for the web peer at (http://\S+/)", log.read_text())
            if m:
                break
            if proc.poll() is not None:
                raise RuntimeError(log.read_text())
            time.sleep(0.05)
        else:
            raise RuntimeError(f"serve-web did not start: {log.read_text()}")
        yield m.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def browser_run(browser, bundle: Path, images, runs: int, tmp: Path) -> tuple:
    """(per-stage medians of device 0, end-to-end latencies in ms, WASM files the page fetched)."""
    with serve_web(bundle, tmp / f"serve-{bundle.name}.log") as url:
        wasm = []
        pages = []
        for d in (0, 1):
            page = browser.new_page()
            page.on("request", lambda r: wasm.append(r.url.rsplit("/", 1)[-1]) if r.url.endswith(".wasm") else None)
            page.goto(f"{url}#switch={SWITCH}&device={d}&key={KEY}")
            pages.append(page)
        for p in pages:
            p.wait_for_function("window.paradis && window.paradis.ready()", timeout=120000)
        latencies = []
        for i in range(runs + 5):
            r = pages[0].evaluate("(a) => window.paradis.infer(a)", images[i % len(images)].ravel().tolist())
            if i >= 5:
                latencies.append(r["totalMs"])
        stages = pages[0].evaluate(STAGE_TIMER, [runs])
        if bundle.name == "float32":  # the page as a user sees it after an inference: docs/results/web_demo.png
            RESULTS.mkdir(parents=True, exist_ok=True)
            pages[0].screenshot(path=str(RESULTS / "web_demo.png"), full_page=True)
        for p in pages:
            p.close()
    return stages, latencies, sorted(set(wasm))


def python_run(bundle: Path, images, runs: int, tmp: Path) -> list:
    from paradis_runtime import connect

    port = free_port()
    key = tmp / "key"
    key.write_text(KEY)
    log = tmp / f"peer-{bundle.name}.log"
    proc = subprocess.Popen([sys.executable, "-m", "paradis_cli", "peer", "--bundle", str(bundle), "--device", "1",
                             "--peers", f"127.0.0.1:{port}", "--session-key-file", str(key)], cwd=ROOT,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        for _ in range(1200):
            if "device 1 ready on" in log.read_text():
                break
            time.sleep(0.05)
        latencies = []
        with connect(bundle, f"127.0.0.1:{port}", key=KEY, switches=[SWITCH]) as session:
            for i in range(runs + 5):
                t = time.perf_counter()
                session.run(images[i % len(images)])
                if i >= 5:
                    latencies.append((time.perf_counter() - t) * 1000)
        return latencies
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="timed calls per stage and inferences per setting")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from paradis_tf.data import load_fashion_mnist

    images = load_fashion_mnist("test")[0][:16].astype("float32") / 255.0
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                          f"load average {os.getloadavg()[0]:.1f} at start",
               "model": "ResNet-20 width 1.0, 28x28x1, 10 classes, switch 2x0.5 (budget 0.2), device 0's stages",
               "runs": args.runs, "precisions": {}}
    with tempfile.TemporaryDirectory(prefix="paradis_web_bench_") as tmp:
        tmp = Path(tmp)
        export(tmp)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for precision in ("float32", "int8"):
                bundle = tmp / precision
                folder = bundle / SWITCH
                js_stages, js_e2e, wasm = browser_run(browser, bundle, images, args.runs, tmp)
                py_stages = python_stages(folder, precision, args.runs)
                py_e2e = python_run(bundle, images, args.runs, tmp)
                rows = [{"stage": s, "litertjs_ms": js_stages[s], "ai_edge_litert_ms": py_stages[s],
                         "ratio": js_stages[s] / py_stages[s]} for s in py_stages]
                results["precisions"][precision] = {
                    "wasm_loaded": wasm, "stages": rows,
                    "stages_sum_ms": {"litertjs": sum(r["litertjs_ms"] for r in rows),
                                      "ai_edge_litert": sum(r["ai_edge_litert_ms"] for r in rows)},
                    "end_to_end_ms": {"browser_pages": statistics.median(js_e2e),
                                      "python_peers": statistics.median(py_e2e)},
                }
                r = results["precisions"][precision]
                r["stages_sum_ratio"] = r["stages_sum_ms"]["litertjs"] / r["stages_sum_ms"]["ai_edge_litert"]
                r["end_to_end_ratio"] = r["end_to_end_ms"]["browser_pages"] / r["end_to_end_ms"]["python_peers"]
                print(f"{precision}: stages {r['stages_sum_ms']} (x{r['stages_sum_ratio']:.2f}), end to end "
                      f"{r['end_to_end_ms']} (x{r['end_to_end_ratio']:.2f})", flush=True)
            browser.close()
    results["load_average_end"] = os.getloadavg()[0]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "web.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# Web peer: LiteRT.js in headless Chromium against ai_edge_litert", "",
             f"{results['model']}. Machine: {results['machine']} (end {results['load_average_end']:.1f}); "
             f"medians of {args.runs}. Code: `bench/web.py`. One thread on both sides (the page loads LiteRT.js's "
             "non-threaded WASM). Page stage time = its engine's `run` (tensors in, WASM call, copy out, int8 XOR).",
             "", "| precision | WASM loaded | sum of stages, LiteRT.js ms | sum of stages, ai_edge_litert ms | ratio | "
             "2 pages end to end ms | 2 Python peers end to end ms | ratio |", "|---|---|---|---|---|---|---|---|"]
    for precision, r in results["precisions"].items():
        lines.append(f"| {precision} | {', '.join(r['wasm_loaded'])} | {r['stages_sum_ms']['litertjs']:.2f} | "
                     f"{r['stages_sum_ms']['ai_edge_litert']:.2f} | {r['stages_sum_ratio']:.2f} | "
                     f"{r['end_to_end_ms']['browser_pages']:.2f} | {r['end_to_end_ms']['python_peers']:.2f} | "
                     f"{r['end_to_end_ratio']:.2f} |")
    for precision, r in results["precisions"].items():
        lines += ["", f"Per stage, {precision} (ms):", "", "| stage | LiteRT.js | ai_edge_litert | ratio |",
                  "|---|---|---|---|"]
        lines += [f"| {x['stage']} | {x['litertjs_ms']:.3f} | {x['ai_edge_litert_ms']:.3f} | {x['ratio']:.2f} |"
                  for x in r["stages"]]
    lines += ["", NOTES]
    (RESULTS / "web.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:8 + len(results["precisions"])]))


if __name__ == "__main__":
    main()
