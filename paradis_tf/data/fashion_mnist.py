"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist``.

Nothing is downloaded: the four IDX files come from
``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``),
or from the folder given by ``path=`` or ``$PARADIS_FASHION_MNIST``.
"""

from __future__ import annotations

import gzip
import os
import struct
from typing import Optional

import numpy as np

from paradis_tf.data._pipeline import make_pipeline

__all__ = ["fashion_mnist", "load_fashion_mnist", "DEFAULT_PATH", "ENV_VAR", "CLASS_NAMES"]

DEFAULT_PATH = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "PARADIS_FASHION_MNIST"
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
_HOW_TO_FIX = (
    "Install the Debian package (apt-get install dataset-fashion-mnist, which "
    f"`make test` does), or point path= or ${ENV_VAR} at a folder holding "
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz."
)


def _read_idx(filename: str, expected_dims: int) -> np.ndarray:
    """Reads one gzipped IDX file (big-endian header, uint8 payload)."""
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"Fashion-MNIST file {filename} is missing. {_HOW_TO_FIX}")
    try:
        with gzip.open(filename, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"Fashion-MNIST file {filename} is corrupt ({e}). {_HOW_TO_FIX}") from None
    if len(data) < 4:
        raise ValueError(f"Fashion-MNIST file {filename} is corrupt (truncated header). {_HOW_TO_FIX}")
    zero, dtype_code, ndims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndims != expected_dims:
        raise ValueError(
            f"Fashion-MNIST file {filename} is corrupt: IDX header says dtype 0x{dtype_code:02x} "
            f"with {ndims} dimensions, expected uint8 (0x08) with {expected_dims}. {_HOW_TO_FIX}"
        )
    header = 4 + 4 * ndims
    shape = struct.unpack(">" + "I" * ndims, data[4:header])
    if len(data) - header != int(np.prod(shape)):
        raise ValueError(
            f"Fashion-MNIST file {filename} is corrupt: shape {shape} needs "
            f"{int(np.prod(shape))} bytes, the file holds {len(data) - header}. {_HOW_TO_FIX}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(split: str = "train", path: Optional[str] = None):
    """Images ``(N, 28, 28, 1)`` uint8 and labels ``(N,)`` int64 of one split."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', received {split!r}.")
    folder = path or os.environ.get(ENV_VAR) or DEFAULT_PATH
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Fashion-MNIST folder {folder} does not exist. {_HOW_TO_FIX}")
    images_file, labels_file, count = _FILES[split]
    images = _read_idx(os.path.join(folder, images_file), 3)
    labels = _read_idx(os.path.join(folder, labels_file), 1)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Fashion-MNIST {split} split in {folder} is corrupt: {images.shape[0]} images but "
            f"{labels.shape[0]} labels. {_HOW_TO_FIX}"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(
            f"Fashion-MNIST file {os.path.join(folder, labels_file)} is corrupt: label "
            f"{int(labels.max())} is outside 0-9. {_HOW_TO_FIX}"
        )
    return images[..., None], labels.astype(np.int64)


def fashion_mnist(
    split: str = "train",
    batch_size: int = 128,
    path: Optional[str] = None,
    shuffle: Optional[bool] = None,
    augment: bool = False,
    limit: Optional[int] = None,
    seed: int = 0,
    drop_remainder: bool = False,
):
    """A ``tf.data.Dataset`` of ``(image, label)`` batches of Fashion-MNIST.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        batch_size: images per batch.
        path: folder of the four IDX files (default: ``$PARADIS_FASHION_MNIST``,
            then the Debian package's folder).
        shuffle: reshuffle every epoch (default: only for ``"train"``).
        augment: random horizontal flips and 2-pixel translations (training).
        limit: keep only the first ``limit`` images (quick runs, tests).
        seed: shuffle and augmentation seed.
        drop_remainder: drop the last partial batch.

    Images are float32 in [0, 1], shape ``(28, 28, 1)``; labels int64.

    Raises:
        FileNotFoundError: a file or the folder is missing (says how to install).
        ValueError: a file is corrupt, or an argument is out of range.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, received {limit!r}.")
    images, labels = load_fashion_mnist(split, path)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return make_pipeline(
        images,
        labels,
        batch_size=batch_size,
        shuffle=split == "train" if shuffle is None else shuffle,
        augment=augment,
        seed=seed,
        drop_remainder=drop_remainder,
    )
