"""CenterNet: objects as center points (Zhou et al., 2019) on the split ResNet backbone.

Output and target layouts (channels last, at stride 4, ``C = num_classes``)::

    prediction (B, H/4, W/4, C + 4): [0, C)   heatmap logits, one per class
                                     [C, C+2) size (w, h) of the box, in output cells
                                     [C+2, C+4) offset (dx, dy) of the center, in cells
    target     (B, H/4, W/4, C + 5): [0, C)   heatmap: Gaussian splats, 1 at each center
                                     [C, C+2) size (w, h) at center cells, in output cells
                                     [C+2, C+4) offset (dx, dy) in [0, 1) at center cells
                                     C+4      mask: 1 at each object's center cell, else 0

An object with box center (cx, cy) in input pixels sits at cell
(floor(cx / 4), floor(cy / 4)) with offset (cx / 4 - floor(cx / 4), cy / 4 - floor(cy / 4));
its size is (x1 - x0, y1 - y0) / 4. The encoder (targets) and the decoder
(peaks -> boxes) live with the data (``paradis_tf.data``), not here.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from paradis_tf.layers.gate_config import GateConfig
from paradis_tf.layers.partial_sum_fusion import PartialSumFusion
from paradis_tf.layers.split_conv2d import SplitConv2D
from paradis_tf.models._blocks import scaled
from paradis_tf.models._classifier import SplitClassifier
from paradis_tf.models._dense_heads import DenseBackbone, MergeToStride4, check_dense_args
from paradis_tf.switches import SwitchSet
from paradis_tf.training.task import Task

__all__ = ["CenterNet", "CenterNetLoss", "centernet_task", "OUTPUT_STRIDE"]

OUTPUT_STRIDE = 4
# Heatmap bias at initialization: sigmoid(-2.19) = 0.1, CenterNet's prior, so
# the focal loss of the (mostly background) heatmap starts small.
_HEATMAP_PRIOR_BIAS = -2.19


@keras.saving.register_keras_serializable(package="paradis_tf")
class CenterNetLoss(keras.losses.Loss):
    """CenterNet's loss on the packed target (see the module's layout).

    Per example: the penalty-reduced focal loss of the sigmoid heatmap
    (``alpha``, ``beta``), plus L1 of size and offset at the object centers
    (mean over the two components), each divided by the example's number of
    objects (at least 1), weighted ``heatmap_weight``, ``size_weight``,
    ``offset_weight`` (CenterNet: 1, 0.1, 1). CenterNet normalizes by the
    objects of the whole batch; here each example is normalized by its own,
    so the loss is a per-example value (``(B,)``) that sample weights and
    SplitModel's per-switch mean apply to.

    Args:
        num_classes: heatmap channels C; ``y_true`` has C + 5 channels and
            ``y_pred`` C + 4.
        alpha, beta: focal exponents.
        heatmap_weight, size_weight, offset_weight: term weights.
    """

    def __init__(self, num_classes, alpha=2.0, beta=4.0, heatmap_weight=1.0, size_weight=0.1,
                 offset_weight=1.0, name="centernet_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, received {num_classes!r}.")
        self.num_classes = num_classes
        self.alpha, self.beta = float(alpha), float(beta)
        self.heatmap_weight = float(heatmap_weight)
        self.size_weight = float(size_weight)
        self.offset_weight = float(offset_weight)

    def _check(self, y_true, y_pred):
        c = self.num_classes
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != c + 4:
            raise ValueError(
                f"CenterNetLoss: y_pred must have num_classes + 4 = {c + 4} channels (heatmap, size, "
                f"offset), received shape {tuple(y_pred.shape)}."
            )
        if y_true.shape[-1] is not None and y_true.shape[-1] != c + 5:
            raise ValueError(
                f"CenterNetLoss: y_true must have num_classes + 5 = {c + 5} channels (heatmap, size, "
                f"offset, mask), received shape {tuple(y_true.shape)}: pack the targets as "
                "concatenate([heatmap, size, offset, mask[..., None]], axis=-1)."
            )

    def call(self, y_true, y_pred):
        self._check(y_true, y_pred)
        c = self.num_classes
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        # (B, h, w, C+5) -> heat (B, h, w, C), size (.., 2), offset (.., 2), mask (.., 1)
        heat, size, offset, mask = (y_true[..., :c], y_true[..., c : c + 2], y_true[..., c + 2 : c + 4],
                                    y_true[..., c + 4 : c + 5])
        # (B, h, w, C+4) -> logits (B, h, w, C), size (.., 2), offset (.., 2)
        logits, size_pred, offset_pred = y_pred[..., :c], y_pred[..., c : c + 2], y_pred[..., c + 2 :]
        per_example = lambda t: ops.sum(ops.reshape(t, (ops.shape(t)[0], -1)), axis=-1)  # (B, ...) -> (B,)
        objects = ops.maximum(per_example(mask), 1.0)  # (B,)

        # Focal loss; log-probabilities from the logits (stable), p for the weights.
        p = ops.sigmoid(logits)
        positive = ops.cast(ops.greater_equal(heat, 1.0 - 1e-4), "float32")  # the peaks
        pos = ops.log_sigmoid(logits) * ops.power(1.0 - p, self.alpha) * positive
        neg = (ops.log_sigmoid(-logits) * ops.power(p, self.alpha)
               * ops.power(1.0 - heat, self.beta) * (1.0 - positive))
        focal = -(per_example(pos) + per_example(neg)) / objects

        # L1 at the centers, averaged over the 2 components: (B, h, w, 2) * (B, h, w, 1).
        size_l1 = per_example(ops.abs(size_pred - size) * mask) / (2.0 * objects)
        offset_l1 = per_example(ops.abs(offset_pred - offset) * mask) / (2.0 * objects)
        return self.heatmap_weight * focal + self.size_weight * size_l1 + self.offset_weight * offset_l1

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes, "alpha": self.alpha, "beta": self.beta,
            "heatmap_weight": self.heatmap_weight, "size_weight": self.size_weight,
            "offset_weight": self.offset_weight,
        })
        return config


def centernet_task(num_classes: int) -> Task:
    """CenterNet loss on packed targets; students distill the teacher's raw
    output (heatmap logits, size, offset) by squared error; no per-switch
    metric (mAP@0.5 needs decoding: see ``paradis_tf.metrics``)."""
    return Task("detection", "centernet", CenterNetLoss(num_classes), distillation="mse", metric=None)


@keras.saving.register_keras_serializable(package="paradis_tf")
class CenterNet(SplitClassifier):
    """CenterNet-style detector at output stride 4.

    backbone (stem + 3 stages; features at strides 4 and 8) -> FPN-style merge
    at stride 4 -> 1x1 SplitConv2D to per-device partial outputs
    ``(B, H/4, W/4, D, C + 4)`` -> PartialSumFusion ``(B, H/4, W/4, C + 4)``
    (layout in the module docstring). The heatmap is returned as logits: the
    sigmoid belongs to decoding, after the fusion.

    Args:
        num_classes: object classes C (10 for Fashion-MNIST scenes).
        input_shape: ``(H, W, C)``, H and W multiples of 8; images in [0, 1].
        width, blocks_per_stage, switches, gates, sync_batch_norm: as
            ``SplitSegmenter``.
    """

    def __init__(self, num_classes=10, input_shape=(64, 64, 1), width=1.0, blocks_per_stage=1,
                 switches="1x1.0", gates="learned", sync_batch_norm=False, name=None, **kwargs):
        input_shape = check_dense_args(num_classes, input_shape, width, blocks_per_stage, 1)
        switches = SwitchSet(switches)
        gates = GateConfig.coerce(gates)
        backbone = DenseBackbone(switches, width, blocks_per_stage, gates, sync_batch_norm)
        merge = MergeToStride4(scaled(32, width), switches, gates, sync_batch_norm)
        head = SplitConv2D(num_classes + 4, 1, switches, partial_outputs=True, name="head_outputs")
        fusion = PartialSumFusion(switches, name="head_fusion")

        inputs = keras.Input(input_shape, name="image")
        outputs = {}
        for switch in switches.names:
            c4, c8 = backbone(inputs, switch)  # (B, H/4, W/4, 32w), (B, H/8, W/8, 64w)
            x = merge(c4, c8, switch)  # (B, H/4, W/4, 32w)
            partials = head(x, switch=switch)  # (B, H/4, W/4, D, C + 4)
            outputs[switch] = fusion(partials, switch=switch)  # (B, H/4, W/4, C + 4)
        # The bias is added once (device 0): heatmap channels start at the prior.
        bias = np.zeros((num_classes + 4,), "float32")
        bias[:num_classes] = _HEATMAP_PRIOR_BIAS
        head.bias.assign(bias)
        super().__init__(
            inputs, outputs, switches, name=name or "centernet", task=centernet_task(num_classes),
            architecture={"num_classes": num_classes, "input_shape": list(input_shape), "width": width,
                          "blocks_per_stage": blocks_per_stage, "gates": gates.get_config(),
                          "sync_batch_norm": bool(sync_batch_norm)},
            **kwargs,
        )
        self.num_classes = num_classes

    @property
    def output_stride(self) -> int:
        return OUTPUT_STRIDE
