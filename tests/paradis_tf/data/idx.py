"""Writes small IDX files in Fashion-MNIST's format for the loader tests."""

import gzip
import struct

import numpy as np


def write_idx(path, array):
    """Big-endian IDX header (uint8, ndim, shape), then the raw bytes, gzipped."""
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
