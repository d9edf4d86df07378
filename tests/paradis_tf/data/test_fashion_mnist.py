import gzip
import os
import struct

import numpy as np
import pytest

from tests.paradis_tf.data.idx import write_idx

pytest.importorskip("tensorflow")

from paradis_tf.data import fashion_mnist, load_fashion_mnist
from paradis_tf.data.fashion_mnist import DEFAULT_PATH


@pytest.fixture
def tiny(tmp_path, rng):
    images = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    labels = np.arange(20) % 10
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return tmp_path, images, labels


def test_reads_idx_files_exactly(tiny):
    folder, images, labels = tiny
    x, y = load_fashion_mnist("train", path=str(folder))
    assert x.shape == (20, 28, 28, 1) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[..., 0], images)
    np.testing.assert_array_equal(y, labels)
    ds = fashion_mnist("test", batch_size=8, path=str(folder))
    batches = [(np.asarray(a), np.asarray(b)) for a, b in ds]
    assert [len(b) for _, b in batches] == [8, 8, 4]
    np.testing.assert_allclose(batches[0][0][..., 0], images[:8] / 255.0, atol=1e-7)


def test_environment_variable_and_limit(tiny, monkeypatch):
    folder, _, _ = tiny
    monkeypatch.setenv("PARADIS_FASHION_MNIST", str(folder))
    ds = fashion_mnist("train", batch_size=4, limit=6, augment=True, seed=3)
    x, y = next(iter(ds))
    assert x.shape == (4, 28, 28, 1) and float(np.max(x)) <= 1.0
    assert sum(int(b.shape[0]) for _, b in ds) == 6


def test_missing_file_says_how_to_install(tiny):
    folder, _, _ = tiny
    os.remove(folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError,
                       match="t10k-labels-idx1-ubyte.gz is missing.*apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", path=str(folder))
    with pytest.raises(FileNotFoundError, match="folder /nonexistent does not exist.*PARADIS_FASHION_MNIST"):
        load_fashion_mnist("train", path="/nonexistent")


def test_corrupt_files_are_reported(tiny):
    folder, images, _ = tiny
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz is corrupt"):
        load_fashion_mnist("train", path=str(folder))
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBBI", 0, 8, 1, 20) + b"\x01" * 7)  # truncated payload
    with pytest.raises(ValueError, match="needs 20 bytes, the file holds 7"):
        load_fashion_mnist("train", path=str(folder))
    with pytest.raises(ValueError, match="split must be 'train' or 'test', received 'val'"):
        load_fashion_mnist("val", path=str(folder))
    with pytest.raises(ValueError, match="limit must be a positive int or None, received 0"):
        fashion_mnist("train", path=str(folder), limit=0)


@pytest.mark.skipif(not os.path.isdir(DEFAULT_PATH), reason="dataset-fashion-mnist not installed")
def test_debian_package_has_the_real_data():
    x, y = load_fashion_mnist("train")
    assert x.shape == (60000, 28, 28, 1)
    assert np.bincount(y).tolist() == [6000] * 10
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28, 1)
