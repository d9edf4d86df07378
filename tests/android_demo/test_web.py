"""The web peer (android_demo/web): its codec under Node against the shared
vectors and the Python codec, its graph reader against the runtime's, and the
page itself in Debian's headless Chromium with the real LiteRT.js, served by
`paradis serve-web`: 2 pages as 2 devices, 3 pages whose link between devices
1 and 2 drops and returns, 1 page beside a Python peer, and bad input
(malformed frame, wrong key, wrong file hash, bad graph, unknown switch, a peer
that leaves or stalls), each a clear message on the page and never a hang.

Needs node (>= 18), `npm ci` in android_demo/web (`make web-deps`), Debian's
chromium and the `web` extra (websockets, playwright, segno); a missing one
fails the test with what to install, it is not skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paradis_runtime.frames import (
    ErrorCode, FrameError, FrameType, Header, Hello, TensorSpec, auth_mac, check_header, decode_error, decode_header,
    decode_hello, encode_header, encode_hello,
)
from tests.paradis_runtime.peers import KEY, PeerProcess, free_ports, key_file

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "android_demo" / "web"
VECTORS = REPO / "export" / "vectors" / "frames.json"
CHROMIUM = "/usr/bin/chromium"
SWITCH = "2x0.5"
THREE = "0.5+0.3+0.2"  # three pages, so two of them exchange tensors without the input device


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: install Node.js >= 18 (`apt-get install nodejs`); the web peer's codec "
                    "tests run under it")
    return node


def _run_node(script: str, *args) -> dict:
    proc = subprocess.run([_node(), str(WEB / "test" / script), *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


# -- the codec, under Node ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vectors():
    return json.loads(VECTORS.read_text())


@pytest.fixture(scope="module")
def js(vectors):
    out = _run_node("vectors.mjs", VECTORS)
    # Every kind of vector present in the file was run (a new key needs a case in vectors.mjs).
    known = {"spec", "frame_version", "context", "worked_example", "hmac", "bad_headers", "good_frames",
             "error_payloads", "hello_payloads", "bad_payloads"}
    assert set(out["keys"]) <= known, f"frames.json has vectors the JS test does not run: {set(out['keys']) - known}"
    return out


def test_js_encodes_and_decodes_the_worked_example(js, vectors):
    w = vectors["worked_example"]
    assert js["worked_example"]["fields"] == w["fields"]
    assert js["worked_example"]["encoded_hex"] == w["header_hex"]
    assert js["worked_example"]["checked"] == FrameType.TENSOR


def test_js_hmac_and_sha256_match_the_spec_and_nist(js, vectors):
    assert js["hmac"] == {k: vectors["hmac"][k] for k in ("mac_0_to_1_hex", "mac_1_to_0_hex")}
    import hashlib
    import hmac

    assert js["sha256"] == {
        "empty": hashlib.sha256(b"").hexdigest(),
        "abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "two_blocks": "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        "million_a": "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
        "rfc4231_2": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        "rfc4231_6": hmac.new(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
                              hashlib.sha256).hexdigest(),
    }


def _python_code(header: bytes, context: dict):
    expected = {t["tensor_id"]: TensorSpec(f"t{t['tensor_id']}", t["dtype"], tuple(t["shape"]))
                for t in context["expected_tensors"]}
    try:
        check_header(header, allowed=tuple(FrameType), expected=expected, peer_is_input=context["peer_is_input"],
                     ready=True, max_frame_bytes=context["max_frame_bytes"])
    except FrameError as e:
        return int(e.code)
    return None


def test_js_rejects_every_bad_header_with_the_python_code(js, vectors):
    assert len(js["bad_headers"]) == len(vectors["bad_headers"]) > 20
    for got, want in zip(js["bad_headers"], vectors["bad_headers"]):
        python = _python_code(bytes.fromhex(want["header_hex"]), vectors["context"])
        assert (got["name"], got["code"]) == (want["name"], want["error_code"]) == (want["name"], python)


def test_js_decodes_and_reencodes_the_good_frames(js, vectors):
    assert "good_frames" in vectors, "frames.json lacks good_frames (export/vectors/make_frames.py writes them)"
    assert len(js["good_frames"]) == len(vectors["good_frames"])
    for got, want in zip(js["good_frames"], vectors["good_frames"]):
        assert got["name"] == want["name"]
        assert got["fields"] == want["fields"], want["name"]
        assert got["check_code"] is None, (want["name"], got["check_code"])  # every good frame passes section 6
        assert got["reencoded_hex"] == want["frame_hex"], want["name"]
        h = decode_header(bytes.fromhex(want["frame_hex"]))  # and the Python codec reads the same fields
        assert (h.type, h.request_id, h.tensor_id, list(h.dims)) == (
            FrameType[want["fields"]["type"]], want["fields"]["request_id"], want["fields"]["tensor_id"],
            want["fields"]["shape"])


def test_js_error_and_hello_payloads_match_the_vectors_and_python(js, vectors):
    for got, want in zip(js["error_payloads"], vectors["error_payloads"], strict=True):
        assert (got["code"], got["tensor_id"], got["message"]) == (want["code"], want["tensor_id"], want["message"])
        assert got["encoded_hex"] == want["payload_hex"]
        assert decode_error(bytes.fromhex(want["payload_hex"])) == (want["code"], want["tensor_id"], want["message"])
    for got, want in zip(js["hello_payloads"], vectors["hello_payloads"], strict=True):
        assert got == {**{k: want[k] for k in ("graph_sha256_hex", "nonce_hex", "device", "peer_device", "switch")},
                       "encoded_hex": want["payload_hex"]}
        assert decode_hello(bytes.fromhex(want["payload_hex"])).switch == want["switch"]
    for got, want in zip(js["bad_payloads"], vectors["bad_payloads"], strict=True):
        assert (got["name"], got["code"]) == (want["name"], want["error_code"])


# -- exported bundles (once per module) -------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    from tests.paradis_export.helpers import seeded_bundles

    root = tmp_path_factory.mktemp("web")
    seeded_bundles(root, f"{SWITCH},{THREE}", browser=True)
    return root


@pytest.fixture(scope="module")
def images():
    from tests.paradis_export.helpers import real_images

    return real_images(4, seed=3)[0]


def _graph(bundles, precision):
    return bundles / precision / SWITCH / "fusion_graph.json"


def test_js_graph_reader_derives_the_runtimes_tables(bundles, tmp_path):
    from paradis_runtime._program import DeviceProgram
    from paradis_runtime.schedule import fuse_partials
    from paradis_runtime._program import quantize_input

    graph = _graph(bundles, "int8")
    doc = json.loads(graph.read_text())
    sent = doc["sends"][0]["tensor"]
    bad = [
        "{not json",
        json.dumps({**doc, "version": 2}),
        json.dumps({**doc, "devices": [{**doc["devices"][0], "device": 5}] + doc["devices"][1:]}),
        json.dumps({**doc, "fusion": {**doc["fusion"], "inputs": ["nowhere"]}}),
        json.dumps({**doc, "tensors": {**doc["tensors"], sent: {
            **doc["tensors"][sent], "shape": [1, 1, 1] + doc["tensors"][sent]["shape"]}}}),  # rank 7 on the wire
    ]
    rng = np.random.default_rng(0)
    q = doc["tensors"][doc["input"]["tensor"]]["quantization"]
    image = rng.uniform(-0.2, 1.2, size=500).astype(np.float32)
    image[:5] = [0.0, 1.0, q["scale"] * 2.5, -q["scale"] * 0.5, q["scale"] * 3.5]  # halves: round half to even
    fusion = doc["fusion"]
    fq = {t: doc["tensors"][t]["quantization"] for t in fusion["inputs"]}
    parts = [rng.integers(-128, 128, size=10).astype(np.int8) for _ in fusion["inputs"]]
    floats = [rng.normal(size=10).astype(np.float32) * 10 for _ in range(3)]
    job = {
        "graphs": [{"path": str(graph), "device": d} for d in (0, 1)],
        "bad_graphs": bad,
        "quantize": [{"image": image.tolist(), "quant": q}],
        "fuse": [
            {"fusion": fusion, "fusion_quant": fq,
             "partials": [{"dtype": "int8", "values": p.tolist()} for p in parts]},
            {"fusion": {**fusion, "inputs": ["a", "b", "c"]}, "fusion_quant": {"a": None, "b": None, "c": None},
             "partials": [{"dtype": "float32", "values": f.tolist()} for f in floats]},
        ],
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    out = _run_node("program.mjs", tmp_path / "job.json")
    for got in out["graphs"]:
        p = DeviceProgram(graph, got["device"], load=False)
        assert got["send_to"] == {k: sorted(v) for k, v in p.send_to.items()}
        assert got["expected"] == {str(peer): {str(i): [s.name, s.dtype, list(s.shape)] for i, s in m.items()}
                                   for peer, m in p.expected.items()}
        assert (got["neighbours"], got["is_input"], got["is_fusion"]) == (p.neighbours, p.is_input, p.is_fusion)
        assert got["stages"] == [s.name for s in p.stages]
    assert out["bad_graphs"][0].startswith("bad.json: not valid JSON")
    assert "field 'version'" in out["bad_graphs"][1]
    assert "field 'devices[0].device' is 5" in out["bad_graphs"][2]
    assert "field 'fusion.inputs'" in out["bad_graphs"][3]
    assert "rank 7" in out["bad_graphs"][4]
    assert out["quantize"][0] == quantize_input(image, (q["scale"], q["zero_point"])).tolist()
    want = fuse_partials(fusion, {t: (v["scale"], v["zero_point"]) for t, v in fq.items()}, parts)
    assert out["fuse"][0] == [f"{u:08x}" for u in want.view(np.uint32).ravel()]
    want = fuse_partials({**fusion, "inputs": ["a", "b", "c"]}, {}, floats)
    assert out["fuse"][1] == [f"{u:08x}" for u in want.view(np.uint32).ravel()]


def test_browser_files_give_the_int8_files_bytes_after_the_xor(bundles):
    # The parity of the export option: every stage of the browser file (uint8
    # I/O) equals the int8 file on random int8 inputs, bit for bit, after XOR 0x80.
    from ai_edge_litert.interpreter import Interpreter

    folder = bundles / "int8" / SWITCH
    doc = json.loads((folder / "fusion_graph.json").read_text())
    side = json.loads((folder / "browser.json").read_text())
    from paradis_runtime.fusion_graph import sha256_file

    assert side["graph_sha256"] == sha256_file(folder / "fusion_graph.json")
    from paradis_export.browser import uint8_io, write_browser_files

    # Float32 files run in browsers as they are: the option refuses them with a reason.
    float_folder = bundles / "float32" / SWITCH
    assert not (float_folder / "browser.json").exists()
    with pytest.raises(ValueError, match="only int8 files need a browser file"):
        uint8_io((float_folder / "device0.tflite").read_bytes())
    with pytest.raises(ValueError, match="browser files are for int8 graphs"):
        write_browser_files(float_folder, json.loads((float_folder / "fusion_graph.json").read_text()))
    rng = np.random.default_rng(1)
    for dev, entry in zip(doc["devices"], side["devices"], strict=True):
        assert entry["sha256"] == sha256_file(folder / entry["file"]) and entry["io"] == "uint8"
        a = Interpreter(model_path=str(folder / dev["file"]))
        b = Interpreter(model_path=str(folder / entry["file"]))
        for s in dev["stages"]:
            feeds = {t: rng.integers(-128, 128, size=doc["tensors"][t]["shape"]).astype(np.int8) for t in s["inputs"]}
            want = a.get_signature_runner(s["signature"])(**feeds)
            got = b.get_signature_runner(s["signature"])(**{k: v.view(np.uint8) ^ 0x80 for k, v in feeds.items()})
            for t in s["outputs"]:
                assert got[t].dtype == np.uint8
                assert np.array_equal((got[t] ^ 0x80).view(np.int8), want[t]), (dev["file"], s["name"], t)


# -- the page in Chromium -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`; `make test` "
                    "does); the browser test never downloads a browser")
    if not (WEB / "node_modules" / "@litertjs" / "core" / "wasm").is_dir():
        pytest.fail("android_demo/web/node_modules lacks @litertjs/core: run `make web-deps` (npm ci there)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@contextlib.contextmanager
def serve_web(bundle, log: Path, tcp_peers=()):
    """`paradis serve-web` on a free loopback port; yields its base URL."""
    args = [sys.executable, "-m", "paradis_cli", "serve-web", "--bundle", str(bundle), "--host", "127.0.0.1",
            "--port", "0", "--url-host", "127.0.0.1"]
    for d, address in tcp_peers:
        args += ["--tcp-peer", f"{d}={address}"]
    out = open(log, "w")
    proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ,
                                                                                      PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            m = re.search(r"for the web peer at (http://\S+/)", log.read_text())
            if m:
                url = m.group(1)
            elif proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve-web did not start:\n{log.read_text()[-3000:]}")
            else:
                time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def open_page(browser, url, device, key=KEY, route=None, switch=SWITCH):
    page = browser.new_page(viewport={"width": 960, "height": 900})
    page.problems = []
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    if route is not None:
        page.route(*route)
    page.goto(f"{url}#switch={switch}&device={device}&key={key}")
    return page


def wait_ready(page, timeout_s=60):
    page.wait_for_function("window.paradis && window.paradis.ready()", timeout=timeout_s * 1000)


def wait_error(page, pattern, timeout_s=10):
    """The page's error box shows ``pattern`` within ``timeout_s`` (never a hang)."""
    page.wait_for_function("(p) => new RegExp(p).test(document.getElementById('error').textContent)",
                           arg=pattern, timeout=timeout_s * 1000)
    return page.inner_text("#error")


