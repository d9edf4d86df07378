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


def resnet8(width=0.25, switches=SWITCHES):
    """ResNet-8: every block kind of the CIFAR ResNets (a stride-2 projection
    per stage) at a third of ResNet-20's stages, so exports stay quick."""
    return sparse(CifarResNet(depth=8, width=width, num_classes=10, input_shape=(28, 28, 1), switches=switches))[0]


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


# -- stage structure of an exported fusion graph ---------------------------------


def arriving(graph, device, stage):
    """Tensors that another device sends to ``stage`` of ``device`` (the stage
    that first reads them: the device waits for them there)."""
    return {s["tensor"] for s in graph["sends"]
            if s["to"]["device"] == device and s["to"]["stage"] == stage["name"]}


def check_stage_boundaries(graph):
    """Two stages of a device are apart only where it sends or receives:
    the earlier one's outputs include a sent tensor, or the later one waits
    for a tensor from another device. Returns the number of boundaries."""
    checked = 0
    for d in graph["devices"]:
        device = d["device"]
        for before, after in zip(d["stages"], d["stages"][1:]):
            sent = {s["tensor"] for s in graph["sends"]
                    if s["from"]["device"] == device and s["from"]["stage"] == before["name"]}
            assert sent & set(before["outputs"]) or arriving(graph, device, after) & set(after["inputs"]), (
                f"{graph['switch']} device {device}: {before['name']} and {after['name']} neither send nor "
                "receive between them (one stage would do)")
            checked += 1
    return checked


def check_local_parts_before_receives(graph):
    """Every stage that waits for another device's tensors also reads the
    local part (``..._local``: own channels against their kernel rows, plus
    the bias; for a layer norm ``..._stats_d{k}``, the statistics of the
    device's own channels) of the layer that receives them, from the same
    device's previous stage. Returns the number of receiving stages checked."""
    checked = 0
    for d in graph["devices"]:
        for i, stage in enumerate(d["stages"]):
            received = arriving(graph, d["device"], stage)
            if not received:
                continue
            assert i > 0, f"{graph['switch']} device {d['device']} receives in its first stage"
            before = d["stages"][i - 1]
            local = [t for t in stage["inputs"] if t.endswith("_local") or t.endswith(f"_stats_d{d['device']}")]
            assert len(local) == 1 and local[0] in before["outputs"], (
                f"{graph['switch']} device {d['device']} {stage['name']} receives {sorted(received)} without "
                f"a local part from {before['name']}: reads {stage['inputs']}")
            checked += 1
    return checked


def seeded_bundles(root, switches, export=None, calibration=64, **int8_options):
    """float32 and int8 bundles (``root/"float32"``, ``root/"int8"``) of one
    seeded ResNet-8 at width 0.5, exporting ``export`` (default: every
    switch). Width 0.5 gives every device 2+ channels, so no device's tensor
    is zero on every calibration image (the int8 limit in README). Returns
    the model."""
    import keras

    from paradis_export import export_bundle

    keras.utils.set_random_seed(7)  # module fixtures run before the per-test seed
    model = resnet8(width=0.5, switches=switches)
    export = export or switches
    export_bundle(model, export, root / "float32", progress=None)
    export_bundle(model, export, root / "int8", int8=True, calibration=real_images(calibration, seed=1)[0],
                  progress=None, **int8_options)
    return model
