"""SplitMultiHeadAttention: self-attention whose heads are spread over devices."""

from __future__ import annotations

import math

import numpy as np
import keras
from keras import ops

from paradis_tf.layers._base import SplitLinearLayer, _positive_int
from paradis_tf.layers._cost import LayerCost

__all__ = ["SplitMultiHeadAttention"]


@keras.saving.register_keras_serializable(package="paradis_tf")
class SplitMultiHeadAttention(SplitLinearLayer):
    """``keras.layers.MultiHeadAttention`` (self-attention) over the devices of a switch.

    Heads are the unit of partition: with ``H`` heads of ``key_dim`` channels,
    device k of a switch owns a contiguous group of whole heads
    (``Switch.partition(H * key_dim, group=key_dim)``) and computes their
    query, key and value projections and their attention alone. The
    embedding channels (``E``, input and output) are partitioned as in every
    split layer (``Switch.partition(E)``). Two places communicate, both gated
    per switch in one gate matrix of ``E + H * key_dim`` rows:

    * rows ``[0, E)``: embedding channel c -> device k. One channel sent
      feeds the device's Q, K and V projections (one send, three uses).
    * rows ``[E, E + H * key_dim)``: head-output channel j -> device k, read
      by k's output projection (to k's embedding channels).

    Both are per token, so the traffic of an open gate is ``tokens x bytes``,
    as for a dense layer on tokens. With all gates open it is exactly
    ``MultiHeadAttention`` with the same weights; with all gates shut, each
    device runs independent attention on its own channels; narrower switches
    (``1x0.5``) use their whole heads only and keep inactive channels 0.

    Args:
        num_heads: H, heads; every device of every switch needs at least one.
        key_dim: channels per head (query, key and value alike).
        switches, gates, use_bias, initializers, regularizers: see
            ``SplitLinearLayer`` (no activation, replicated input or partial
            outputs here).

    Call arguments:
        inputs: tokens ``(B, T, E)`` or a token grid ``(B, h, w, E)`` (all
            ``h * w`` tokens attend to each other); the output has the same
            shape.
        switch: index or name of the switch (required).
        training: relaxes learned gates when True.

    Weights are laid out as ``MultiHeadAttention``'s: query/key/value kernels
    ``(E, H, key_dim)`` and biases ``(H, key_dim)``, output kernel
    ``(H, key_dim, E)`` and bias ``(E,)``, then the gates.
    """

    def __init__(self, num_heads, key_dim, switches, **kwargs):
        for arg in ("replicated_input", "partial_outputs", "activation"):
            if kwargs.get(arg):
                raise ValueError(
                    f"SplitMultiHeadAttention does not take {arg}={kwargs[arg]!r}: attention reads "
                    "split tokens and writes split tokens."
                )
        super().__init__(switches, **kwargs)
        self.num_heads = _positive_int(num_heads, "num_heads")
        self.key_dim = _positive_int(key_dim, "key_dim")
        for sw in self.switches:
            b = sw.boundaries(self.num_heads)
            per_device = [b1 - b0 for b0, b1 in zip(b, b[1:])]  # whole heads of each device
            if min(per_device) < 1:
                raise ValueError(
                    f"SplitMultiHeadAttention '{self.name}': num_heads={self.num_heads} cannot be divided "
                    f"among the {sw.num_devices} devices of switch '{sw}' so that each owns at least one "
                    f"whole head (heads per device would be {per_device}); use more heads or leave that "
                    "switch out."
                )

    @property
    def head_channels(self) -> int:
        """H * key_dim: the channels of all heads together."""
        return self.num_heads * self.key_dim

    # -- build ----------------------------------------------------------------
    def build(self, input_shape):
        e = input_shape[-1]
        if e is None or len(input_shape) < 3:
            raise ValueError(
                f"SplitMultiHeadAttention '{self.name}': expects tokens (B, T, E) or (B, h, w, E) with a "
                f"known E, received input shape {tuple(input_shape)}."
            )
        self.embed_dim = int(e)
        # The gate matrix's rows: E embedding channels, then H * key_dim head
        # channels (see the class doc). The gate machinery of the base reads
        # in_channels as that row count.
        self.in_channels = self.embed_dim + self.head_channels
        h, dh, e = self.num_heads, self.key_dim, self.embed_dim

        def kernel(name, shape):
            return self.add_weight(name=name, shape=shape, initializer=self.kernel_initializer,
                                   regularizer=self.kernel_regularizer)

        def bias(name, shape):
            if not self.use_bias:
                return None
            return self.add_weight(name=name, shape=shape, initializer=self.bias_initializer,
                                   regularizer=self.bias_regularizer)

        # MultiHeadAttention's order and shapes, so set_weights carries over.
        self.query_kernel, self.query_bias = kernel("query_kernel", (e, h, dh)), bias("query_bias", (h, dh))
        self.key_kernel, self.key_bias = kernel("key_kernel", (e, h, dh)), bias("key_bias", (h, dh))
        self.value_kernel, self.value_bias = kernel("value_kernel", (e, h, dh)), bias("value_bias", (h, dh))
        self.output_kernel, self.output_bias = kernel("output_kernel", (h, dh, e)), bias("output_bias", (e,))
        self._plans = [self._plan(i) for i in range(len(self.switches))]
        # Logits, pins, thresholds, held cut states and EMAs per learned
        # switch, as every split layer (rows: the in_channels above).
        self._build_gates()

    def head_ranges(self, switch) -> tuple:
        """Each device's head-channel range ``[a, b)`` (multiples of key_dim)."""
        return self.switches[self.switch_index(switch)].partition(self.head_channels, group=self.key_dim)

    def _plan(self, index: int) -> dict:
        switch = self.switches[index]
        d = switch.num_devices
        e, hc = self.embed_dim, self.head_channels
        emb_ranges = self.channel_ranges(e, index)
        head_ranges = switch.partition(hc, group=self.key_dim)
        local = np.zeros((e + hc, d), dtype="float32")  # (E + H*dh, D)
        assign_heads = np.zeros((d, hc), dtype="float32")  # (D, H*dh): who computes a head channel
        assign_emb = np.zeros((d, e), dtype="float32")  # (D, E): who computes an output channel
        for k, (re, rh) in enumerate(zip(emb_ranges, head_ranges)):
            local[re.start : re.stop, k] = 1.0
            local[e + rh.start : e + rh.stop, k] = 1.0
            assign_heads[k, rh.start : rh.stop] = 1.0
            assign_emb[k, re.start : re.stop] = 1.0
        active = local.max(axis=1, keepdims=True)  # (E + H*dh, 1)
        remote = active - local  # (E + H*dh, D)
        mode = self.gates.mode_for(switch)
        has_remote = bool(remote.any())
        plan = {
            "num_devices": d,
            "emb_ranges": emb_ranges,
            "head_ranges": head_ranges,
            "local": local,
            "remote": remote,
            "assign_heads": assign_heads,
            "assign_emb": assign_emb,
            "mode": mode if has_remote else "shut",
            "learned": has_remote and mode == "learned",
            "head_active": None if head_ranges[-1].stop == hc else assign_heads.sum(axis=0),  # (H*dh,)
            "emb_active": None if emb_ranges[-1].stop == e else assign_emb.sum(axis=0),  # (E,)
        }
        if not plan["learned"]:
            gate = local + (remote if plan["mode"] == "open" else 0.0)
            plan["static_gate"] = gate
            if gate.min() == 1.0:
                plan["static_masks"] = None  # every gate open, every channel active
            else:
                plan["static_masks"] = (gate[:e] @ assign_heads, gate[e:] @ assign_emb)
        return plan

    def _masks(self, index: int, training: bool):
        """(Q/K/V mask (E, H*dh), output mask (H*dh, E)), or None when all ones."""
        plan = self._plans[index]
        if not plan["learned"]:
            return plan["static_masks"]
        gate = self._gate_matrix(index, training)  # (E + H*dh, D)
        e = self.embed_dim
        m_in = ops.matmul(gate[:e], ops.cast(plan["assign_heads"], gate.dtype))  # (E, D) @ (D, H*dh)
        m_out = ops.matmul(gate[e:], ops.cast(plan["assign_emb"], gate.dtype))  # (H*dh, D) @ (D, E)
        # Decided in float32 (the logits are not autocast), applied in the compute dtype.
        return ops.cast(m_in, self.compute_dtype), ops.cast(m_out, self.compute_dtype)

    def gate_weight_norms(self, switch):
        """(E + H*dh, D) L2 norm of the kernel entries each gate carries: an
        embedding channel's rows of the query, key and value kernels into
        device k's heads, and a head channel's row of the output kernel into
        device k's embedding channels (the gate matrix's two row blocks)."""
        plan = self._plans[self.switch_index(switch)]
        e, hc = self.embed_dim, self.head_channels
        qkv = sum(ops.square(ops.reshape(ops.cast(w, "float32"), (e, hc)))
                  for w in (self.query_kernel, self.key_kernel, self.value_kernel))  # (E, H*dh)
        out = ops.square(ops.reshape(ops.cast(self.output_kernel, "float32"), (hc, e)))  # (H*dh, E)
        into_heads = ops.matmul(qkv, ops.transpose(ops.cast(plan["assign_heads"], "float32")))  # (E, D)
        into_emb = ops.matmul(out, ops.transpose(ops.cast(plan["assign_emb"], "float32")))  # (H*dh, D)
        return ops.sqrt(ops.concatenate([into_heads, into_emb], axis=0))  # (E + H*dh, D)

    # -- forward --------------------------------------------------------------
    def compute_output_shape(self, input_shape, switch=None):
        self._check_switch(switch)
        return tuple(input_shape)

    def call(self, inputs, switch=None, training=None):
        index = self.switch_index(switch)
        plan = self._plans[index]
        h, dh, e, hc = self.num_heads, self.key_dim, self.embed_dim, self.head_channels
        shape = tuple(inputs.shape)
        tokens = int(np.prod(shape[1:-1], dtype=np.int64))
        x = ops.reshape(inputs, (-1, tokens, e))  # (B, ..., E) -> (B, T, E)
        masks = self._masks(index, bool(training))
        kernels = [ops.reshape(w, (e, hc)) for w in (self.query_kernel, self.key_kernel, self.value_kernel)]
        w_out = ops.reshape(self.output_kernel, (hc, e))  # (H, dh, E) -> (H*dh, E)
        if masks is not None:
            m_in, m_out = masks
            kernels = [k * ops.cast(m_in, k.dtype) for k in kernels]  # (E, H*dh) * (E, H*dh)
            w_out = w_out * ops.cast(m_out, w_out.dtype)  # (H*dh, E) * (H*dh, E)
        heads = []
        for kernel, b in zip(kernels, (self.query_bias, self.key_bias, self.value_bias)):
            y = ops.matmul(x, kernel)  # (B, T, E) @ (E, H*dh) -> (B, T, H*dh)
            if b is not None:
                b = ops.reshape(b, (hc,))
                if plan["head_active"] is not None:
                    b = b * ops.cast(plan["head_active"], b.dtype)  # inactive heads stay 0
                y = y + b
            # (B, T, H*dh) -> (B, T, H, dh) -> (B, H, T, dh): each head on its own.
            heads.append(ops.transpose(ops.reshape(y, (-1, tokens, h, dh)), (0, 2, 1, 3)))
        q, k, v = heads
        q = q * ops.cast(1.0 / math.sqrt(dh), q.dtype)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))  # (B, H, T, dh) @ (B, H, dh, T) -> (B, H, T, T)
        # A head is computed by the one device that owns it, from what that
        # device holds: softmax and the weighted sum are local to it. An
        # inactive head has q = k = v = 0: uniform weights on zeros, output 0.
        probs = ops.softmax(scores, axis=-1)
        o = ops.matmul(probs, v)  # (B, H, T, T) @ (B, H, T, dh) -> (B, H, T, dh)
        o = ops.reshape(ops.transpose(o, (0, 2, 1, 3)), (-1, tokens, hc))  # -> (B, T, H, dh) -> (B, T, H*dh)
        y = ops.matmul(o, w_out)  # (B, T, H*dh) @ (H*dh, E) -> (B, T, E)
        if self.output_bias is not None:
            b = self.output_bias
            if plan["emb_active"] is not None:
                b = b * ops.cast(plan["emb_active"], b.dtype)
            y = y + b
        return ops.reshape(y, (-1,) + shape[1:])  # (B, T, E) -> (B, ..., E)

    # -- accounting -----------------------------------------------------------
    def switch_cost(self, switch, input_shape, bytes_per_element: int = 4) -> LayerCost:
        index = self.switch_index(switch)
        plan = self._plans[index]
        e = self.embed_dim
        tokens = int(np.prod([int(s) for s in input_shape[1:-1]], dtype=np.int64))
        g = self.gate_values(index)  # (E + H*dh, D) binary
        reads_emb = g[:e].sum(axis=0).astype(np.int64)  # (D,) embedding channels each device reads
        reads_heads = g[e:].sum(axis=0).astype(np.int64)  # (D,) head channels each device reads
        own_heads = np.array([len(r) for r in plan["head_ranges"]], dtype=np.int64)
        own_emb = np.array([len(r) for r in plan["emb_ranges"]], dtype=np.int64)
        bias = int(self.use_bias)
        params = 3 * (reads_emb * own_heads + bias * own_heads) + reads_heads * own_emb + bias * own_emb
        flops = (2 * tokens * 3 * reads_emb * own_heads  # Q, K, V projections
                 + 2 * 2 * tokens * tokens * own_heads  # QK^T and (softmax) V of its heads
                 + 2 * tokens * reads_heads * own_emb)  # output projection
        remote_g = g * plan["remote"]
        elems = tokens * bytes_per_element
        sent = (plan["local"].T @ remote_g).sum(axis=1)  # rows grouped by owner
        dense_sent = (plan["local"].T @ plan["remote"]).sum(axis=1)
        to_int = lambda a: tuple(int(round(v)) for v in np.asarray(a).tolist())
        zeros = (0,) * plan["num_devices"]
        return LayerCost(to_int(params), to_int(flops), to_int(sent * elems), to_int(remote_g.sum(axis=0) * elems),
                         to_int(dense_sent * elems), zeros, zeros)

    def unsplit_cost(self, input_shape) -> tuple[int, int]:
        e, hc = int(input_shape[-1]), self.head_channels
        tokens = int(np.prod([int(s) for s in input_shape[1:-1]], dtype=np.int64))
        bias = int(self.use_bias)
        params = 3 * (e * hc + bias * hc) + hc * e + bias * e
        flops = 2 * tokens * 3 * e * hc + 4 * tokens * tokens * hc + 2 * tokens * hc * e
        return int(params), int(flops)

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "key_dim": self.key_dim})
        return config
