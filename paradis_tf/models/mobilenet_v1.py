"""MobileNetV1 (Howard et al., 2017): depthwise-separable convolutions."""

from __future__ import annotations

import keras

from paradis_tf.layers.gate_config import GateConfig
from paradis_tf.models._blocks import ClassifierHead, ConvBN, DepthwiseBN, check_classifier_args, scaled
from paradis_tf.switches import SwitchSet
from paradis_tf.models._classifier import SplitClassifier

__all__ = ["MobileNetV1"]

# (pointwise filters, depthwise stride) of the 13 separable blocks.
_BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


@keras.saving.register_keras_serializable(package="paradis_tf")
class MobileNetV1(SplitClassifier):
    """MobileNetV1: stem 3x3/2 conv, 13 blocks of depthwise 3x3 + pointwise 1x1.

    Depthwise convolutions are local on every device; the pointwise 1x1
    convolutions mix channels and carry all the traffic (learned gates).

    Args:
        width: channel multiplier (alpha).
        num_classes, input_shape, switches, gates, sync_batch_norm: as
            ``CifarResNet``.
    """

    def __init__(self, width=1.0, num_classes=1000, input_shape=(224, 224, 3),
                 switches="1x1.0", gates="learned", sync_batch_norm=False, name=None, **kwargs):
        input_shape = check_classifier_args(num_classes, input_shape, width)
        switches = SwitchSet(switches)
        gates = GateConfig.coerce(gates)
        stem = ConvBN(scaled(32, width), 3, switches, "stem", strides=2, replicated_input=True, gates=gates,
                      sync_bn=sync_batch_norm)
        blocks = [
            (DepthwiseBN(switches, f"block{i + 1}", strides, sync_batch_norm),
             ConvBN(scaled(f, width), 1, switches, f"block{i + 1}_pw", gates=gates, sync_bn=sync_batch_norm))
            for i, (f, strides) in enumerate(_BLOCKS)
        ]
        head = ClassifierHead(num_classes, switches)

        inputs = keras.Input(input_shape, name="image")
        outputs = {}
        for switch in switches.names:
            x = stem(inputs, switch)  # (B, H/2, W/2, 32w)
            for depthwise, pointwise in blocks:
                x = pointwise(depthwise(x, switch), switch)  # down to (B, H/32, W/32, 1024w)
            outputs[switch] = head(x, switch)  # (B, classes)
        super().__init__(
            inputs, outputs, switches, name=name or "mobilenet_v1",
            architecture={"width": width, "num_classes": num_classes,
                          "input_shape": list(input_shape), "gates": gates.get_config(),
                          "sync_batch_norm": bool(sync_batch_norm)},
            **kwargs,
        )
