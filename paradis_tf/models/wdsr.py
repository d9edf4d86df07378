"""WDSR: wide-activation super-resolution (Yu et al., 2018), WDSR-B blocks, as a split model.

Low-resolution RGB in [0, 1] -> super-resolved RGB (scale 2 or 3), in [0, 1]
up to the model's error (no clipping in the model: it would be an op after
the fusion). No mean is subtracted in the model: a constant shift of the input
is absorbed by the first convolution's bias, and the skip branch (a conv of
the image) carries the image's level to the output.

    head   WeightNormSplitConv2D 3x3, input replicated     (B, h, w, F)
    body   n WDSR-B blocks, each x + conv3x3(conv1x1_lowrank(relu(conv1x1_wide(x))))
           F -> F*expansion (wide, ReLU) -> F*low_rank (linear) -> F
    tail   WeightNormSplitConv2D 3x3, partial outputs       (B, h, w, D, 3r^2)
    skip   FirstDeviceConv2D 5x5 of the image (device 0)    (B, h, w, D, 3r^2)
           (starts as bicubic upsampling: BicubicSkipInitializer)
    tail + skip -> PixelShuffle(r) per device               (B, rh, rw, D, 3)
    -> PartialSumFusion                                     (B, rh, rw, 3)

Every convolution is weight-normalized (WDSR trains without batch norm).
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from paradis_tf.layers.first_device_conv2d import FirstDeviceConv2D
from paradis_tf.layers.gate_config import GateConfig
from paradis_tf.layers.partial_sum_fusion import PartialSumFusion
from paradis_tf.layers.pixel_shuffle import PixelShuffle
from paradis_tf.layers.weight_norm_split_conv2d import WeightNormSplitConv2D
from paradis_tf.models._classifier import SplitClassifier
from paradis_tf.switches import SwitchSet
from paradis_tf.training.task import Task

__all__ = ["WDSR", "PSNR", "BicubicSkipInitializer", "sr_task", "SCALES"]

SCALES = (2, 3)


def _keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (bicubic, a = -0.5, as Pillow's BICUBIC)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


@keras.saving.register_keras_serializable(package="paradis_tf")
class BicubicSkipInitializer(keras.initializers.Initializer):
    """Starts WDSR's skip branch (a conv to ``3 r^2`` channels, then
    PixelShuffle) as bicubic upsampling, so the body learns the residual to
    bicubic. The body's tail starts at its random init, so the untrained
    model is not yet the bicubic baseline: its output differs from bicubic by
    about 0.15 mean absolute error on [0, 1] images.

    Output sub-pixel ``(i, j)`` of colour ``c`` (channel ``(i r + j) 3 + c``,
    depth-to-space order) samples the low-resolution image at offset
    ``delta_i = (i + 0.5) / r - 0.5`` (half-pixel centres): kernel
    ``[ky, kx, c, (i r + j) 3 + c] = keys(ky - k//2 - delta_i) keys(kx - k//2 - delta_j)``,
    zero across colours. Needs a window of at least 5 (four taps either
    side of any ``delta`` in (-0.5, 0.5)); borders see zero padding.

    Args:
        scale: r.
    """

    def __init__(self, scale):
        self.scale = int(scale)

    def __call__(self, shape, dtype=None):
        kh, kw, cin, cout = shape
        r = self.scale
        if kh < 5 or kw < 5 or cout != cin * r * r:
            raise ValueError(
                f"BicubicSkipInitializer(scale={r}) needs a kernel (>=5, >=5, C, C * {r * r}), "
                f"received shape {tuple(shape)}."
            )
        delta = (np.arange(r) + 0.5) / r - 0.5  # (r,) sub-pixel offsets
        rows = _keys_cubic(np.arange(kh)[:, None] - kh // 2 - delta[None, :])  # (kh, r)
        cols = _keys_cubic(np.arange(kw)[:, None] - kw // 2 - delta[None, :])  # (kw, r)
        kernel = np.zeros((kh, kw, cin, r, r, cin), "float32")  # out channel (i, j, c)
        taps = rows[:, None, :, None] * cols[None, :, None, :]  # (kh, kw, r, r)
        for c in range(cin):
            kernel[:, :, c, :, :, c] = taps
        # (kh, kw, Cin, r, r, Cin) -> (kh, kw, Cin, r*r*Cin): channel (i*r + j)*Cin + c.
        return ops.cast(kernel.reshape(kh, kw, cin, cout), dtype or "float32")

    def get_config(self):
        return {"scale": self.scale}


@keras.saving.register_keras_serializable(package="paradis_tf")
class PSNR(keras.metrics.Metric):
    """Mean PSNR (dB) over the images seen, RGB, for images in ``[0, max_value]``.

    Per image ``10 log10(max_value^2 / MSE)`` over all pixels and channels,
    with the prediction clipped to the valid range first (as a saved image
    would be); the MSE is floored at 1e-10 (100 dB for max 1). The Y-channel
    PSNR and SSIM of result tables come from ``paradis_tf.metrics``.
    """

    def __init__(self, max_value=1.0, name="psnr", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(max_value, bool) or not isinstance(max_value, (int, float)) or not max_value > 0:
            raise ValueError(f"max_value must be a positive number, received {max_value!r}.")
        self.max_value = float(max_value)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.clip(ops.cast(y_pred, "float32"), 0.0, self.max_value)
        err = ops.reshape(ops.square(y_pred - y_true), (ops.shape(y_true)[0], -1))  # (B, H*W*C)
        mse = ops.maximum(ops.mean(err, axis=-1), 1e-10)  # (B,)
        psnr = 10.0 * ops.log10(self.max_value**2 / mse)  # (B,)
        w = ops.ones_like(psnr) if sample_weight is None else ops.cast(ops.reshape(sample_weight, (-1,)), "float32")
        self.total.assign_add(ops.sum(psnr * w))
        self.count.assign_add(ops.sum(w))

    def result(self):
        return self.total / ops.maximum(self.count, 1e-12)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {"max_value": self.max_value, "name": self.name, "dtype": self.dtype}


def sr_task() -> Task:
    """L1 on the image; students distill the teacher's image by squared
    error; mean RGB PSNR per switch."""
    return Task("sr", "image", keras.losses.MeanAbsoluteError(), distillation="mse", metric=PSNR())


def _positive(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int, received {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="paradis_tf")
class WDSR(SplitClassifier):
    """WDSR-B super-resolution (see the module docstring for the graph).

    Args:
        scale: 2 or 3.
        num_blocks: residual blocks.
        filters: body channels F.
        expansion: wide activation factor (the ReLU runs on F * expansion channels).
        low_rank: the linear 1x1 bottleneck as a fraction of F (WDSR-B: 0.8).
        input_shape: ``(h, w, 3)`` of the low-resolution input (any positive
            size: the output is ``(scale h, scale w, 3)``; high-resolution
            sizes must divide by the scale, see ``lr_shape``).
        switches: the SwitchSet the model serves.
        gates: gate mode or GateConfig of every communicating layer.
    """

    def __init__(self, scale=2, num_blocks=8, filters=32, expansion=4, low_rank=0.8, input_shape=(48, 48, 3),
                 switches="1x1.0", gates="learned", name=None, **kwargs):
        if scale not in SCALES or isinstance(scale, bool):
            raise ValueError(f"scale must be one of {SCALES}, received {scale!r}.")
        _positive(num_blocks, "num_blocks")
        _positive(filters, "filters")
        _positive(expansion, "expansion")
        if isinstance(low_rank, bool) or not isinstance(low_rank, (int, float)) or not 0 < low_rank <= 1:
            raise ValueError(f"low_rank must be a fraction in (0, 1], received {low_rank!r}.")
        if (
            not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3 or input_shape[2] != 3
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_shape)
        ):
            raise ValueError(
                f"input_shape must be (height, width, 3) of positive ints (an RGB low-resolution image), "
                f"received {input_shape!r}."
            )
        input_shape = tuple(input_shape)
        switches = SwitchSet(switches)
        gates = GateConfig.coerce(gates)
        wide, narrow = filters * expansion, max(1, int(round(filters * low_rank)))
        out = 3 * scale * scale

        # U(+-1/sqrt(fan_in)) (PyTorch's default, which WDSR's weight-normalized
        # convs start from): each residual branch starts small against its
        # identity. He's init (variance 2/fan_in) makes every branch about
        # twice its input: with 8 blocks and 32 filters the first L1 error
        # on [0, 1] images was ~240, and training diverged.
        init = {"class_name": "VarianceScaling",
                "config": {"scale": 1.0 / 3.0, "mode": "fan_in", "distribution": "uniform"}}

        def conv(f, k, name, **kw):
            return WeightNormSplitConv2D(f, k, switches, padding="same", gates=gates, name=name,
                                         kernel_initializer=init, **kw)

        head = conv(filters, 3, "head", replicated_input=True)
        blocks = [
            (conv(wide, 1, f"block{b + 1}_wide"), conv(narrow, 1, f"block{b + 1}_lowrank"),
             conv(filters, 3, f"block{b + 1}_conv"))
            for b in range(num_blocks)
        ]
        tail = conv(out, 3, "tail", partial_outputs=True)
        skip = FirstDeviceConv2D(out, 5, switches, weight_norm=True, kernel_initializer=BicubicSkipInitializer(scale),
                                 name="skip")
        shuffle = PixelShuffle(scale, switches, name="pixel_shuffle")
        fusion = PartialSumFusion(switches, name="fusion")

        inputs = keras.Input(input_shape, name="image")
        outputs = {}
        for switch in switches.names:
            x = head(inputs, switch=switch)  # (B, h, w, F)
            for wide_conv, lowrank_conv, conv3 in blocks:
                y = keras.layers.ReLU()(wide_conv(x, switch=switch))  # (B, h, w, F*e)
                y = conv3(lowrank_conv(y, switch=switch), switch=switch)  # (B, h, w, F*l) -> (B, h, w, F)
                x = keras.layers.Add()([x, y])  # (B, h, w, F) + (B, h, w, F): aligned partitions
            partials = keras.layers.Add()([
                tail(x, switch=switch),  # (B, h, w, D, 3r^2)
                skip(inputs, switch=switch),  # (B, h, w, D, 3r^2), device 0's slot only
            ])
            partials = shuffle(partials, switch=switch)  # (B, rh, rw, D, 3)
            outputs[switch] = fusion(partials, switch=switch)  # (B, rh, rw, 3)
        super().__init__(
            inputs, outputs, switches, name=name or f"wdsr_x{scale}", task=sr_task(),
            architecture={"scale": scale, "num_blocks": num_blocks, "filters": filters,
                          "expansion": expansion, "low_rank": low_rank, "input_shape": list(input_shape),
                          "gates": gates.get_config()},
            **kwargs,
        )
        self.scale = scale

    @property
    def hr_shape(self) -> tuple:
        """``(scale h, scale w, 3)``: the super-resolved image's shape."""
        h, w, c = self.architecture["input_shape"]
        return (self.scale * h, self.scale * w, c)

    @staticmethod
    def lr_shape(hr_shape, scale) -> tuple:
        """The low-resolution shape ``(H / scale, W / scale, C)`` of a
        high-resolution ``(H, W, C)``; refuses sizes that do not divide."""
        if scale not in SCALES or isinstance(scale, bool):
            raise ValueError(f"scale must be one of {SCALES}, received {scale!r}.")
        if not isinstance(hr_shape, (tuple, list)) or len(hr_shape) != 3:
            raise ValueError(f"hr_shape must be (height, width, channels), received {hr_shape!r}.")
        for axis, size in zip(("height", "width"), hr_shape[:2]):
            if isinstance(size, bool) or not isinstance(size, int) or size < scale or size % scale:
                raise ValueError(
                    f"high-resolution {axis} {size!r} is not a positive multiple of the scale {scale}: "
                    f"crop the image or patch to a multiple of {scale}."
                )
        return (hr_shape[0] // scale, hr_shape[1] // scale, hr_shape[2])
