"""The plain-Java core (android_demo/core): its JUnit suite, and the Java peer
as one device of a real exported bundle beside Python peers.

The Java peer runs the real ``.tflite`` stages through
``android_demo/core/tools/litert_engine.py`` (ai_edge_litert in a helper
process: LiteRT for Java cannot be obtained here), so it computes real
outputs for fresh inputs; the fused output must equal the all-Python run
(ReferenceExecutor) bit for bit, float32 and int8. The Java core also runs as
the input device (device 0, the phone with the camera) beside a Python
``paradis peer``, with the same bit-for-bit check.
"""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paradis_export import ReferenceExecutor, export_bundle
from paradis_runtime import connect
from tests.paradis_export.helpers import real_images, sparse
from tests.paradis_runtime.peers import KEY, PeerProcess, free_ports, key_file

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "android_demo" / "core"
JSON_JAR = "/usr/share/java/com.android.json.jar"
JUNIT_JAR = "/usr/share/java/junit-platform-console-standalone.jar"
SWITCHES = "2x0.5,0.5+0.3+0.2"


@pytest.fixture(scope="module")
def classes():
    """The core built by its recipe (android_demo/core/build.mk; incremental)."""
    missing = [p for p in (shutil.which("javac"), shutil.which("make")) if p is None] + \
        [j for j in (JSON_JAR, JUNIT_JAR) if not Path(j).is_file()]
    assert not missing and shutil.which("javac"), (
        f"the Java core needs javac, make, {JSON_JAR} and {JUNIT_JAR}: run `make system-packages` "
        "(Debian junit5, libandroid-json-java, openjdk-17-jdk-headless)")
    done = subprocess.run(["make", "--no-print-directory", "java-core-classes"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"make java-core-classes failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return CORE / "build" / "classes"


def test_junit_suite(classes):
    done = subprocess.run(
        ["java", "-jar", JUNIT_JAR, "--disable-banner", "--details=tree", "--fail-if-no-tests",
         "-cp", f"{classes}:{CORE / 'build' / 'test-classes'}:{JSON_JAR}", "--select-package", "org.paradis.core"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    report = done.stdout[-12000:] + done.stderr[-4000:]
    assert done.returncode == 0, f"JUnit failed:\n{report}"
    # The suite really ran: a launcher that found nothing would also have to say so.
    assert "tests successful" in report and " 0 tests failed" in report, report


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A small seeded model (ResNet-8, width 0.5: 2+ channels per device), float32 and int8."""
    import keras

    from paradis_tf.models import CifarResNet

    keras.utils.set_random_seed(11)
    model = sparse(CifarResNet(depth=8, width=0.5, num_classes=10, input_shape=(28, 28, 1), switches=SWITCHES))[0]
    root = tmp_path_factory.mktemp("java_core")
    export_bundle(model, SWITCHES, root / "float32", progress=None)
    export_bundle(model, SWITCHES, root / "int8", int8=True, calibration=real_images(64, seed=1)[0], progress=None)
    return root


class JavaPeer(PeerProcess):
    """``org.paradis.core.Main`` for one device (the flags and banner of
    ``paradis peer``), its stages run by the ai_edge_litert helper."""

    name = "java peer"

    def __init__(self, classes, bundle, device: int, peers: str, key: Path, log: Path, *extra):
        self.classes = classes
        super().__init__(bundle, device, peers, key, "--engine-cmd",
                         f"{sys.executable} {CORE / 'tools' / 'litert_engine.py'}", *extra, log=log)

    def command(self) -> list:
        return ["java", "-cp", f"{self.classes}:{JSON_JAR}", "org.paradis.core.Main"]

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> int:
        # SIGTERM, not SIGINT: under a non-interactive shell's background job
        # (how CI may run) SIGINT arrives ignored, and the JVM then installs
        # no handler for it; Main's shutdown hook (SHUTTING_DOWN, exit 0)
        # runs on SIGTERM either way.
        return super().stop(sig, timeout)


@pytest.mark.parametrize("precision", ["float32", "int8"])
@pytest.mark.parametrize("switch", ["2x0.5", "0.5+0.3+0.2"])
def test_java_peer_matches_the_reference_executor_bit_for_bit(classes, bundles, precision, switch, tmp_path):
    bundle = bundles / precision
    devices = 2 if switch == "2x0.5" else 3
    ports = free_ports(devices - 1)
    addresses = ",".join(f"127.0.0.1:{p}" for p in ports)
    key = key_file(tmp_path)
    x, _ = real_images(6, seed=3)
    procs = [JavaPeer(classes, bundle, 1, addresses, key, tmp_path / "java1.log", "--switch", switch)]
    try:
        if devices == 3:  # device 2 is a Python peer; the Java device 1 dials it
            procs.append(PeerProcess(bundle, 2, addresses, key, "--switch", switch, log=tmp_path / "peer2.log"))
        for p in procs:
            p.wait_ready()
        with connect(bundle, addresses, key=KEY, switches=[switch], in_flight=2) as session:
            assert session.switch == switch
            out = session.predict(x)
    finally:
        codes = [p.stop() for p in procs]
    log = (tmp_path / "java1.log").read_text()
    ref = ReferenceExecutor(bundle, switch=switch).predict(x)
    assert out.shape == ref.shape == (6, 10)
    assert np.array_equal(out, ref), f"max diff {np.abs(out - ref).max()}\n{log[-2000:]}"
    assert codes[0] == 0 and "device 1 leaving" in log, log[-2000:]
    assert "connected to device 0" in log and "failed" not in log, log[-2000:]
    # The id a phone's NsdManager matches in the _paradis._tcp TXT records is discovery.py's.
    from paradis_runtime.discovery import bundle_id

    assert f"device 1: bundle id {bundle_id(bundle)}" in log, log[-2000:]


def test_a_dropped_link_from_the_java_peer_loses_no_request(classes, bundles, tmp_path):
    # Java device 1 reaches the Python device 2 through a relay that drops
    # their link for 0.5 s: frames wait for the link (held up to the peer
    # deadline), none is lost (tests/paradis_runtime/test_peer.py, same check
    # with a Python device 1).
    from tests.paradis_runtime.test_peer import drop_the_link_between_devices_1_and_2

    def java(bundle, device, peers, key, *extra, log):
        return JavaPeer(classes, bundle, device, peers, key, log, *extra)

    drop_the_link_between_devices_1_and_2(bundles / "float32", tmp_path, device1=java)


def java_device0_beside_python_peer1(classes, bundle, peers: str, key: Path, x: np.ndarray, folder: Path,
                                     peer_extra=(), java_extra=()) -> tuple:
    """A Python `paradis peer` as device 1 (the first of ``peers``, with ``peer_extra``) and the Java
    coordinator run on ``x`` beside it (with ``java_extra``); run_java_device0's (code, log, outputs)."""
    peer = PeerProcess(bundle, 1, peers, key, *peer_extra, log=folder / "peer1.log")
    try:
        peer.wait_ready()
        return run_java_device0(classes, bundle, peers, key, x, folder, *java_extra)
    finally:
        peer.stop()


def run_java_device0(classes, bundle, peers: str, key: Path, x: np.ndarray, folder: Path, *extra) -> tuple:
    """``org.paradis.core.Main --device 0`` (the Java coordinator) on ``x``; returns (exit code, stdout + stderr,
    the fused outputs it wrote, or None)."""
    inputs, outputs = folder / "x.npy", folder / "y.npy"
    np.save(inputs, x.astype("float32"))
    engine = f"{sys.executable} {CORE / 'tools' / 'litert_engine.py'}"
    done = subprocess.run(
        ["java", "-cp", f"{classes}:{JSON_JAR}", "org.paradis.core.Main", "--bundle", str(bundle), "--device", "0",
         "--peers", peers, "--session-key-file", str(key), "--engine-cmd", engine, "--input", str(inputs),
         "--output", str(outputs), *extra], cwd=REPO, capture_output=True, text=True, timeout=120)
    out = np.load(outputs) if outputs.is_file() else None
    return done.returncode, done.stdout + done.stderr, out


def quantization_ties(bundle: Path, switch: str):
    """For an int8 graph, one model input made of values at which ``quantize_input``'s division in float32
    (a float32 array by a Python float) and the same division in double round to different int8 values, so
    a coordinator that quantizes otherwise than Python sends other input bytes; None for a float32 graph."""
    from paradis_runtime.executor import resolve_graph

    graph = json.loads(resolve_graph(bundle, switch).read_text())
    spec = graph["tensors"][graph["input"]["tensor"]]
    if spec["quantization"] is None:
        return None
    scale = spec["quantization"]["scale"]
    shape = graph["input"]["shape"]
    near = np.float32((np.arange(int(1 / scale) + 1) + 0.5) * scale)  # the .5 ties of pixel values in [0, 1]
    candidates = [near]
    for direction in (np.inf, -np.inf):
        v = near
        for _ in range(3):
            v = np.nextafter(v, np.float32(direction), dtype=np.float32)
            candidates.append(v)
    v = np.concatenate(candidates)
    v = v[(v >= 0) & (v <= 1)]
    ties = v[np.round(v / scale) != np.round(v.astype(np.float64) / scale)]
    assert len(ties) >= 10, f"only {len(ties)} tie values for scale {scale}"
    n = int(np.prod(shape))
    return np.resize(ties, n).reshape(shape).astype(np.float32)


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_java_device0_beside_a_python_peer_matches_the_reference_executor_bit_for_bit(classes, bundles, precision,
                                                                                      tmp_path):
    """The Java core as the input device (quantizes, draws ids, runs device 0's stages, fuses) with a Python
    `paradis peer` as device 1, on Fashion-MNIST test images (int8: plus the quantization ties)."""
    bundle = bundles / precision
    (port,) = free_ports(1)
    addresses = f"127.0.0.1:{port}"
    key = key_file(tmp_path)
    x, _ = real_images(4, seed=5)
    ties = quantization_ties(bundle, "2x0.5")
    if ties is not None:  # int8: a fifth input where only Python's exact quantization gives Python's bytes
        x = np.concatenate([x, ties])
    count = len(x)
    code, log, out = java_device0_beside_python_peer1(classes, bundle, addresses, key, x, tmp_path,
                                                      ("--switch", "2x0.5"), ("--switch", "2x0.5"))
    assert code == 0, log[-3000:]
    ref = ReferenceExecutor(bundle, switch="2x0.5").predict(x)
    assert out is not None and out.shape == ref.shape == (count, 10), log[-3000:]
    assert np.array_equal(out, ref), f"max diff {np.abs(out - ref).max()}\n{log[-2000:]}"
    # One line per inference with the prediction and device 0's timing; the printed values are the output's.
    lines = [line for line in log.splitlines() if line.startswith("result ")]
    assert len(lines) == count, log[-3000:]
    for i, line in enumerate(lines):
        assert f"switch 2x0.5 class {int(np.argmax(ref[i]))} " in line, line
        sent = int(line.split(" bytes_sent ")[1].split()[0])
        assert sent >= 64 + (784 * (4 if precision == "float32" else 1)), line  # at least the input frame
    printed = [line for line in log.splitlines() if line.startswith("output 0:")][0].split()[2:]
    assert np.array_equal(np.array(printed, dtype=np.float32), ref[0]), (printed, ref[0])
    ids = [int(line.split(" request ")[1].split()[0]) for line in lines]
    assert ids == list(range(ids[0], ids[0] + count)) and 1 <= ids[0] <= 2**32, ids


def test_java_device0_names_the_missing_device_when_no_peer_answers(classes, bundles, tmp_path):
    (port,) = free_ports(1)  # nobody listens there
    key = key_file(tmp_path)
    x, _ = real_images(1, seed=5)
    t0 = time.monotonic()
    code, log, out = run_java_device0(classes, bundles / "float32", f"127.0.0.1:{port}", key, x, tmp_path,
                                      "--switch", "2x0.5", "--connect-timeout", "1")
    assert code == 1 and out is None, log[-3000:]
    assert "switch '2x0.5' cannot start: device 1 at 127.0.0.1:" in log and str(port) in log, log[-3000:]
    assert time.monotonic() - t0 < 30


def test_java_device0_starts_on_the_switch_that_is_there_when_a_device_is_down(classes, bundles, tmp_path):
    """Devices 1 and 2 listed, only device 1 running: after --connect-timeout the Java coordinator starts on
    2x0.5 (as paradis_runtime's does) instead of failing, and its outputs are 2x0.5's."""
    bundle = bundles / "float32"
    ports = free_ports(2)
    addresses = f"127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    key = key_file(tmp_path)
    x, _ = real_images(2, seed=5)
    code, log, out = java_device0_beside_python_peer1(classes, bundle, addresses, key, x, tmp_path, (),
                                                      ("--connect-timeout", "1"))
    assert code == 0, log[-3000:]
    assert f"switch '0.5+0.3+0.2' not ready within 1.0 s (device 2 at 127.0.0.1:{ports[1]}: " in log, log[-3000:]
    assert "starting on switch '2x0.5'" in log and "device 0 connected: switch 2x0.5" in log, log[-3000:]
    assert out is not None and np.array_equal(out, ReferenceExecutor(bundle, switch="2x0.5").predict(x)), log[-3000:]


def test_java_peer_refuses_a_second_connection_of_a_live_device(classes, bundles, tmp_path):
    """FRAME_FORMAT.md section 5 (one connection per device and graph), as the Python peer's test checks it."""
    from paradis_runtime._program import DeviceProgram
    from tests.paradis_runtime.test_peer import a_second_connection_of_a_live_device_is_refused

    bundle = bundles / "float32"
    (port,) = free_ports(1)
    peer = JavaPeer(classes, bundle, 1, f"127.0.0.1:{port}", key_file(tmp_path), tmp_path / "java1.log",
                    "--switch", "2x0.5")
    try:
        peer.wait_ready()
        program = DeviceProgram(bundle / "2x0.5" / "fusion_graph.json", 0, load=False)
        a_second_connection_of_a_live_device_is_refused(("127.0.0.1", port), program)
    finally:
        peer.stop()


def test_a_java_peer_refused_for_a_duplicate_device_index_tells_device_0(classes, bundles, tmp_path):
    # The Java peer as the real device 1, refused by device 2 (DEVICE_IN_USE) because a duplicate device 1
    # got there first: its DEADLINE_EXCEEDED names the refused link, and it logs the refusal once
    # (tests/paradis_runtime/test_peer.py, same check with a Python device 1).
    from tests.paradis_runtime.test_peer import one_device_index_twice

    def java(bundle, device, peers, key, *extra, log):
        return JavaPeer(classes, bundle, device, peers, key, log, *extra)

    one_device_index_twice(bundles / "float32", tmp_path, device1=java)


def test_java_device0_against_a_peer_another_device0_holds_is_told_why(classes, bundles, tmp_path):
    """A Python coordinator holds the peer; the Java coordinator is refused (DEVICE_IN_USE) and says so."""
    bundle = bundles / "float32"
    (port,) = free_ports(1)
    addresses = f"127.0.0.1:{port}"
    key = key_file(tmp_path)
    x, _ = real_images(1, seed=5)
    peer = PeerProcess(bundle, 1, addresses, key, "--switch", "2x0.5", log=tmp_path / "peer1.log")
    try:
        peer.wait_ready()
        with connect(bundle, addresses, key=KEY, switches=["2x0.5"]) as first:
            code, log, out = run_java_device0(classes, bundle, addresses, key, x, tmp_path, "--switch", "2x0.5",
                                              "--connect-timeout", "1")
            assert first.run(x[0], timeout=10).switch == "2x0.5"  # the first is served on
    finally:
        peer.stop()
    assert code == 1 and out is None, log[-3000:]
    assert "DEVICE_IN_USE" in log and "another device 0 holds those peers" in log, log[-3000:]


def test_java_peer_refuses_a_tampered_device_file_with_a_clear_message(classes, bundles, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(bundles / "float32", bundle)
    victim = bundle / "2x0.5" / "device1.tflite"
    assert victim.is_file(), sorted(p.name for p in (bundle / "2x0.5").iterdir())
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    key = key_file(tmp_path)
    peer = JavaPeer(classes, bundle, 1, "127.0.0.1:1", key, tmp_path / "java.log", "--switch", "2x0.5")
    try:
        assert peer.proc.wait(30) == 1
    finally:
        peer.stop()
    log = (tmp_path / "java.log").read_text()
    assert "devices[1].sha256" in log and "device1.tflite" in log and "changed" in log, log
