"""Fixtures shared by the CLI tests."""

import numpy as np
import pytest

from tests.paradis_tf.data.idx import write_idx


@pytest.fixture
def fake_fashion_mnist(tmp_path, monkeypatch, rng):
    folder = tmp_path / "fmnist"
    folder.mkdir()
    labels = np.arange(96) % 10
    images = (rng.random((96, 28, 28)) * 60).astype(np.uint8)
    for i, label in enumerate(labels):  # learnable: a bright band per class
        images[i, 2 * label : 2 * label + 3, :] = 250
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("PARADIS_FASHION_MNIST", str(folder))
    return folder
