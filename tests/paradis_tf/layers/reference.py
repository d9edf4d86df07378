"""Independent NumPy references for the split layers.

Written from the per-device formula of DESIGN.md ("Split layers"): device k
computes its own output channels from its local input channels plus the
remote channels whose gate to k is open. No masks, no Keras.
"""

import math

import numpy as np


def _pad_amounts(size, k, stride, dilation, padding):
    span = (k - 1) * dilation + 1
    if padding == "valid":
        return 0, 0, (size - span) // stride + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2, out


def conv2d(x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1)):
    """Plain NHWC convolution (cross-correlation), TensorFlow padding rules."""
    b, h, w, cin = x.shape
    kh, kw, _, cout = kernel.shape
    top, bottom, oh = _pad_amounts(h, kh, strides[0], dilation[0], padding)
    left, right, ow = _pad_amounts(w, kw, strides[1], dilation[1], padding)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out = np.zeros((b, oh, ow, cout), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            patch = xp[:, r0 : r0 + strides[0] * (oh - 1) + 1 : strides[0],
                       c0 : c0 + strides[1] * (ow - 1) + 1 : strides[1], :]
            out += patch @ kernel[i, j]
    return out


def split_linear(x, kernel, bias, in_ranges, out_ranges, gates, linear):
    """Per-device formula for a channel-mixing layer.

    gates: (Cin, D) binary, gates[c, k] = 1 when device k receives channel c
    (local entries are ignored: a device always reads its own channels).
    in_ranges None means the input is replicated on every device.
    """
    cin = kernel.shape[-2]
    cout = kernel.shape[-1]
    out = None
    for k, orange in enumerate(out_ranges):
        if in_ranges is None:
            inputs = list(range(cin))
        else:
            inputs = [c for c in in_ranges[k]] + [
                c
                for j, r in enumerate(in_ranges)
                if j != k
                for c in r
                if gates[c, k]
            ]
            inputs = sorted(inputs)
        outs = list(orange)
        y = linear(x[..., inputs], kernel[..., inputs, :][..., outs])
        if bias is not None:
            y = y + bias[outs]
        if out is None:
            out = np.zeros(y.shape[:-1] + (cout,), dtype=np.float64)
        out[..., outs] = y
    return out
