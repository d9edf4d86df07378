"""Argument checks and output geometry shared by the split convolutions."""

from __future__ import annotations

import math

from paradis_tf.layers._base import _positive_int


def pair(value, what: str) -> tuple:
    """An int or a pair of positive ints, as a pair."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ValueError(f"{what} must be an int or a pair of ints, received {value!r}.")
    return tuple(_positive_int(v, what) for v in value)


def conv_geometry(kernel_size, strides, padding, dilation_rate, layer: str) -> tuple:
    """Validated ``(kernel_size, strides, padding, dilation_rate)`` of a 2D conv."""
    kernel_size = pair(kernel_size, "kernel_size")
    strides = pair(strides, "strides")
    dilation_rate = pair(dilation_rate, "dilation_rate")
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ValueError(
            f"strides={strides} and dilation_rate={dilation_rate} cannot both exceed 1 "
            f"(as in keras.layers.{layer})."
        )
    padding = padding.lower() if isinstance(padding, str) else padding
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', received {padding!r}.")
    return kernel_size, strides, padding, dilation_rate


def output_positions(input_shape, kernel_size, strides, padding, dilation_rate) -> int:
    """Output pixels per sample of a 2D conv on ``(B, H, W, C)``."""

    def size(n, axis):
        if padding == "same":
            return math.ceil(n / strides[axis])
        span = (kernel_size[axis] - 1) * dilation_rate[axis] + 1
        return (n - span) // strides[axis] + 1

    return size(int(input_shape[-3]), 0) * size(int(input_shape[-2]), 1)