def infer(page, image):
    return page.evaluate("(a) => window.paradis.infer(a)", np.asarray(image, np.float32).ravel().tolist())


def infer_error(page, image) -> tuple:
    """(message, seconds) of an inference that must fail."""
    t = time.monotonic()
    message = page.evaluate("(a) => window.paradis.infer(a).then(() => null, (e) => e.message)",
                            np.asarray(image, np.float32).ravel().tolist())
    return message, time.monotonic() - t


def check_parity(outputs, bundle, precision, images, switch=SWITCH):
    from paradis_runtime.executor import ReferenceExecutor

    ref = ReferenceExecutor(bundle, switch=switch).predict(images)
    got = np.asarray(outputs, np.float32)
    if precision == "int8":
        assert np.array_equal(got, ref)  # the same bytes through the same int8 kernels
    else:
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_two_pages_as_two_devices_match_the_reference_executor(bundles, images, browser, precision, tmp_path):
    with serve_web(bundles / precision, tmp_path / "serve.log") as url:
        pages = [open_page(browser, url, d) for d in (0, 1)]
        try:
            for p in pages:
                wait_ready(p)
            results = [infer(pages[0], x) for x in images]
            check_parity([r["output"] for r in results], bundles / precision, precision, images)
            r = results[-1]
            # The page timed the inference and counted what device 0 sent (the graph's bytes plus headers).
            assert r["computeMs"] > 0 and r["totalMs"] >= r["computeMs"] and r["bytesSent"] > 0
            assert set(r["bytesFrom"]) == {"1"}
            assert pages[1].evaluate("window.paradis.state.peer.history.length") == len(images)
            if precision == "float32":
                # The page renders after an inference (bench/web.py keeps this picture in docs/results).
                shot = pages[0].screenshot(full_page=True)
                assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000, len(shot)
                assert "class" in pages[0].inner_text("#prediction")
            assert [p.evaluate("window.paradis.errors") for p in pages] == [[], []]
            assert [p.problems for p in pages] == [[], []]
        finally:
            for p in pages:
                p.close()


