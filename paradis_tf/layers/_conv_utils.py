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


def _output_size(n, axis, kernel_size, strides, padding, dilation_rate):
    """Output length along spatial ``axis`` of an input of length ``n`` (None: unknown)."""
    if n is None:
        return None
    if padding == "same":
        return math.ceil(n / strides[axis])
    span = (kernel_size[axis] - 1) * dilation_rate[axis] + 1  # receptive field
    return (n - span) // strides[axis] + 1


def conv_output_shape(input_shape, channels, kernel_size, strides, padding, dilation_rate, owner) -> tuple:
    """``(B, H, W, Cin)`` -> ``(B, H', W', channels)`` of a 2D conv; unknown axes stay None.

    Raises a ValueError naming ``owner`` for an input that is not 4D or too
    small for a ``"valid"`` window.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 4:
        raise ValueError(
            f"{owner}: expects inputs (B, H, W, C), received input shape {input_shape}."
        )
    geometry = (kernel_size, strides, padding, dilation_rate)
    h, w = (_output_size(input_shape[1 + a], a, *geometry) for a in (0, 1))
    if (h is not None and h < 1) or (w is not None and w < 1):
        raise ValueError(
            f"{owner}: input shape {input_shape} is smaller than the window of "
            f"kernel_size={kernel_size} and dilation_rate={dilation_rate} with "
            f"padding='{padding}': give a larger input or padding='same'."
        )
    return (input_shape[0], h, w, channels)


def output_positions(input_shape, kernel_size, strides, padding, dilation_rate) -> int:
    """Output pixels per sample of a 2D conv on ``(B, H, W, C)``."""
    geometry = (kernel_size, strides, padding, dilation_rate)
    return _output_size(int(input_shape[-3]), 0, *geometry) * _output_size(
        int(input_shape[-2]), 1, *geometry
    )
