"""`paradis peer` and `paradis run` end to end: real peer processes, what the
runner prints and reports, and clear errors with a non-zero exit on bad input."""

import json

import numpy as np
import pytest

from paradis_cli import main
from paradis_export import ReferenceExecutor, export_bundle
from tests.paradis_export.helpers import resnet8
from tests.paradis_runtime.peers import PeerProcess, free_ports, key_file, peers


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    export_bundle(resnet8(switches="1x1.0,2x0.5"), "1x1.0,2x0.5", root / "a", progress=None)
    export_bundle(resnet8(switches="1x1.0,2x0.5"), "1x1.0,2x0.5", root / "other", progress=None)  # other weights
    return root


@pytest.fixture(scope="module")
def peer(bundles, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run_peer")
    with peers(bundles / "a", 1, folder, extra=("--trace", str(folder / "peer1.jsonl"))) as (addresses, _):
        yield addresses, folder / "session.key"


def _test_images(n):
    from paradis_tf.data import load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    return images[:n], labels[:n]


def test_one_image_file(bundles, peer, tmp_path, capsys):
    from PIL import Image

    addresses, key = peer
    pixels, _ = _test_images(1)
    Image.fromarray(pixels[0, ..., 0]).save(tmp_path / "shoe.png")
    code = main(["run", "--bundle", str(bundles / "a"), "--peers", addresses, "--session-key-file", str(key),
                 "--image", str(tmp_path / "shoe.png")])
    out = capsys.readouterr().out
    assert code == 0, out
    want = ReferenceExecutor(bundles / "a", switch="2x0.5").run(pixels[:1].astype("float32") / 255)[0]
    assert f"class {int(np.argmax(want))}" in out
    assert "switch 2x0.5:" in out and "device 0: compute" in out and "device 1 last frame at" in out


def test_dataset_with_accuracy_and_report(bundles, peer, tmp_path, capsys):
    addresses, key = peer
    report = tmp_path / "report.json"
    code = main(["run", "--bundle", str(bundles / "a"), "--peers", addresses, "--session-key-file", str(key),
                 "--dataset", "fashion-mnist", "--count", "30", "--in-flight", "3", "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    images, labels = _test_images(30)
    want = ReferenceExecutor(bundles / "a", switch="2x0.5").predict(images.astype("float32") / 255)
    accuracy = float(np.mean(want.argmax(1) == labels))
    assert f"top-1 {accuracy:.2%} over 30" in out
    rows = json.loads(report.read_text())
    assert [r["switch"] for r in rows] == ["2x0.5"]
    assert rows[0]["count"] == 30 and rows[0]["accuracy"] == pytest.approx(accuracy)
    assert rows[0]["median_ms"] > 0 and rows[0]["link"].startswith("no link emulation")


def test_traces_of_a_run_make_a_profile_for_the_planner(bundles, peer, tmp_path, capsys):
    addresses, key = peer
    trace0, trace1 = tmp_path / "run.jsonl", key.parent / "peer1.jsonl"
    code = main(["run", "--bundle", str(bundles / "a"), "--peers", addresses, "--session-key-file", str(key),
                 "--dataset", "fashion-mnist", "--count", "12", "--trace", str(trace0)])
    assert code == 0, capsys.readouterr().out
    records = [json.loads(line) for line in trace0.read_text().splitlines()]
    assert len(records) == 12 and {r["device"] for r in records} == {0}
    assert all(r["link_mbps"] == 0 and r["stages"] for r in records)
    capsys.readouterr()
    profile = tmp_path / "profile.json"
    assert main(["profile", "--bundle", str(bundles / "a"), "--from-trace", str(trace0), str(trace1),
                 "--out", str(profile)]) == 0
    out = capsys.readouterr().out
    assert "runtime overhead" in out and "ms per frame" in out
    doc = json.loads(profile.read_text())
    assert doc["source"] == "traces" and list(doc["switches"]) == ["2x0.5"]
    assert doc["switches"]["2x0.5"]["per_frame_overhead_s"] >= 0
    assert main(["plan", "--bundle", str(bundles / "a"), "--profile", str(profile), "--link-mbps", "100",
                 "--link-latency-ms", "1"]) == 0
    out = capsys.readouterr().out
    assert "in a run across peers" in out and "2x0.5" in out and "1x1.0" not in out.split("switch", 2)[-1]
    # A trace file of another kind is refused with its name.
    (tmp_path / "bad.jsonl").write_text('{"not": "a record"}\n')
    assert main(["profile", "--bundle", str(bundles / "a"), "--from-trace", str(tmp_path / "bad.jsonl")]) == 1
    assert "bad.jsonl: line 1 is not a request record" in capsys.readouterr().err


def _run(args, capsys):
    code = main(["run", *args])
    return code, capsys.readouterr().err


def test_unreachable_peer(bundles, tmp_path, capsys):
    # Only 2x0.5 allowed: no switch can start, and the missing device is named.
    port = free_ports(1)[0]
    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28, 1), np.float32))
    code, err = _run(["--bundle", str(bundles / "a"), "--peers", f"127.0.0.1:{port}", "--session-key-file",
                      str(key_file(tmp_path)), "--image", str(tmp_path / "x.npy"), "--connect-timeout", "1",
                      "--switch", "2x0.5"], capsys)
    assert code == 1
    assert f"device 1 at 127.0.0.1:{port}" in err and "not ready within 1 s" in err