@contextlib.contextmanager
def python_peer(bundle, folder):
    (port,) = free_ports(1)
    proc = PeerProcess(bundle, 1, f"127.0.0.1:{port}", key_file(folder), log=folder / "peer1.log")
    try:
        proc.wait_ready()
        yield proc, f"127.0.0.1:{port}"
    finally:
        if proc.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.proc.pid, signal.SIGCONT)
        proc.stop()


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_one_page_beside_a_python_peer_matches_the_reference_executor(bundles, images, browser, precision,
                                                                      tmp_path):
    with python_peer(bundles / precision, tmp_path) as (peer, address), \
            serve_web(bundles / precision, tmp_path / "serve.log", tcp_peers=[(1, address)]) as url:
        page = open_page(browser, url, 0)
        try:
            wait_ready(page)
            outputs = [infer(page, x)["output"] for x in images]
            check_parity(outputs, bundles / precision, precision, images)
            if precision == "float32":
                # A peer that stalls (a phone off the Wi-Fi: no close, no bytes) is reported by the
                # deadlines, and the inference fails with a message instead of hanging.
                os.kill(peer.proc.pid, signal.SIGSTOP)
                message, seconds = infer_error(page, images[0])
                assert seconds < 4, seconds
                assert "device 1" in message, message
                text = wait_error(page, "unresponsive|lost device 1", timeout_s=5)
                assert "device 1" in text
                os.kill(peer.proc.pid, signal.SIGCONT)
            assert page.problems == []
        finally:
            page.close()


