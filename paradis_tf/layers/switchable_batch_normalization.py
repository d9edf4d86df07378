"""SwitchableBatchNormalization: private statistics and affine per switch."""

from __future__ import annotations

import keras
from keras import ops

from paradis_tf.layers._base import SwitchedLayer
from paradis_tf.layers._cost import LayerCost

__all__ = ["SwitchableBatchNormalization"]


@keras.saving.register_keras_serializable(package="paradis_tf")
class SwitchableBatchNormalization(SwitchedLayer):
    """Batch normalization on the last axis with one set of variables per switch.

    Switches see different channel mixes (a device's inputs change with the
    gates and the width), so each keeps its own moving mean and variance and its
    own gamma and beta (switchable batch norm, slimmable networks). Per channel
    it is local: it never communicates. Inactive channels are zeroed.

    Args:
        switches: the SwitchSet the model serves.
        momentum, epsilon, center, scale, initializers, synchronized: as
            ``keras.layers.BatchNormalization`` (``synchronized`` computes
            batch statistics across the replicas of a distribution strategy,
            so a step on N replicas equals one step on the whole batch).

    Call arguments:
        inputs: ``(B, ..., C)``; switch: index or name (required); training:
        batch statistics (and moving-statistic updates) when True.
    """

    def __init__(
        self,
        switches,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        synchronized=False,
        **kwargs,
    ):
        super().__init__(switches, **kwargs)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), received {momentum!r}.")
        if not float(epsilon) > 0.0:
            raise ValueError(f"epsilon must be > 0, received {epsilon!r}.")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.synchronized = bool(synchronized)
        self.scale = bool(scale)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.moving_mean_initializer = keras.initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = keras.initializers.get(moving_variance_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"SwitchableBatchNormalization '{self.name}': the channel axis must be "
                f"known, received input shape {tuple(input_shape)}."
            )
        self.channels = int(channels)
        self._ranges = [self.channel_ranges(self.channels, i) for i in range(len(self.switches))]
        self._active = [self.active_mask(self.channels, i) for i in range(len(self.switches))]
        shape = (self.channels,)
        self.gammas, self.betas, self.moving_means, self.moving_variances = [], [], [], []
        for i in range(len(self.switches)):
            self.gammas.append(
                self.add_weight(name=f"gamma_{i}", shape=shape, initializer=self.gamma_initializer)
                if self.scale
                else None
            )
            self.betas.append(
                self.add_weight(name=f"beta_{i}", shape=shape, initializer=self.beta_initializer)
                if self.center
                else None
            )
            self.moving_means.append(
                self.add_weight(
                    name=f"moving_mean_{i}",
                    shape=shape,
                    initializer=self.moving_mean_initializer,
                    trainable=False,
                )
            )
            self.moving_variances.append(
                self.add_weight(
                    name=f"moving_variance_{i}",
                    shape=shape,
                    initializer=self.moving_variance_initializer,
                    trainable=False,
                )
            )

    def call(self, inputs, switch=None, training=None):
        i = self.switch_index(switch)
        compute_dtype = inputs.dtype
        # Statistics in float32 even under mixed precision (as Keras does).
        x = ops.cast(inputs, "float32") if compute_dtype in ("float16", "bfloat16") else inputs
        moving_mean, moving_variance = self.moving_means[i], self.moving_variances[i]
        if training and self.trainable:
            axes = list(range(len(x.shape) - 1))
            mean, variance = ops.moments(x, axes=axes, synchronized=self.synchronized)  # (C,), (C,)
            m = self.momentum
            moving_mean.assign(moving_mean * m + ops.cast(mean, moving_mean.dtype) * (1.0 - m))
            moving_variance.assign(
                moving_variance * m + ops.cast(variance, moving_variance.dtype) * (1.0 - m)
            )
        else:
            mean = ops.cast(moving_mean, x.dtype)
            variance = ops.cast(moving_variance, x.dtype)
        gamma = None if self.gammas[i] is None else ops.cast(self.gammas[i], x.dtype)
        beta = None if self.betas[i] is None else ops.cast(self.betas[i], x.dtype)
        outputs = ops.batch_normalization(
            x, mean, variance, axis=-1, offset=beta, scale=gamma, epsilon=self.epsilon
        )
        active = self._active[i]
        if active is not None:
            outputs = outputs * ops.cast(active, outputs.dtype)  # (B, ..., C) * (C,)
        return ops.cast(outputs, compute_dtype)

    def compute_output_shape(self, input_shape, switch=None):
        """The input shape, whatever the switch."""
        self._check_switch(switch)  # an unknown switch is an error here too
        return tuple(input_shape)

    def switch_cost(self, switch, input_shape, bytes_per_element: int = 4) -> LayerCost:
        # gamma, beta, moving mean and variance of the device's own channels.
        per_channel = 2 + int(self.scale) + int(self.center)
        n = [len(r) for r in self._ranges[self.switch_index(switch)]]
        return LayerCost.local([per_channel * c for c in n], [0] * len(n))

    def unsplit_cost(self, input_shape) -> tuple[int, int]:
        return (2 + int(self.scale) + int(self.center)) * self.channels, 0

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "synchronized": self.synchronized,
                "beta_initializer": keras.initializers.serialize(self.beta_initializer),
                "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": keras.initializers.serialize(
                    self.moving_mean_initializer
                ),
                "moving_variance_initializer": keras.initializers.serialize(
                    self.moving_variance_initializer
                ),
            }
        )
        return config
