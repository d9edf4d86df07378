"""pixel_shuffle: a PixelShuffle on partial outputs, per device.

Depth to space is linear and acts on each device's slot alone, so it
commutes with the fusion's sum: device k shuffles its own partial,
``(1, H, W, r*r*C) -> (1, rH, rW, C)``, with TFLite's builtin
``DEPTH_TO_SPACE``, whose channel order (``(i*r + j)*C + c`` to sub-pixel
``(i, j)``, colour ``c``) is the layer's. No traffic.

On a channel-partitioned tensor ``(1, H, W, C)`` a pixel's ``r*r*C``
channels live on several devices and the shuffle would mix them: refused.
"""

from __future__ import annotations

import keras

from paradis_export._graph import Op, _unsupported
from paradis_export.kinds._registry import OpKind, register
from paradis_export.partitioner import DeviceOp
from paradis_tf.layers.pixel_shuffle import PixelShuffle


class _DepthToSpace(keras.layers.Layer):
    """(B, H, W, r*r*C) -> (B, rH, rW, C): TFLite's DEPTH_TO_SPACE.

    ``tf.nn.depth_to_space`` rather than keras.ops' reshape and 6-D
    transpose: the converter maps it to the one builtin op (delegated by
    XNNPACK, float32 and int8). Stage models only run where export runs,
    on the TensorFlow backend (``export_switch`` checks it)."""

    def __init__(self, block_size, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, x):
        import tensorflow as tf

        return tf.nn.depth_to_space(x, self.block_size)

    def compute_output_shape(self, input_shape):
        r = self.block_size
        b, h, w, c = input_shape
        return (b, h * r, w * r, c // (r * r))


class PixelShuffleKind(OpKind):
    kind = "pixel_shuffle"
    layer_types = (PixelShuffle,)
    device_kinds = ("depth_to_space",)
    partial_inputs = True

    def trace(self, layer, sw, ins, output, graph) -> list:
        if ins[0] not in graph.partials:
            raise _unsupported(layer, f"input {ins[0]} of shape {graph.shapes[ins[0]]} is channel-partitioned across "
                                      "devices and a pixel shuffle mixes a pixel's channels: shuffle the partial "
                                      "outputs (B, H, W, D, C) of a split layer built with partial_outputs=True")
        graph.partials[output] = graph.partials[ins[0]]  # the same slots, shuffled
        # r under TFLite's name: DeviceOp.num_params counts a "scale" entry (a batch norm's) as parameters.
        return [Op("pixel_shuffle", layer.name, ins, output, {"block_size": layer.scale})]

    def device_ops(self, op, k, ctx) -> list:
        if not ctx.graph.holds(op.inputs[0], k):
            return []  # a zero slot shuffles to zeros
        # Device k's slot (1, H, W, r*r*C) -> (1, rH, rW, C).
        return [DeviceOp("depth_to_space", op.name, [ctx.local(op.inputs[0], k)], ctx.local(op.output, k),
                         dict(op.params))]

    def stage_layer(self, device_op):
        return _DepthToSpace(device_op.params["block_size"], name=device_op.name)


register(PixelShuffleKind())