def test_a_link_between_two_pages_that_drops_and_returns_loses_no_request(bundles, images, browser, tmp_path):
    # Devices 1 and 2 of 0.5+0.3+0.2 exchange tensors over their own link (through the relay). Device 1
    # closes that link and device 0 starts inferences at once: device 1 makes its frames for device 2 while
    # the link is being remade, and must hold them and send them on the new link, as the Python and Java
    # peers do, rather than drop them and its requests (each inference would then fail at its deadline).
    from paradis_runtime._program import DeviceProgram

    bundle = bundles / "float32"
    sends = DeviceProgram(bundle / THREE / "fusion_graph.json", 1, load=False).send_to
    assert any(2 in to for to in sends.values())  # device 1 sends to device 2
    with serve_web(bundle, tmp_path / "serve.log") as url:
        pages = [open_page(browser, url, d, switch=THREE) for d in (0, 1, 2)]
        try:
            for p in pages:
                wait_ready(p)
            assert len(infer(pages[0], images[0])["output"]) == 10
            pages[1].evaluate("window.paradis.state.peer.conns.get(2).ws.close()")
            outputs = [infer(pages[0], x)["output"] for x in images]
            check_parity(outputs, bundle, "float32", images, switch=THREE)
            assert any("lost device 2" in e for e in pages[1].evaluate("window.paradis.errors"))
            assert pages[0].evaluate("window.paradis.errors") == []  # the input device never saw a device go
            assert [p.problems for p in pages] == [[], [], []]
        finally:
            for p in pages:
                p.close()


