"""SplitSegmenter: a light FCN head on the split ResNet backbone (per-pixel classes)."""

from __future__ import annotations

import keras

from paradis_tf.layers.gate_config import GateConfig
from paradis_tf.layers.partial_sum_fusion import PartialSumFusion
from paradis_tf.layers.split_conv2d import SplitConv2D
from paradis_tf.layers.upsampling import Upsample2D
from paradis_tf.models._classifier import SplitClassifier
from paradis_tf.models._dense_heads import DenseBackbone, MergeToStride4, check_dense_args
from paradis_tf.models._blocks import scaled
from paradis_tf.switches import SwitchSet
from paradis_tf.training.task import Task

__all__ = ["SplitSegmenter", "segmentation_task"]


def segmentation_task(num_classes: int) -> Task:
    """Per-pixel cross-entropy on logits, per-pixel soft-label distillation,
    mean IoU over ``num_classes`` (argmax of the logits) per switch."""
    return Task(
        "segmentation", "segmentation_logits",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distillation="softmax",
        metric=keras.metrics.MeanIoU(num_classes, sparse_y_pred=False, name="miou"),
    )


@keras.saving.register_keras_serializable(package="paradis_tf")
class SplitSegmenter(SplitClassifier):
    """Semantic segmentation: per-pixel class logits at the input resolution.

    backbone (stem + 3 stages of basic blocks; features at strides 4 and 8)
    -> FPN-style merge at stride 4 (1x1 laterals, nearest x2 upsampling, Add,
    3x3 ConvBN) -> 1x1 SplitConv2D to per-device partial logits
    ``(B, H/4, W/4, D, classes)`` -> per-device bilinear x4 upsampling
    ``(B, H, W, D, classes)`` -> PartialSumFusion ``(B, H, W, classes)``.
    Everything after the last split conv is linear and per device, so it
    commutes with the fused sum.

    Labels: ``(B, H, W)`` ints in ``[0, num_classes)`` (class 0: background
    for Fashion-MNIST scenes, items 1..10, so ``num_classes=11``). Input:
    images in [0, 1] (the model does not rescale).

    Args:
        num_classes: classes including background (>= 2).
        input_shape: ``(H, W, C)``, H and W multiples of 8.
        width: channel multiplier of the backbone (16, 32, 64) and head (32).
        blocks_per_stage: basic blocks per backbone stage.
        switches, gates, sync_batch_norm: as ``CifarResNet``.
    """

    def __init__(self, num_classes=11, input_shape=(64, 64, 1), width=1.0, blocks_per_stage=1,
                 switches="1x1.0", gates="learned", sync_batch_norm=False, name=None, **kwargs):
        input_shape = check_dense_args(num_classes, input_shape, width, blocks_per_stage, 2)
        switches = SwitchSet(switches)
        gates = GateConfig.coerce(gates)
        backbone = DenseBackbone(switches, width, blocks_per_stage, gates, sync_batch_norm)
        merge = MergeToStride4(scaled(32, width), switches, gates, sync_batch_norm)
        logits = SplitConv2D(num_classes, 1, switches, partial_outputs=True, name="head_logits")
        upsample = Upsample2D(4, switches, interpolation="bilinear", name="head_upsample")
        fusion = PartialSumFusion(switches, name="head_fusion")

        inputs = keras.Input(input_shape, name="image")
        outputs = {}
        for switch in switches.names:
            c4, c8 = backbone(inputs, switch)  # (B, H/4, W/4, 32w), (B, H/8, W/8, 64w)
            x = merge(c4, c8, switch)  # (B, H/4, W/4, 32w)
            partials = logits(x, switch=switch)  # (B, H/4, W/4, D, classes)
            partials = upsample(partials, switch=switch)  # (B, H, W, D, classes)
            outputs[switch] = fusion(partials, switch=switch)  # (B, H, W, classes)
        super().__init__(
            inputs, outputs, switches, name=name or "fcn_segmenter", task=segmentation_task(num_classes),
            architecture={"num_classes": num_classes, "input_shape": list(input_shape), "width": width,
                          "blocks_per_stage": blocks_per_stage, "gates": gates.get_config(),
                          "sync_batch_norm": bool(sync_batch_norm)},
            **kwargs,
        )
