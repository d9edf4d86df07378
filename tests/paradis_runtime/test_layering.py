"""The runtime is what a phone-class peer installs: no Keras, no TensorFlow."""

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def test_runtime_runs_a_bundle_without_keras_or_tensorflow(tmp_path):
    from paradis_export import export_bundle
    from tests.paradis_export.helpers import real_images, resnet8

    export_bundle(resnet8(switches="1x1.0,2x0.5"), "2x0.5", tmp_path / "b", progress=None)
    x, _ = real_images(1)
    np.save(tmp_path / "x.npy", x)
    # The executor, then a peer (device 1) and the coordinator (device 0) over loopback TCP.
    script = (
        "import sys, numpy as np\n"
        "import paradis_runtime\n"
        "import paradis_runtime.planner, paradis_runtime.discovery, paradis_runtime.web_relay\n"
        "from paradis_runtime import PeerConfig, ReferenceExecutor, connect, read_manifest, serve\n"
        "read_manifest(sys.argv[1])\n"
        "out, trace = ReferenceExecutor(sys.argv[1]).run(np.load(sys.argv[2]))\n"
        "peer = serve(sys.argv[1], 1, PeerConfig(key='k' * 16), listen=('127.0.0.1', 0))\n"
        "with connect(sys.argv[1], [peer.listen], key='k' * 16) as session:\n"
        "    assert np.array_equal(session.predict(np.load(sys.argv[2])), out)\n"
        "peer.stop()\n"
        "print(out.shape, len(trace))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('keras', 'tensorflow', 'paradis_tf', 'paradis_export', 'jax')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "b"), str(tmp_path / "x.npy")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shape, loaded = proc.stdout.strip().splitlines()[-2:]
    assert shape.startswith("(1, 10)")
    assert loaded == "[]", loaded


def test_a_peer_install_pulls_no_keras_or_tensorflow():
    # `pip install 'paradis-tf[peer]'`: the base dependencies plus the peer extra.
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["peer"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for d in wanted}
    assert "ai-edge-litert" in names and "numpy" in names
    assert not names & {"keras", "tensorflow", "tensorflow-cpu", "jax", "tf-keras"}, names
