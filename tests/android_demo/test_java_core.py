"""The plain-Java core (android_demo/core): its JUnit suite, and the Java peer
as one device of a real exported bundle beside Python peers.

The Java peer runs the real ``.tflite`` stages through
``android_demo/core/tools/litert_engine.py`` (ai_edge_litert in a helper
process: LiteRT for Java cannot be obtained here), so it computes real
outputs for fresh inputs; the fused output must equal the all-Python run
(ReferenceExecutor) bit for bit, float32 and int8.
"""

import os
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


class JavaPeer:
    """``org.paradis.core.Main`` for one device, its stages run by the ai_edge_litert helper."""

    def __init__(self, classes, bundle, device: int, peers: str, key: Path, log: Path, *extra):
        self.device = device
        self.log = log
        self._out = open(log, "w")
        engine = f"{sys.executable} {CORE / 'tools' / 'litert_engine.py'}"
        self.proc = subprocess.Popen(
            ["java", "-cp", f"{classes}:{JSON_JAR}", "org.paradis.core.Main", "--bundle", str(bundle),
             "--device", str(device), "--peers", peers, "--session-key-file", str(key), "--engine-cmd", engine,
             *extra], cwd=REPO, stdout=self._out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"device {self.device} ready on" in self.log.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"java peer exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"java peer {self.device} not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode


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
