"""first_device_conv: a FirstDeviceConv2D, a convolution of the replicated
input that only device 0 computes (WDSR's skip branch).

Keras gives it the partial-output layout ``(1, H', W', D, Cout)``: the
convolution in device 0's slot, zeros in the others. Device 0 holds the
image (it feeds it), so it runs one ordinary ``conv`` device op over the
whole image with the layer's effective kernel (``layer.kernel``: weight
normalization applied); devices 1..D-1 run nothing and hold no slot of it
(``LogicalGraph.partials``: ``(0,)``), so an Add of it to a split layer's
partial outputs is the split layer's slot alone there. No traffic.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from paradis_export._graph import Op, _unsupported
from paradis_export.kinds._registry import OpKind, register
from paradis_export.partitioner import DeviceOp
from paradis_tf.layers.first_device_conv2d import FirstDeviceConv2D

# Device 0 feeds the image (the fusion graph's input device), so the branch
# is computed there.
_DEVICE = 0


class FirstDeviceConv(OpKind):
    kind = "first_device_conv"
    layer_types = (FirstDeviceConv2D,)
    device_kinds = ()  # device 0 runs a built-in ``conv`` device op

    def trace(self, layer, sw, ins, output, graph) -> list:
        if ins[0] not in graph.replicated:
            raise _unsupported(layer, f"input {ins[0]} is not the replicated image: a FirstDeviceConv2D convolves "
                                      "the model input that every device holds")
        graph.partials[output] = (_DEVICE,)
        return [Op("first_device_conv", layer.name, ins, output, {
            "kernel": np.asarray(ops.convert_to_numpy(layer.kernel), "float32"),  # (kh, kw, Cin, Cout), effective
            "bias": None if layer.bias is None else np.asarray(ops.convert_to_numpy(layer.bias), "float32"),
            "strides": layer.strides, "padding": layer.padding, "dilation_rate": layer.dilation_rate,
        })]

    def device_ops(self, op, k, ctx) -> list:
        if k != _DEVICE:
            return []  # a zero slot: nothing stored, computed or sent
        p = op.params
        bias = p["bias"] if p["bias"] is not None and np.any(p["bias"]) else None  # the converter drops zeros
        # The whole image (1, H, W, Cin) -> device 0's slot (1, H', W', Cout).
        return [DeviceOp("conv", op.name, [op.inputs[0]], ctx.local(op.output, k), {
            "kernel": p["kernel"], "bias": bias, "activation": None,
            "strides": p["strides"], "padding": p["padding"], "dilation_rate": p["dilation_rate"],
        })]


register(FirstDeviceConv())
