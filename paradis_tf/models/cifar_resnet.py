"""CifarResNet: ResNet-20/32/44/56/110 for small images (He et al., 2016, sec. 4.2)."""

from __future__ import annotations

import keras

from paradis_tf.layers.gate_config import GateConfig
from paradis_tf.models._blocks import BasicBlock, ClassifierHead, ConvBN, check_classifier_args, scaled
from paradis_tf.switches import SwitchSet
from paradis_tf.models._classifier import SplitClassifier

__all__ = ["CifarResNet"]


@keras.saving.register_keras_serializable(package="paradis_tf")
class CifarResNet(SplitClassifier):
    """ResNet of depth 6n+2 with stages of 16, 32, 64 channels (times ``width``).

    stem 3x3 conv (input replicated on every device) -> 3 stages of n basic
    blocks (stride 2 at the start of stages 2 and 3, projection shortcuts)
    -> global average pooling -> per-device partial logits summed on device 0.

    Args:
        depth: 20, 32, 44, 56, 110, ... (6n + 2).
        width: channel multiplier (0.25 gives 4-8-16 channels).
        num_classes: classes.
        input_shape: ``(H, W, C)`` of one image.
        switches: the SwitchSet the model serves.
        gates: gate mode or GateConfig of every communicating layer.
        sync_batch_norm: batch statistics across replicas of a distribution
            strategy (see ``SwitchableBatchNormalization``).
    """

    def __init__(self, depth=20, width=1.0, num_classes=10, input_shape=(32, 32, 3),
                 switches="1x1.0", gates="learned", sync_batch_norm=False, name=None, **kwargs):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), received {depth!r}.")
        input_shape = check_classifier_args(num_classes, input_shape, width)
        switches = SwitchSet(switches)
        gates = GateConfig.coerce(gates)
        n = (depth - 2) // 6
        filters = [scaled(c, width) for c in (16, 32, 64)]

        stem = ConvBN(filters[0], 3, switches, "stem", replicated_input=True, gates=gates,
                      sync_bn=sync_batch_norm)
        blocks, previous = [], filters[0]
        for stage, f in enumerate(filters):
            for b in range(n):
                strides = 2 if stage > 0 and b == 0 else 1
                blocks.append(BasicBlock(f, switches, f"stage{stage + 1}_block{b + 1}", strides, previous, gates,
                                         sync_batch_norm))
                previous = f
        head = ClassifierHead(num_classes, switches)

        inputs = keras.Input(input_shape, name="image")
        outputs = {}
        for switch in switches.names:
            x = stem(inputs, switch)  # (B, H, W, 16w)
            for block in blocks:
                x = block(x, switch)  # stages: (B, H, W, 16w) -> (B, H/2, W/2, 32w) -> (B, H/4, W/4, 64w)
            outputs[switch] = head(x, switch)  # (B, classes)
        super().__init__(
            inputs, outputs, switches, name=name or f"resnet{depth}",
            architecture={"depth": depth, "width": width, "num_classes": num_classes,
                          "input_shape": list(input_shape), "gates": gates.get_config(),
                          "sync_batch_norm": bool(sync_batch_norm)},
            **kwargs,
        )
