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


def custom_model(switches="1x1.0,2x0.5,0.5+0.3+0.2"):
    """A hand-built SplitModel with what the model families lack: batch norm
    after an activation (not foldable), max pooling, a communicating
    SplitDense, a conv with its own activation and bias."""
    import keras

    from paradis_tf.layers import (PartialSumFusion, SplitConv2D, SplitDense, SplitDepthwiseConv2D,
                                   SwitchableBatchNormalization)
    from paradis_tf.training import SplitModel

    stem = SplitConv2D(12, 3, switches, padding="same", replicated_input=True, name="stem")
    bn = SwitchableBatchNormalization(switches, name="bn")
    conv = SplitConv2D(12, 3, switches, padding="same", activation="relu", name="conv")
    dw = SplitDepthwiseConv2D(3, switches, padding="same", activation="relu6", name="dw")
    mid = SplitDense(16, switches, name="mid")
    head = SplitDense(5, switches, partial_outputs=True, name="head")
    fusion = PartialSumFusion(switches, name="fusion")
    inputs = keras.Input((12, 12, 2))
    outputs = {}
    for s in keras.tree.flatten(switches.split(",")):
        x = keras.layers.ReLU()(stem(inputs, switch=s))
        x = bn(x, switch=s)  # after the ReLU: an unfolded per-channel affine
        x = keras.layers.MaxPooling2D(2)(x)  # (B, 6, 6, 12)
        x = dw(conv(x, switch=s), switch=s)
        x = keras.layers.GlobalAveragePooling2D()(x)  # (B, 12)
        x = keras.layers.ReLU()(mid(x, switch=s))  # channel-mixing dense with gates
        outputs[s] = fusion(head(x, switch=s), switch=s)
    return sparse(SplitModel(inputs, outputs, switches), budget=0.3)[0]