def test_a_device_down_at_start_runs_on_the_switch_that_is_there(bundles, tmp_path, capsys, caplog):
    # Every switch allowed: 2x0.5 is not ready in time, so the run goes on 1x1.0 (device 0 alone), says so,
    # and its output is 1x1.0's.
    port = free_ports(1)[0]
    x = _test_images(1)[0].astype("float32") / 255
    np.save(tmp_path / "x.npy", x)
    code = main(["run", "--bundle", str(bundles / "a"), "--peers", f"127.0.0.1:{port}", "--session-key-file",
                 str(key_file(tmp_path)), "--image", str(tmp_path / "x.npy"), "--connect-timeout", "1",
                 "--report", str(tmp_path / "report.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    said = caplog.text  # the CLI logs warnings to stderr; under pytest the log goes to caplog
    assert f"switch '2x0.5' not ready within 1 s (device 1 at 127.0.0.1:{port}: " in said, said
    assert "Connection refused); starting on switch '1x1.0'" in said, said
    assert "connected: switch 1x1.0" in out, out
    want = ReferenceExecutor(bundles / "a", switch="1x1.0").run(x)[0]
    assert f"class {int(np.argmax(want))}" in out and "switch 1x1.0:" in out, out
    rows = json.loads((tmp_path / "report.json").read_text())
    assert [r["switch"] for r in rows] == ["1x1.0"], rows


def test_a_second_run_against_busy_peers_is_told_why(bundles, peer, tmp_path, capsys):
    # One device 0 holds the peer; a second `paradis run` on it used to take turns with the first (each
    # connection replacing the other). Now it is refused (DEVICE_IN_USE) and says so.
    from paradis_runtime import connect

    addresses, key = peer
    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28, 1), np.float32))
    with connect(bundles / "a", addresses, key=key.read_text().strip(), switches=["2x0.5"]) as first:
        code, err = _run(["--bundle", str(bundles / "a"), "--peers", addresses, "--session-key-file", str(key),
                          "--image", str(tmp_path / "x.npy"), "--connect-timeout", "1", "--switch", "2x0.5"],
                         capsys)
        assert code == 1
        assert "DEVICE_IN_USE" in err and "another device 0 (another `paradis run`) holds those peers" in err, err
        assert first.run(np.zeros((28, 28, 1), np.float32), timeout=10).switch == "2x0.5"  # the first runs on