def test_wrong_key_is_refused_on_both_pages(bundles, images, browser, tmp_path):
    with serve_web(bundles / "float32", tmp_path / "serve.log") as url:
        pages = [open_page(browser, url, 0), open_page(browser, url, 1, key="not-the-session-key-0123456789")]
        try:
            for p in pages:
                text = wait_error(p, "AUTH_FAILED")
                assert "session key" in text, text
            message, seconds = infer_error(pages[0], images[0])
            assert "AUTH_FAILED" in message and seconds < 1, (message, seconds)
        finally:
            for p in pages:
                p.close()


def test_wrong_file_hash_bad_graph_and_unknown_switch_are_refused_before_anything_runs(bundles, browser, tmp_path):
    folder = bundles / "float32" / SWITCH
    tampered = bytearray((folder / "device1.tflite").read_bytes())
    tampered[-100] ^= 0x01
    bad_graph = json.loads((folder / "fusion_graph.json").read_text())
    bad_graph["fusion"]["op"] = "mean"
    with serve_web(bundles / "float32", tmp_path / "serve.log") as url:
        page = open_page(browser, url, 1, route=("**/device1.tflite",
                                                 lambda route: route.fulfill(status=200, body=bytes(tampered))))
        page2 = open_page(browser, url, 0, route=("**/fusion_graph.json",
                                                  lambda route: route.fulfill(status=200, body=json.dumps(bad_graph))))
        try:
            text = wait_error(page, "wrong file hash")
            assert "device1.tflite" in text and "Nothing was run" in text, text
            assert page.evaluate("window.paradis.state.peer") is None  # nothing was run or linked
            text = wait_error(page2, "bad fusion graph")
            assert "fusion.op" in text, text
            # A link naming a switch the bundle lacks: said on the page, and no join.
            page3 = open_page(browser, url, 0, switch="3x0.33")
            text = wait_error(page3, "does not hold")
            assert "'3x0.33'" in text and SWITCH in text and THREE in text, text
            assert page3.evaluate("window.paradis.state.peer") is None and page3.problems == []
            page3.close()
        finally:
            page.close()
            page2.close()


def _ws_frame(ws, timeout=10):
    data = ws.recv(timeout=timeout)
    assert isinstance(data, bytes), data
    return decode_header(data[:64]), data[64:]


