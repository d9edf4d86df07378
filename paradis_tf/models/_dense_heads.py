"""What the dense-prediction families (segmentation, detection) share: the
split ResNet backbone with features at strides 4 and 8, and the FCN/FPN-style
merge that brings them to stride 4 with an Add skip (never a channel concat of
device-partitioned tensors: an Add of two tensors with the same channel count
has aligned partitions, so it is local).
"""

from __future__ import annotations

import keras

from paradis_tf.layers.upsampling import Upsample2D
from paradis_tf.models._blocks import BasicBlock, ConvBN, scaled

# The backbone's deepest features are at stride 8: the input must divide by it.
BACKBONE_STRIDE = 8


def check_dense_args(num_classes, input_shape, width, blocks_per_stage, min_classes):
    """Validates the constructor arguments of a dense-prediction family."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < min_classes:
        raise ValueError(f"num_classes must be an int >= {min_classes}, received {num_classes!r}.")
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_shape)
    ):
        raise ValueError(
            f"input_shape must be (height, width, channels) of positive ints, received {input_shape!r}."
        )
    for axis, size in zip(("height", "width"), input_shape[:2]):
        if size % BACKBONE_STRIDE:
            raise ValueError(
                f"input_shape {tuple(input_shape)}: the image {axis} {size} is not divisible by "
                f"{BACKBONE_STRIDE}, the backbone's output stride; pad or crop the images to a "
                f"multiple of {BACKBONE_STRIDE} (e.g. {size - size % BACKBONE_STRIDE or BACKBONE_STRIDE})."
            )
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a positive number, received {width!r}.")
    if isinstance(blocks_per_stage, bool) or not isinstance(blocks_per_stage, int) or blocks_per_stage < 1:
        raise ValueError(f"blocks_per_stage must be a positive int, received {blocks_per_stage!r}.")
    return tuple(input_shape)


class DenseBackbone:
    """CifarResNet-like split backbone returning features at strides 4 and 8.

    stem 3x3 ConvBN (input replicated) -> 3 stages of ``blocks_per_stage``
    basic blocks with 16, 32, 64 channels (times ``width``), each stage
    starting with stride 2.
    """

    def __init__(self, switches, width, blocks_per_stage, gates, sync_bn):
        self.filters = [scaled(c, width) for c in (16, 32, 64)]
        self.stem = ConvBN(self.filters[0], 3, switches, "stem", replicated_input=True, gates=gates,
                           sync_bn=sync_bn)
        self.stages, previous = [], self.filters[0]
        for stage, f in enumerate(self.filters):
            blocks = []
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(f, switches, f"stage{stage + 1}_block{b + 1}", 2 if b == 0 else 1,
                                         previous, gates, sync_bn))
                previous = f
            self.stages.append(blocks)

    def __call__(self, x, switch):
        x = self.stem(x, switch)  # (B, H, W, 16w)
        features = []
        for blocks in self.stages:
            for block in blocks:
                x = block(x, switch)
            features.append(x)
        # (B, H/2, W/2, 16w), (B, H/4, W/4, 32w), (B, H/8, W/8, 64w)
        return features[1], features[2]


class MergeToStride4:
    """FPN-style merge: 1x1 laterals, the stride-8 map upsampled (per channel,
    local) and added to the stride-4 map, then a 3x3 ConvBN.

    ``(B, H/4, W/4, C4)``, ``(B, H/8, W/8, C8)`` -> ``(B, H/4, W/4, filters)``.
    """

    def __init__(self, filters, switches, gates, sync_bn, name="merge"):
        kw = {"gates": gates, "sync_bn": sync_bn}
        self.lateral8 = ConvBN(filters, 1, switches, f"{name}_lateral8", relu=False, **kw)
        self.lateral4 = ConvBN(filters, 1, switches, f"{name}_lateral4", relu=False, **kw)
        self.up = Upsample2D(2, switches, interpolation="nearest", name=f"{name}_up")
        self.smooth = ConvBN(filters, 3, switches, f"{name}_smooth", **kw)

    def __call__(self, c4, c8, switch):
        top = self.up(self.lateral8(c8, switch), switch=switch)  # (B, H/8, W/8, F) -> (B, H/4, W/4, F)
        x = keras.layers.Add()([top, self.lateral4(c4, switch)])  # (B, H/4, W/4, F) + (B, H/4, W/4, F)
        return self.smooth(keras.layers.ReLU()(x), switch)  # (B, H/4, W/4, F)