def test_a_peer_with_another_export_or_key_is_named(bundles, peer, tmp_path, capsys):
    addresses, key = peer
    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28, 1), np.float32))
    code, err = _run(["--bundle", str(bundles / "other"), "--peers", addresses, "--session-key-file", str(key),
                      "--image", str(tmp_path / "x.npy")], capsys)
    assert code == 1 and "GRAPH_MISMATCH" in err and "device 1 at" in err, err
    other_key = tmp_path / "other.key"
    other_key.write_text("another-secret-of-enough-length")
    code, err = _run(["--bundle", str(bundles / "a"), "--peers", addresses, "--session-key-file", str(other_key),
                      "--image", str(tmp_path / "x.npy")], capsys)
    assert code == 1 and "AUTH_FAILED" in err, err


def test_bad_key_image_and_device(bundles, peer, tmp_path, capsys):
    from PIL import Image

    addresses, key = peer
    short = tmp_path / "short.key"
    short.write_text("tooshort")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "small.png")
    code, err = _run(["--bundle", str(bundles / "a"), "--peers", addresses, "--session-key-file", str(short),
                      "--image", str(tmp_path / "small.png")], capsys)
    assert code == 2 and "at least 16 bytes, received 8" in err
    code, err = _run(["--bundle", str(bundles / "a"), "--peers", addresses, "--session-key-file", str(key),
                      "--image", str(tmp_path / "small.png")], capsys)
    assert code == 2 and "the image is 20x20 with 1 channel(s); the model takes 28x28 with 1" in err
    code, err = _run(["--bundle", str(bundles / "a"), "--peers", "localhost", "--session-key-file", str(key),
                      "--image", str(tmp_path / "small.png")], capsys)
    assert code == 2 and "--peers" in err and "'localhost'" in err
    # 16-bit pixels are refused, not clipped to 0..255 (a photo became black and white).
    Image.fromarray(np.full((28, 28), 40000, np.uint16)).save(tmp_path / "deep.png")
    code, err = _run(["--bundle", str(bundles / "a"), "--peers", addresses, "--session-key-file", str(key),
                      "--image", str(tmp_path / "deep.png")], capsys)
    assert code == 2 and "16-bit" in err and "8 bits per channel" in err, err
    proc = PeerProcess(bundles / "a", 5, addresses, key, log=tmp_path / "p5.log")
    assert proc.proc.wait(60) == 2  # --device names what the bundle lacks: a usage error
    log = (tmp_path / "p5.log").read_text()
    assert "no switch has a device 5; the largest has 2 devices, numbered 0 to 1" in log, log
    proc.stop()


def test_switches_the_bundle_lacks_and_too_many_in_flight_are_usage_errors(bundles, peer, tmp_path, capsys):
    addresses, key = peer
    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28, 1), np.float32))
    common = ["--peers", addresses, "--session-key-file", str(key), "--image", str(tmp_path / "x.npy")]
    code, err = _run(["--bundle", str(bundles / "a"), "--switch", "3x0.3", *common], capsys)
    assert code == 2 and "no switch '3x0.3' in the bundle" in err, err
    # A switch folder holds one switch: naming another is refused, not ignored.
    code, err = _run(["--bundle", str(bundles / "a" / "2x0.5"), "--switch", "1x1.0", *common], capsys)
    assert code == 2 and "holds switch '2x0.5' only, not '1x1.0'" in err, err
    code, err = _run(["--bundle", str(bundles / "a"), "--in-flight", "9", *common], capsys)
    assert code == 2 and "in_flight must be at most 8" in err and "OVERLOADED" in err, err


@pytest.mark.parametrize("array, message", [
    (np.float32(1), "received shape ()"),
    (np.zeros((0, 28, 28, 1), np.float32), "received an empty batch (shape (0, 28, 28, 1)); pass at least one"),
    (np.zeros((28, 1), np.float32), "a batch of inputs of shape (N, 28, 28, 1), or one input of shape (28, 28, 1); "
                                    "received shape (28, 1)"),
    (np.full((1, 28, 28, 1), "a"), "dtype is <U1"),
])
def test_a_npy_that_is_no_model_input_is_a_usage_error(bundles, tmp_path, capsys, array, message):
    np.save(tmp_path / "x.npy", array)
    code, err = _run(["--bundle", str(bundles / "a"), "--switch", "1x1.0", "--session-key-file",
                      str(key_file(tmp_path)), "--image", str(tmp_path / "x.npy")], capsys)
    assert code == 2 and "--image" in err and message in err, err


