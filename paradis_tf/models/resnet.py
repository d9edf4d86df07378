"""ResNet: ImageNet-style ResNet-18/34 (basic blocks) and ResNet-50/101 (bottlenecks)."""

from __future__ import annotations

import keras

from paradis_tf.layers.gate_config import GateConfig
from paradis_tf.models._blocks import (
    BasicBlock, BottleneckBlock, ClassifierHead, ConvBN, check_classifier_args, scaled,
)
from paradis_tf.switches import SwitchSet
from paradis_tf.models._classifier import SplitClassifier

__all__ = ["ResNet"]

_STAGES = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (BottleneckBlock, (3, 4, 6, 3)),
    101: (BottleneckBlock, (3, 4, 23, 3)),
}


@keras.saving.register_keras_serializable(package="paradis_tf")
class ResNet(SplitClassifier):
    """ResNet (He et al., 2016) with stages of 64, 128, 256, 512 channels (times ``width``).

    stem 7x7/2 conv (input replicated) + 3x3/2 max pool -> 4 stages (stride 2
    at the start of stages 2-4; bottlenecks expand x4) -> global average
    pooling -> per-device partial logits summed on device 0.

    Args:
        depth: 18, 34 (basic blocks), 50 or 101 (bottlenecks).
        width, num_classes, input_shape, switches, gates, sync_batch_norm: as
            ``CifarResNet``.
    """

    def __init__(self, depth=50, width=1.0, num_classes=1000, input_shape=(224, 224, 3),
                 switches="1x1.0", gates="learned", sync_batch_norm=False, name=None, **kwargs):
        if depth not in _STAGES:
            raise ValueError(f"depth must be one of {sorted(_STAGES)}, received {depth!r}.")
        input_shape = check_classifier_args(num_classes, input_shape, width)
        switches = SwitchSet(switches)
        gates = GateConfig.coerce(gates)
        block_cls, counts = _STAGES[depth]

        stem = ConvBN(scaled(64, width), 7, switches, "stem", strides=2, replicated_input=True, gates=gates,
                      sync_bn=sync_batch_norm)
        blocks, previous = [], scaled(64, width)
        for stage, count in enumerate(counts):
            f = scaled(64 * 2**stage, width)
            for b in range(count):
                strides = 2 if stage > 0 and b == 0 else 1
                block = block_cls(f, switches, f"stage{stage + 1}_block{b + 1}", strides, previous, gates,
                                  sync_batch_norm)
                blocks.append(block)
                previous = f * getattr(block_cls, "expansion", 1)
        head = ClassifierHead(num_classes, switches)

        inputs = keras.Input(input_shape, name="image")
        outputs = {}
        for switch in switches.names:
            x = stem(inputs, switch)  # (B, H/2, W/2, 64w)
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)  # (B, H/4, W/4, 64w), local
            for block in blocks:
                x = block(x, switch)  # down to (B, H/32, W/32, 512w * expansion)
            outputs[switch] = head(x, switch)  # (B, classes)
        super().__init__(
            inputs, outputs, switches, name=name or f"resnet{depth}",
            architecture={"depth": depth, "width": width, "num_classes": num_classes,
                          "input_shape": list(input_shape), "gates": gates.get_config(),
                          "sync_batch_norm": bool(sync_batch_norm)},
            **kwargs,
        )
