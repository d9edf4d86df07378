"""Guard against TensorFlow 2.21's oneDNN crash on odd training batches.

On x86 CPUs with AVX-512, TensorFlow 2.21's oneDNN gradient of a 1x1
stride-2 convolution (the ResNets' projection shortcuts) corrupts the heap
when the batch size is odd: the process dies with "double free or
corruption", "munmap_chunk(): invalid pointer" or a segfault. Forward passes
are safe; the JAX backend and ``TF_ENABLE_ONEDNN_OPTS=0`` are not affected.
A data set whose size leaves a last batch of 29 (1,437 images in batches of
64) killed ``paradis train`` in its first epoch. docs/onednn_odd_batch.md
has a stock-Keras reproduction and the measurements behind this guard.

The guard evens every training batch on the TensorFlow backend: an odd batch
of B > 1 trains on its first B - 1 samples, a batch of 1 on that sample
twice (batch norm's statistics of a sample and its copy equal the sample's).
One sample of each odd batch goes unused; evaluation and prediction see
every sample. The gather runs on even batches too (an identity index: no
data-dependent branch in the traced step); it costs 0.37 ms per batch of 128
at 28x28x1 here, against a training step of ~500 ms.

The same kernel also fails on even batches at inputs of 48x48 and larger
with few channels; ``SplitConv2D`` therefore never calls it (a strided 1x1
runs as a slice and a stride-1 conv). This guard remains for strided 1x1
convolutions of stock layers inside a ``SplitModel``.
"""

from __future__ import annotations

import os

import keras
from keras import ops

__all__ = ["needs_even_batches", "even_batch"]


def needs_even_batches() -> bool:
    """True where the crash can happen: the TensorFlow backend with oneDNN on."""
    return keras.backend.backend() == "tensorflow" and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0"


def even_batch(data):
    """``data`` (x, y, sample_weight in any nesting) with an even batch size."""
    first = keras.tree.flatten(data)[0]
    n = ops.shape(first)[0]
    # arange(max(n - n % 2, 2)) % n: [0..n-1] (even n), [0..n-2] (odd n > 1),
    # [0, 0] (n == 1); one gather per tensor, no data-dependent branch.
    keep = ops.maximum(n - n % 2, 2)
    index = ops.mod(ops.arange(keep), n)
    return keras.tree.map_structure(lambda t: t if t is None else ops.take(t, index, axis=0), data)
