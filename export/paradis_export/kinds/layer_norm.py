"""layernorm: a SplitLayerNormalization, exact on every switch.

Per token, device k computes over its own channels the mean ``m_k`` and the
sum of squared deviations ``M2_k`` (``ln_stats``, a (1, H, W, 2) tensor),
sends it whole to every other device (no gate: the norm must stay exact),
then combines everyone's (``ln_apply``, Chan et al.'s parallel variance,
which never subtracts two large numbers) and normalizes its own channels
with its slice of gamma and beta.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from paradis_export._graph import Op
from paradis_export.kinds._registry import OpKind, register
from paradis_export.partitioner import DeviceOp
from paradis_tf.layers.split_layer_normalization import SplitLayerNormalization


class _LayerNormStatistics(keras.layers.Layer):
    """(1, H, W, n_k) -> (1, H, W, 2): per token, the mean and the sum of
    squared deviations of the device's channels (MEAN, SUM, CONCATENATION)."""

    def call(self, x):
        mean = ops.mean(x, axis=-1, keepdims=True)  # (1, H, W, 1)
        m2 = ops.sum(ops.square(x - mean), axis=-1, keepdims=True)  # (1, H, W, 1)
        return ops.concatenate([mean, m2], axis=-1)  # (1, H, W, 2)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2,)


class _LayerNormApply(keras.layers.Layer):
    """Combines every device's statistics exactly, then normalizes the
    device's own channels:

        mean = sum_j n_j m_j / n,  var = (sum_j M2_j + n_j (m_j - mean)^2) / n

    Inputs: own channels (1, H, W, n_k), then the statistics (1, H, W, 2) of
    this device and of each other device; ``counts`` their channel counts."""

    def __init__(self, counts, gamma, beta, epsilon, **kwargs):
        super().__init__(**kwargs)
        self.counts = [int(n) for n in counts]
        self.gamma_value = np.asarray(gamma, "float32")
        self.beta_value = np.asarray(beta, "float32")
        self.epsilon = float(epsilon)

    def call(self, inputs):
        x, stats = inputs[0], inputs[1:]
        n = float(sum(self.counts))
        means = [s[..., 0:1] for s in stats]  # (1, H, W, 1) each
        mean = means[0] * (self.counts[0] / n)
        for m, nj in zip(means[1:], self.counts[1:]):
            mean = mean + m * (nj / n)
        m2 = None
        for s, m, nj in zip(stats, means, self.counts):
            term = s[..., 1:2] + ops.square(m - mean) * float(nj)  # (1, H, W, 1)
            m2 = term if m2 is None else m2 + term
        inv = ops.rsqrt(m2 * (1.0 / n) + self.epsilon)  # (1, H, W, 1)
        y = (x - mean) * inv  # (1, H, W, n_k)
        return y * ops.convert_to_tensor(self.gamma_value) + ops.convert_to_tensor(self.beta_value)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


class LayerNorm(OpKind):
    kind = "layernorm"
    layer_types = (SplitLayerNormalization,)
    device_kinds = ("ln_stats", "ln_apply")
    int8 = False  # not yet: see exporter.export_switch

    def trace(self, layer, sw, ins, output, graph) -> list:
        c = graph.shapes[ins[0]][-1]
        gamma = np.ones((c,), "float32") if layer.gamma is None else ops.convert_to_numpy(layer.gamma)
        beta = np.zeros((c,), "float32") if layer.beta is None else ops.convert_to_numpy(layer.beta)
        return [Op("layernorm", layer.name, ins, output,
                   {"gamma": np.asarray(gamma, "float32"), "beta": np.asarray(beta, "float32"),
                    "epsilon": layer.epsilon})]

    def links(self, op) -> list:
        return [(op.inputs[0], op.output)]  # per channel once the statistics are known

    def add_sends(self, op, ctx) -> None:
        # Device j's statistics (1, H, W, 2) go whole to every other device:
        # channels [0, 2) of {out}_stats_d{j}, one piece sent to each.
        t = op.inputs[0]
        stats = f"{op.output}_stats"
        shape = ctx.graph.shapes[t][:-1] + (2,)
        for j in range(ctx.num_devices):
            ctx.shapes[ctx.local(stats, j)] = shape
        for k in range(ctx.num_devices):
            for j in range(ctx.num_devices):
                if j == k:
                    continue
                others = [i for i in range(ctx.num_devices) if i != j]
                piece = ctx.piece_name(stats, j, others, 0, 2)
                ctx.pieces_in.setdefault((op.name, k), []).append((piece, len(ctx.ranges[t][j])))
                ctx.pieces_out.setdefault(ctx.local(stats, j), {})[piece] = (0, 2)
                ctx.shapes[piece] = shape
                ctx.sends[(piece, k)] = ctx.make_send(piece, ctx.local(stats, j), j, k, (0, 2))

    def device_ops(self, op, k, ctx) -> list:
        p = op.params
        x = ctx.local(op.inputs[0], k)
        c = ctx.perm(op.inputs[0], k)  # gamma and beta in the device's channel order
        stats = ctx.local(f"{op.output}_stats", k)
        received = ctx.pieces_in.get((op.name, k), [])
        apply = DeviceOp("ln_apply", op.name, [x, stats] + [name for name, _ in received], ctx.local(op.output, k), {
            "gamma": p["gamma"][c], "beta": p["beta"][c], "epsilon": p["epsilon"],
            "counts": [len(c)] + [n for _, n in received]})
        if received:
            apply.params["receives"] = True  # waits for the others' statistics: the stage starts here
        # Own statistics (1, H, W, n_k) -> (1, H, W, 2), sent before the wait.
        return [DeviceOp("ln_stats", f"{op.name}_stats", [x], stats), apply]

    def stage_layer(self, device_op):
        p = device_op.params
        if device_op.kind == "ln_stats":
            return _LayerNormStatistics(name=device_op.name)
        return _LayerNormApply(p["counts"], p["gamma"], p["beta"], p["epsilon"], name=device_op.name)


register(LayerNorm())
