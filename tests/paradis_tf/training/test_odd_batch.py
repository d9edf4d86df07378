"""The guard against TensorFlow's oneDNN crash on odd training batches."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from paradis_tf.training._odd_batch import even_batch


@pytest.mark.parametrize("n, kept", [(6, [0, 1, 2, 3, 4, 5]), (5, [0, 1, 2, 3]), (1, [0, 0])])
def test_even_batch_keeps_an_even_prefix(n, kept):
    x = {"image": np.arange(n * 2, dtype="float32").reshape(n, 2)}
    y = np.arange(n)
    got_x, got_y, got_w = even_batch((x, y, None))
    assert keras.ops.convert_to_numpy(got_y).tolist() == kept
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(got_x["image"]), x["image"][kept])
    assert got_w is None


def _run_with_onednn(script: str):
    """``script`` in a fresh TensorFlow process with oneDNN on (the crash kills
    the process, so it cannot run in the test's own); asserts it exited 0."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[3],
                          env={**env, "KERAS_BACKEND": "tensorflow"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    return proc


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the crash is TensorFlow's oneDNN")
def test_fit_with_an_odd_last_batch_completes():
    # 93 samples in batches of 64: a last batch of 29, whose 1x1 stride-2
    # shortcut gradient crashed the process (SIGABRT/SIGSEGV) at 16x16 input.
    script = (
        "import numpy as np, keras\n"
        "from paradis_tf.models import build_model\n"
        "m = build_model('resnet20', width=0.25, num_classes=3, input_shape=(16, 16, 3), "
        "switches='1x1.0,2x0.5', gates='shut')\n"
        "m.compile(optimizer=keras.optimizers.Adam(1e-2))\n"
        "x = np.random.default_rng(0).random((93, 16, 16, 3), dtype='float32')\n"
        "h = m.fit(x, np.arange(93) % 3, batch_size=64, epochs=2, verbose=0)\n"
        "print('loss', h.history['loss'][-1])\n"
    )
    proc = _run_with_onednn(script)
    assert np.isfinite(float(proc.stdout.split()[-1]))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the crash is TensorFlow's oneDNN")
def test_strided_1x1_gradient_at_larger_inputs_completes_on_even_batches():
    # oneDNN's filter gradient of a strided 1x1 conv also corrupted the heap on
    # EVEN batches once the input is 48x48 or larger with few channels (batch 8,
    # 64x64x4 -> 8: SIGSEGV): the even-batch guard cannot cover that, so
    # SplitConv2D runs a strided 1x1 as a slice and a stride-1 conv.
    script = (
        "import numpy as np, tensorflow as tf\n"
        "from paradis_tf.layers import SplitConv2D\n"
        "layer = SplitConv2D(8, 1, '1x1.0,2x0.5', strides=2, gates='shut')\n"
        "x = tf.constant(np.random.default_rng(0).random((8, 64, 64, 4), dtype='float32'))\n"
        "layer.build(x.shape)\n"
        "for switch in ('1x1.0', '2x0.5'):\n"
        "    with tf.GradientTape() as tape:\n"
        "        loss = tf.reduce_sum(tf.square(layer(x, switch=switch, training=True)))\n"
        "    grad = tape.gradient(loss, layer.kernel)\n"
        "print('gradient', float(tf.reduce_sum(tf.abs(grad))))\n"
    )
    proc = _run_with_onednn(script)
    assert float(proc.stdout.split()[-1]) > 0
