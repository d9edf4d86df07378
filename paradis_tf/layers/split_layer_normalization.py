"""SplitLayerNormalization: layer norm over channels spread over devices."""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from paradis_tf.layers._base import SwitchedLayer
from paradis_tf.layers._cost import LayerCost

__all__ = ["SplitLayerNormalization"]

# Each device sends, per token, two numbers to every other device: the mean
# and the sum of squared deviations of its own channels (see the class doc).
STATISTICS_PER_TOKEN = 2


@keras.saving.register_keras_serializable(package="paradis_tf")
class SplitLayerNormalization(SwitchedLayer):
    """``keras.layers.LayerNormalization`` on the last axis, exact on every switch.

    Layer norm needs the mean and variance of all of a token's channels, and
    in a switch each device holds only its own. Per token, device k computes
    over its ``n_k`` channels the mean ``m_k`` and the sum of squared
    deviations ``M2_k`` (two numbers), sends them to every other device, and
    every device combines them exactly (Chan et al.'s parallel variance):

        mean = sum_k n_k m_k / n,   var = (sum_k M2_k + n_k (m_k - mean)^2) / n

    then normalizes its own channels with its own slice of gamma and beta.
    Unlike sending ``(sum x, sum x^2)``, this never subtracts two large
    numbers, so it stays exact in float32 when a token's mean is large.

    A switch that leaves channels inactive (``1x0.5``) is the slimmable
    sub-network: its LayerNormalization is over the active channels only
    (``n`` = the active channels, gamma and beta their first ``n``
    entries), which is exactly ``LayerNormalization`` of the narrow model.
    Normalizing over all ``C`` channels instead would count the zeros of the
    inactive ones and make the narrow model depend on the full width.
    Inactive channels stay zero. gamma and beta are shared by all switches
    (there are no moving statistics to keep apart, unlike batch norm).

    Args:
        switches: the SwitchSet the model serves.
        epsilon, center, scale, beta_initializer, gamma_initializer: as
            ``keras.layers.LayerNormalization`` (last axis only).

    Call arguments:
        inputs: ``(B, ..., C)``; switch: index or name (required).
    """

    def __init__(self, switches, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", **kwargs):
        super().__init__(switches, **kwargs)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"epsilon must be a number > 0, received {epsilon!r}.")
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"SplitLayerNormalization '{self.name}': the channel axis must be known, received "
                f"input shape {tuple(input_shape)}."
            )
        self.channels = int(channels)
        # Checks every switch can share the channels (each device owns one).
        self._ranges = [self.channel_ranges(self.channels, i) for i in range(len(self.switches))]
        self._active = [self.active_mask(self.channels, i) for i in range(len(self.switches))]
        self.gamma = (self.add_weight(name="gamma", shape=(self.channels,), initializer=self.gamma_initializer)
                      if self.scale else None)
        self.beta = (self.add_weight(name="beta", shape=(self.channels,), initializer=self.beta_initializer)
                     if self.center else None)

    def call(self, inputs, switch=None, training=None):
        index = self.switch_index(switch)
        active = self._active[index]  # (C,) 1/0, or None when every channel is active
        # Statistics in float32 under a half-precision policy (as keras'
        # LayerNormalization): float16 loses a token's variance.
        x = ops.cast(inputs, "float32") if inputs.dtype in ("float16", "bfloat16") else inputs
        if active is None:
            mean = ops.mean(x, axis=-1, keepdims=True)  # (B, ..., 1)
            var = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)  # (B, ..., 1)
        else:
            # Statistics of the n active channels only (the narrow sub-network's).
            m = ops.cast(active, x.dtype)  # (C,)
            n = float(active.sum())
            mean = ops.sum(x * m, axis=-1, keepdims=True) / n  # (B, ..., 1)
            var = ops.sum(ops.square((x - mean) * m), axis=-1, keepdims=True) / n  # (B, ..., 1)
        y = (x - mean) * ops.rsqrt(var + ops.cast(self.epsilon, x.dtype))  # (B, ..., C)
        if self.gamma is not None:
            y = y * ops.cast(self.gamma, y.dtype)
        if self.beta is not None:
            y = y + ops.cast(self.beta, y.dtype)
        if active is not None:
            y = y * ops.cast(active, y.dtype)  # inactive channels exactly 0
        return ops.cast(y, inputs.dtype)

    def compute_output_shape(self, input_shape, switch=None):
        self._check_switch(switch)
        return tuple(input_shape)

    def switch_cost(self, switch, input_shape, bytes_per_element: int = 4) -> LayerCost:
        """Params: each device its slice of gamma and beta. Traffic: per token,
        every device sends its two statistics to each of the ``D - 1`` others.
        No gate can remove it (the norm would not be exact), so it is reported
        with the fixed traffic (``fusion_bytes_*``), not the gated traffic the
        budget controls."""
        index = self.switch_index(switch)
        ranges = self._ranges[index]
        d = len(ranges)
        tokens = int(np.prod([int(s) for s in input_shape[1:-1]], dtype=np.int64))
        per_device = (int(self.scale) + int(self.center))
        params = tuple(per_device * len(r) for r in ranges)
        exchanged = (d - 1) * STATISTICS_PER_TOKEN * tokens * bytes_per_element
        traffic = tuple(exchanged for _ in range(d))
        zeros = (0,) * d
        return LayerCost(params, zeros, zeros, zeros, zeros, traffic, traffic)

    def unsplit_cost(self, input_shape) -> tuple[int, int]:
        return (int(self.scale) + int(self.center)) * int(input_shape[-1]), 0

    def get_config(self):
        config = super().get_config()
        config.update({
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": keras.initializers.serialize(self.beta_initializer),
            "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
        })
        return config
