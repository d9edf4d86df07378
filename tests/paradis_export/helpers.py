"""Models with learned sparse gates for the export tests (no training needed:
random gate logits made binary at a budget, random batch-norm statistics so
that folding is really exercised)."""

import numpy as np

from paradis_tf.models import CifarResNet, MobileNetV1

SWITCHES = "1x1.0,2x0.5,4x0.25,0.5+0.3+0.2"
SPLIT_SWITCHES = ("2x0.5", "4x0.25", "0.5+0.3+0.2")


def sparse(model, budget=0.2, seed=0):
    rng = np.random.default_rng(seed)
    for v in model.weights:
        path = v.path
        if "gate_logits" in path:
            v.assign(rng.normal(size=v.shape).astype("float32"))
        elif "moving_mean" in path or "beta" in path:
            v.assign(rng.normal(0.0, 0.2, size=v.shape).astype("float32"))
        elif "moving_variance" in path or "gamma" in path:
            v.assign(rng.uniform(0.5, 1.5, size=v.shape).astype("float32"))
        elif path.endswith("bias"):
            v.assign(rng.normal(0.0, 0.1, size=v.shape).astype("float32"))
    ratios = model.finalize_gates(budget=budget)
    return model, ratios


def resnet20(width=0.25, switches=SWITCHES):
    return sparse(CifarResNet(depth=20, width=width, num_classes=10, input_shape=(28, 28, 1), switches=switches))[0]


def mobilenet(width=0.25, switches=SWITCHES):
    return sparse(MobileNetV1(width=width, num_classes=10, input_shape=(32, 32, 1), switches=switches))[0]


def real_images(n, size=28, seed=0):
    """Fashion-MNIST test images as model inputs (N, size, size, 1) in [0, 1]."""
    from paradis_tf.data import load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(images), n, replace=False)
    x = images[idx].astype("float32") / 255.0
    pad = (size - 28) // 2
    if pad:
        x = np.pad(x, ((0, 0), (pad, size - 28 - pad), (pad, size - 28 - pad), (0, 0)))
    return x, labels[idx]
