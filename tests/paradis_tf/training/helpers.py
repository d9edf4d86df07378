"""Small data and models for the training tests."""

import numpy as np

from paradis_tf.models import CifarResNet


def toy_data(n=128, size=12, seed=0):
    """A learnable 4-class task: which image quadrant is brightest."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, size, size, 1)).astype("float32") * 0.5
    y = rng.integers(0, 4, n)
    h = size // 2
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[i, r * h : (r + 1) * h, c * h : (c + 1) * h, 0] += 0.5
    return x, y


def tiny_resnet(switches="1x1.0,2x0.5", gates="learned", **kwargs):
    return CifarResNet(depth=8, width=0.5, num_classes=4, input_shape=(12, 12, 1), switches=switches,
                       gates=gates, **kwargs)