def test_one_npy_input_without_its_batch_axis_runs(bundles, tmp_path, capsys):
    images, _ = _test_images(1)
    x = images[0].astype("float32") / 255  # (28, 28, 1)
    np.save(tmp_path / "x.npy", x)
    code = main(["run", "--bundle", str(bundles / "a"), "--switch", "1x1.0", "--session-key-file",
                 str(key_file(tmp_path)), "--image", str(tmp_path / "x.npy")])
    out = capsys.readouterr().out
    assert code == 0, out
    want = ReferenceExecutor(bundles / "a", switch="1x1.0").run(x)[0][0]
    assert f"class {int(np.argmax(want))}" in out
    assert f"logits [{', '.join(f'{v:.3f}' for v in want)}]" in out  # 3 decimals, not float32 noise


def test_the_dataset_runs_on_a_device_without_keras(bundles, tmp_path):
    # A peer install ('paradis-tf[peer]') has no Keras, TensorFlow or JAX.
    import subprocess
    import sys

    script = ("import sys\n"
              "for m in ('keras', 'tensorflow', 'jax'): sys.modules[m] = None  # import raises\n"
              "from paradis_cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", script, "run", "--bundle", str(bundles / "a"), "--switch",
                           "1x1.0", "--session-key-file", str(key_file(tmp_path)), "--dataset", "fashion-mnist",
                           "--count", "5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "top-1" in proc.stdout and "over 5" in proc.stdout


def test_discovery_end_to_end(bundles, tmp_path, capsys):
    pytest.importorskip("zeroconf")
    port = free_ports(1)[0]
    key = key_file(tmp_path)
    proc = PeerProcess(bundles / "a", 1, "", key, "--listen", f"127.0.0.1:{port}", "--advertise",
                       "--mdns-interface", "127.0.0.1", log=tmp_path / "p1.log")
    try:
        proc.wait_ready()
        np.save(tmp_path / "x.npy", np.zeros((1, 28, 28, 1), np.float32))
        code = main(["run", "--bundle", str(bundles / "a"), "--discover", "--mdns-interface", "127.0.0.1",
                     "--session-key-file", str(key), "--image", str(tmp_path / "x.npy")])
        out = capsys.readouterr().out
        assert code == 0, out
        assert f"discovered: device 1 at 127.0.0.1:{port}" in out and "switch 2x0.5:" in out
    finally:
        proc.stop()


def test_flags_are_named_in_their_own_terms(bundles, peer, tmp_path, capsys):
    addresses, key = peer
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "x.npy", np.full((1, 28, 28, 1), 200, np.float32))  # 0..255, not preprocessed
    common = ["--session-key-file", str(key), "--image", str(tmp_path / "x.npy")]
    # A folder that is no bundle: a path on the command line, a usage error (it was 1).
    code, err = _run(["--bundle", str(tmp_path / "empty"), "--switch", "1x1.0", *common], capsys)
    assert code == 2 and "no manifest.json or fusion_graph.json there" in err, err
    # The flag, not PeerConfig's field.
    code, err = _run(["--bundle", str(bundles / "a"), "--switch", "1x1.0", "--peer-deadline", "0.4", *common], capsys)
    assert code == 2 and "--peer-deadline 0.4: must exceed the 0.5 s heartbeat interval" in err, err
    assert "PeerConfig" not in err
    # The input check's warning as one line, without Python's file:line prefix.
    code, err = _run(["--bundle", str(bundles / "a"), "--switch", "1x1.0", *common], capsys)
    assert code == 0 and "warning: " in err and "far outside [0, 1]" in err and "UserWarning" not in err, err
    # A peer whose port is taken names --listen.
    proc = PeerProcess(bundles / "a", 1, addresses, key, "--listen", addresses, log=tmp_path / "busy.log")
    assert proc.proc.wait(60) == 2
    log = (tmp_path / "busy.log").read_text()
    assert f"--listen {addresses}: the port is in use" in log, log
    proc.stop()