def test_a_malformed_frame_gets_its_error_code_and_a_message(bundles, images, browser, tmp_path):
    # A hand-written device 1 joins through the relay with the right key, then
    # sends a TENSOR whose dims differ from the graph's: the page answers
    # BAD_SHAPE (section 6), closes, says so, and keeps no request hanging.
    from websockets.sync.client import connect

    graph_path = _graph(bundles, "float32")
    raw = graph_path.read_bytes()
    import hashlib

    sha = hashlib.sha256(raw).digest()
    doc = json.loads(raw)
    sent = next(s for s in doc["sends"] if s["from"]["device"] == 1)
    tensor = doc["tensors"][sent["tensor"]]
    with serve_web(bundles / "float32", tmp_path / "serve.log") as url:
        page = open_page(browser, url, 0)
        ws_url = url.replace("http://", "ws://") + f"relay?switch={SWITCH}&from=1&to=0"
        try:
            with connect(ws_url, subprotocols=["paradis-frames.1"], open_timeout=10) as ws:
                nonce = bytes(range(32))
                ws.send(encode_hello(Hello(sha, nonce, 1, 0, SWITCH)))
                h, payload = _ws_frame(ws)
                assert h.type == FrameType.HELLO
                theirs = decode_hello(payload)
                assert (theirs.device, theirs.peer_device, theirs.graph_sha256) == (0, 1, sha)
                ws.send(encode_header(Header(type=FrameType.AUTH, payload_len=32))
                        + auth_mac(KEY.encode(), sha, 1, 0, nonce, theirs.nonce))
                h, mac = _ws_frame(ws)
                assert h.type == FrameType.AUTH and mac == auth_mac(KEY.encode(), sha, 0, 1, theirs.nonce, nonce)
                wait_ready(page)
                shape = list(tensor["shape"])
                shape[1] += 1  # wrong dims, right everything else
                n = int(np.prod(shape)) * 4
                ws.send(encode_header(Header(type=FrameType.TENSOR, payload_len=n, request_id=5,
                                             tensor_id=tensor["id"], dtype=1, dims=tuple(shape))) + bytes(n))
                h, payload = _ws_frame(ws)
                while h.type == FrameType.HEARTBEAT:
                    h, payload = _ws_frame(ws)
                assert h.type == FrameType.ERROR and decode_error(payload)[0] == ErrorCode.BAD_SHAPE
            text = wait_error(page, "BAD_SHAPE")
            assert "device 1" in text, text
            message, seconds = infer_error(page, images[0])
            assert "device 1" in message and seconds < 1, (message, seconds)
        finally:
            page.close()


def test_a_page_that_leaves_is_reported_at_once(bundles, images, browser, tmp_path):
    with serve_web(bundles / "float32", tmp_path / "serve.log") as url:
        pages = [open_page(browser, url, d) for d in (0, 1)]
        try:
            for p in pages:
                wait_ready(p)
            assert len(infer(pages[0], images[0])["output"]) == 10
            pages[1].close()
            text = wait_error(pages[0], "lost device 1", timeout_s=5)
            assert "device 1 left" in text, text
            message, seconds = infer_error(pages[0], images[0])
            assert "device 1" in message and seconds < 1, (message, seconds)
        finally:
            pages[0].close()


def test_the_relay_refuses_what_is_not_a_frame_link(bundles, tmp_path):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with serve_web(bundles / "float32", tmp_path / "serve.log") as url:
        base = url.replace("http://", "ws://")
        for query, code, words in ((f"relay?switch={SWITCH}&from=0&to=0", 1008, "must differ"),
                                   ("relay?switch=9x9&from=0&to=1", 1008, "no switch"),
                                   (f"relay?switch={SWITCH}&from=0&to=1", 1003, "text message")):
            with connect(base + query, subprotocols=["paradis-frames.1"], open_timeout=10) as ws:
                if code == 1003:
                    ws.send("hello")
                with pytest.raises(ConnectionClosed) as e:
                    ws.recv(timeout=10)
            assert e.value.rcvd.code == code and words in e.value.rcvd.reason, e.value.rcvd
        # The page's files are served, the session key is not asked for anywhere by the server.
        import urllib.request

        session = json.loads(urllib.request.urlopen(url + "session.json", timeout=10).read())
        assert sorted(s["name"] for s in session["switches"]) == sorted([SWITCH, THREE]) and "<svg" in session["qr_svg"]
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "bundle/../int8/manifest.json", timeout=10)  # exists, outside the bundle
