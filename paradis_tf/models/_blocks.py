"""Building blocks shared by the model families.

A block creates its split layers once and is then applied once per switch:
every switch's branch of the functional graph calls the same layers, so all
switches share one set of weights.
"""

from __future__ import annotations

import keras

from paradis_tf.layers import (
    PartialSumFusion,
    SplitConv2D,
    SplitDense,
    SplitDepthwiseConv2D,
    SwitchableBatchNormalization,
)


def scaled(channels: int, width: float) -> int:
    """Channels of a layer at width multiplier ``width`` (at least 1)."""
    return max(1, int(round(channels * width)))


class ConvBN:
    """SplitConv2D (no bias) -> SwitchableBatchNormalization -> optional ReLU."""

    def __init__(self, filters, kernel_size, switches, name, strides=1, relu=True, gates="learned",
                 replicated_input=False, padding="same", sync_bn=False):
        self.conv = SplitConv2D(
            filters, kernel_size, switches, strides=strides, padding=padding, use_bias=False,
            gates=gates, replicated_input=replicated_input, kernel_initializer="he_normal",
            name=f"{name}_conv",
        )
        self.bn = SwitchableBatchNormalization(switches, synchronized=sync_bn, name=f"{name}_bn")
        self.relu = relu
        self.name = name

    def __call__(self, x, switch):
        x = self.bn(self.conv(x, switch=switch), switch=switch)
        return keras.layers.ReLU()(x) if self.relu else x


class DepthwiseBN:
    """SplitDepthwiseConv2D (no bias) -> SwitchableBatchNormalization -> ReLU."""

    def __init__(self, switches, name, strides=1, sync_bn=False):
        self.conv = SplitDepthwiseConv2D(
            3, switches, strides=strides, padding="same", use_bias=False,
            depthwise_initializer="he_normal", name=f"{name}_dw",
        )
        self.bn = SwitchableBatchNormalization(switches, synchronized=sync_bn, name=f"{name}_dw_bn")

    def __call__(self, x, switch):
        return keras.layers.ReLU()(self.bn(self.conv(x, switch=switch), switch=switch))


class BasicBlock:
    """Two 3x3 ConvBN with an identity (or 1x1 projection) shortcut.

    The projection is a split 1x1 convolution: a zero-padded identity would
    move channels across device boundaries when the width doubles.
    """

    def __init__(self, filters, switches, name, strides=1, in_filters=None, gates="learned", sync_bn=False):
        kw = {"gates": gates, "sync_bn": sync_bn}
        self.conv1 = ConvBN(filters, 3, switches, f"{name}_1", strides=strides, **kw)
        self.conv2 = ConvBN(filters, 3, switches, f"{name}_2", relu=False, **kw)
        self.project = None
        if strides != 1 or in_filters != filters:
            self.project = ConvBN(filters, 1, switches, f"{name}_proj", strides=strides, relu=False, **kw)

    def __call__(self, x, switch):
        shortcut = x if self.project is None else self.project(x, switch)
        y = self.conv2(self.conv1(x, switch), switch)
        return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))  # (B, H, W, C) + (B, H, W, C)


class BottleneckBlock:
    """1x1 reduce -> 3x3 -> 1x1 expand (x4), ResNet-50 style (stride on the 3x3)."""

    expansion = 4

    def __init__(self, filters, switches, name, strides=1, in_filters=None, gates="learned", sync_bn=False):
        out = filters * self.expansion
        kw = {"gates": gates, "sync_bn": sync_bn}
        self.conv1 = ConvBN(filters, 1, switches, f"{name}_1", **kw)
        self.conv2 = ConvBN(filters, 3, switches, f"{name}_2", strides=strides, **kw)
        self.conv3 = ConvBN(out, 1, switches, f"{name}_3", relu=False, **kw)
        self.project = None
        if strides != 1 or in_filters != out:
            self.project = ConvBN(out, 1, switches, f"{name}_proj", strides=strides, relu=False, **kw)

    def __call__(self, x, switch):
        shortcut = x if self.project is None else self.project(x, switch)
        y = self.conv3(self.conv2(self.conv1(x, switch), switch), switch)
        return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


class ClassifierHead:
    """Global average pooling -> per-device partial logits -> sum on device 0."""

    def __init__(self, num_classes, switches, name="head"):
        self.dense = SplitDense(num_classes, switches, partial_outputs=True, name=f"{name}_logits")
        self.fusion = PartialSumFusion(switches, name=f"{name}_fusion")

    def __call__(self, x, switch):
        x = keras.layers.GlobalAveragePooling2D()(x)  # (B, H, W, C) -> (B, C)
        partials = self.dense(x, switch=switch)  # (B, D, classes)
        return self.fusion(partials, switch=switch)  # (B, classes)


def check_classifier_args(num_classes, input_shape, width):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, received {num_classes!r}.")
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(isinstance(s, int) and s > 0 for s in input_shape)
    ):
        raise ValueError(
            f"input_shape must be (height, width, channels) of positive ints, received {input_shape!r}."
        )
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a positive number, received {width!r}.")
    return tuple(input_shape)
