"""WeightNormSplitConv2D: SplitConv2D with a weight-normalized kernel (WDSR)."""

from __future__ import annotations

import keras
from keras import ops

from paradis_tf.layers.split_conv2d import SplitConv2D

__all__ = ["WeightNormSplitConv2D", "weight_normalized"]

# Guards the division for an all-zero output column (never hit by a trained
# kernel; keeps the gradient finite if one is zeroed by hand).
_EPSILON = 1e-12


def weight_normalized(direction, gain):
    """``gain * direction / ||direction||`` with the norm per output channel.

    ``direction`` (kh, kw, Cin, Cout), ``gain`` (Cout,) -> (kh, kw, Cin, Cout):
    the norm runs over kh, kw and Cin (Salimans & Kingma, 2016), so each
    output channel's filter has length ``gain[o]``.
    """
    v = ops.cast(direction, "float32")
    norm = ops.sqrt(ops.maximum(ops.sum(ops.square(v), axis=(0, 1, 2)), _EPSILON))  # (Cout,)
    kernel = v * (ops.cast(gain, "float32") / norm)  # (kh, kw, Cin, Cout) * (Cout,)
    return ops.cast(kernel, direction.dtype)


@keras.saving.register_keras_serializable(package="paradis_tf")
class WeightNormSplitConv2D(SplitConv2D):
    """``SplitConv2D`` whose kernel is ``g * v / ||v||`` (weight normalization).

    The layer trains a direction ``v`` (the variable named ``kernel`` in a
    checkpoint, attribute ``kernel_direction``) and a gain ``g`` per output
    channel (``kernel_gain``, initialized to ``||v||`` so the first forward pass
    equals a plain SplitConv2D with the same initial kernel). Reading
    ``layer.kernel`` returns the *effective* kernel ``g * v / ||v||``: the
    forward pass, the accounting and an exporter that reads ``layer.kernel``
    (as it does for SplitConv2D) all see the kernel the layer computes with,
    so export treats this layer as a SplitConv2D. Gates, partitions and the
    per-switch masks apply to the effective kernel, exactly as to a
    SplitConv2D's kernel.

    Args: as ``SplitConv2D``.
    """

    # The base class creates its kernel with ``self.kernel = add_weight(...)``:
    # the setter keeps that variable as the direction v.
    @property
    def kernel(self):
        """The effective kernel ``g * v / ||v||`` (kh, kw, Cin, Cout), a tensor."""
        return weight_normalized(self.kernel_direction, self.kernel_gain)

    @kernel.setter
    def kernel(self, variable):
        self.kernel_direction = variable

    def build(self, input_shape):
        super().build(input_shape)
        self.kernel_gain = self.add_weight(
            name="kernel_g", shape=(self.filters,), initializer="ones"
        )
        # g = ||v|| at initialization: the effective kernel starts as v itself.
        v = ops.convert_to_tensor(self.kernel_direction)
        self.kernel_gain.assign(ops.sqrt(ops.maximum(ops.sum(ops.square(v), axis=(0, 1, 2)), _EPSILON)))
