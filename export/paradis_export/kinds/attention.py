"""attention: a SplitMultiHeadAttention, heads partitioned across devices.

Traced as five logical ops on the token grid (1, h, w, C):

    q, k, v   1x1 ``conv`` E -> H*dh, gated on the embedding rows of the
              layer's gate matrix (one send of a channel serves all three);
    attention softmax(q k^T / sqrt(dh)) v of whole heads, on the device that
              owns them (this kind);
    output    1x1 ``conv`` H*dh -> E, gated on the head-channel rows.

The head tensors are partitioned by whole heads (``Switch.partition(C,
group=dh)``) and keep their natural channel order on every device: a head's
channels are read together, in order, by its attention.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from paradis_export._graph import Op, _unsupported
from paradis_export.kinds._registry import OpKind, register
from paradis_export.partitioner import DeviceOp
from paradis_tf.layers.split_multi_head_attention import SplitMultiHeadAttention


def _numpy(v) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(v), dtype="float32")


class _HeadAttention(keras.layers.Layer):
    """softmax(q k^T / sqrt(dh)) v for each of the device's whole heads, on a
    token grid: RESHAPE, TRANSPOSE, BATCH_MATMUL, SOFTMAX (builtin ops)."""

    def __init__(self, key_dim, **kwargs):
        super().__init__(**kwargs)
        self.key_dim = int(key_dim)

    def call(self, inputs):
        q, k, v = inputs  # (B, h, w, n * dh) each, n heads in order
        shape = tuple(q.shape)
        tokens, channels = shape[1] * shape[2], shape[3]
        heads = channels // self.key_dim

        def split(t):  # (B, h, w, n*dh) -> (B, T, n, dh) -> (B, n, T, dh)
            return ops.transpose(ops.reshape(t, (-1, tokens, heads, self.key_dim)), (0, 2, 1, 3))

        q, k, v = split(q) * (1.0 / float(np.sqrt(self.key_dim))), split(k), split(v)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))  # (B, n, T, dh) @ (B, n, dh, T) -> (B, n, T, T)
        o = ops.matmul(ops.softmax(scores, axis=-1), v)  # (B, n, T, T) @ (B, n, T, dh) -> (B, n, T, dh)
        # (B, n, T, dh) -> (B, T, n, dh) -> (B, h, w, n*dh)
        return ops.reshape(ops.transpose(o, (0, 2, 1, 3)), (-1,) + shape[1:])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


class Attention(OpKind):
    kind = "attention"
    layer_types = (SplitMultiHeadAttention,)
    device_kinds = ("attention",)
    int8 = False  # not yet: see exporter.export_switch

    def trace(self, layer, sw, ins, output, graph) -> list:
        if ins[0] in graph.replicated:
            raise _unsupported(layer, "attention on the replicated input")
        shape = graph.shapes[ins[0]]
        if len(shape) != 4:
            raise _unsupported(layer, f"tokens of shape {shape}: the exporter takes a token grid (1, h, w, E)")
        e, hc, dh = layer.embed_dim, layer.head_channels, layer.key_dim
        gates = layer.gate_values(layer.switch_index(sw.name))  # (E + H*dh, D)
        result, names = [], {}
        for part in ("query", "key", "value"):
            t = names[part] = f"{output}_{part[0]}"
            graph.shapes[t] = shape[:-1] + (hc,)  # (1, h, w, H*dh)
            graph.groups[t] = dh
            graph.fixed_order.add(t)
            bias = getattr(layer, f"{part}_bias")
            result.append(Op("conv", f"{layer.name}_{part}", [ins[0]], t, {
                # (E, H, dh) -> (1, 1, E, H*dh): a 1x1 layer on the grid.
                "kernel": _numpy(getattr(layer, f"{part}_kernel")).reshape(1, 1, e, hc),
                "bias": None if bias is None else _numpy(bias).reshape(hc),
                "gates": gates[:e], "dense": True, "activation": None,
            }))
        heads = f"{output}_heads"
        graph.shapes[heads] = shape[:-1] + (hc,)
        graph.groups[heads] = dh
        graph.fixed_order.add(heads)
        result.append(Op("attention", f"{layer.name}_heads", [names["query"], names["key"], names["value"]],
                         heads, {"key_dim": dh}))
        result.append(Op("conv", f"{layer.name}_output", [heads], output, {
            "kernel": _numpy(layer.output_kernel).reshape(1, 1, hc, e),  # (H, dh, E) -> (1, 1, H*dh, E)
            "bias": None if layer.output_bias is None else _numpy(layer.output_bias),
            "gates": gates[e:], "dense": True, "activation": None,
        }))
        return result

    def device_ops(self, op, k, ctx) -> list:
        # The device's q, k, v hold exactly its own heads (fixed order).
        return [DeviceOp("attention", op.name, [ctx.local(t, k) for t in op.inputs], ctx.local(op.output, k),
                         dict(op.params))]

    def stage_layer(self, device_op):
        return _HeadAttention(device_op.params["key_dim"], name=device_op.name)

    def flops(self, device_op, shapes) -> int:
        out = shapes[device_op.output]
        tokens = int(np.prod(out[1:-1]))
        # q k^T and (softmax) v: 2 x T x T x (the device's head channels) each.
        return 4 * tokens * tokens * out[-1]


register(Attention())
