import os

import numpy as np
import pytest

from paradis_tf.data.fashion_mnist import DEFAULT_PATH
from paradis_tf.data.scenes import fashion_scenes
from tests.paradis_tf.data.idx import write_idx

needs_fashion_mnist = pytest.mark.skipif(not os.path.isdir(DEFAULT_PATH), reason="dataset-fashion-mnist not installed")


@pytest.fixture
def white_squares(tmp_path):
    """A Fashion-MNIST folder whose only image is all 255 (label 7): every item is a solid square."""
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", np.full((1, 28, 28), 255, np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.array([7]))
    return str(tmp_path)


def _bbox(pixels):
    """Half-open [x0, y0, x1, y1) of a boolean (H, W) map."""
    ys, xs = np.nonzero(pixels)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_solid_squares_by_hand(white_squares):
    # No overlap allowed: two whole 10 x 10 squares, 200 pixels of class 7 + 1.
    s = fashion_scenes(20, canvas=20, items=2, item_size=10, max_overlap=0.0, seed=1, path=white_squares)
    assert set(np.unique(s.masks)) == {0, 8}
    np.testing.assert_array_equal((s.masks == 8).sum(axis=(1, 2)), 200)
    np.testing.assert_array_equal(s.images[..., 0], np.where(s.masks == 8, 255, 0))
    np.testing.assert_array_equal(s.boxes[..., 2] - s.boxes[..., 0], 10)
    np.testing.assert_array_equal(s.boxes[..., 4], 7)
    # Half may be covered: the top square is whole; the bottom one's box is the
    # tight box of what stays visible of it, at least 50 of its 100 pixels.
    s = fashion_scenes(50, canvas=20, items=2, item_size=10, max_overlap=0.5, seed=1, path=white_squares)
    visible = (s.masks == 8).sum(axis=(1, 2))
    assert visible.min() >= 150 and visible.min() < 200  # some overlap happened, within the limit
    for mask, (bottom, top) in zip(s.masks, s.boxes):
        assert top[2] - top[0] == 10 and top[3] - top[1] == 10
        rest = mask == 8
        rest[top[1]:top[3], top[0]:top[2]] = False
        assert _bbox(rest) == list(bottom[:4])


@needs_fashion_mnist
def test_deterministic_per_seed_and_split():
    a = fashion_scenes(6, split="test", seed=5)
    b = fashion_scenes(6, split="test", seed=5)
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes() and x.dtype == y.dtype
    assert a.images.tobytes() != fashion_scenes(6, split="test", seed=6).images.tobytes()
    assert a.images.tobytes() != fashion_scenes(6, split="train", seed=5).images.tobytes()


@needs_fashion_mnist
def test_conventions_and_masks_agree_with_boxes():
    s = fashion_scenes(40, split="test", canvas=96, items=(2, 4), seed=0)
    assert s.images.shape == (40, 96, 96, 1) and s.images.dtype == np.uint8
    assert s.masks.shape == (40, 96, 96) and s.masks.dtype == np.int32
    assert s.boxes.shape == (40, 4, 5) and s.boxes.dtype == np.int32
    # Foreground is exactly the pixels above the threshold (32).
    np.testing.assert_array_equal(s.masks > 0, s.images[..., 0] > 32)
    counts = []
    for mask, boxes in zip(s.masks, s.boxes):
        real = boxes[boxes[:, 4] >= 0]
        np.testing.assert_array_equal(boxes[len(real):], -1)  # padding rows last, all -1
        counts.append(len(real))
        assert set(np.unique(mask)) == {0} | set(real[:, 4] + 1)
        for label in np.unique(real[:, 4]):
            own = real[real[:, 4] == label]
            # Items of one class share a mask id: their boxes' union is that class's tight box.
            union = [own[:, 0].min(), own[:, 1].min(), own[:, 2].max(), own[:, 3].max()]
            assert _bbox(mask == label + 1) == union
            for x0, y0, x1, y1, _ in own:  # each box is tight: every side touches its class
                assert (mask[y0:y1, x0] == label + 1).any() and (mask[y0:y1, x1 - 1] == label + 1).any()
                assert (mask[y0, x0:x1] == label + 1).any() and (mask[y1 - 1, x0:x1] == label + 1).any()
    assert set(counts) == {2, 3, 4}


@needs_fashion_mnist
def test_one_item_box_is_the_mask_bbox():
    s = fashion_scenes(10, split="test", items=1, item_size=(20, 36), seed=3)
    for mask, ((x0, y0, x1, y1, label),) in zip(s.masks, s.boxes):
        assert _bbox(mask > 0) == [x0, y0, x1, y1]
        assert set(np.unique(mask)) == {0, label + 1}


def test_bad_input_is_named(white_squares):
    kw = dict(path=white_squares)
    with pytest.raises(ValueError, match=r"canvas 32 is too small for items of up to 36 pixels \(item_size=\(20, 36"):
        fashion_scenes(1, canvas=32, **kw)
    with pytest.raises(ValueError, match=r"items must be at least 1, received \(0, 2\)"):
        fashion_scenes(1, items=(0, 2), **kw)
    with pytest.raises(ValueError, match=r"items must be an int or a \(min, max\) pair.*received \(3, 2\)"):
        fashion_scenes(1, items=(3, 2), **kw)
    with pytest.raises(ValueError, match="count must be a positive int, received 0"):
        fashion_scenes(0, **kw)
    with pytest.raises(ValueError, match=r"max_overlap must be a number in \[0, 1\), received 1.0"):
        fashion_scenes(1, max_overlap=1.0, **kw)
    with pytest.raises(ValueError, match="item_size must be at least 8, received 4"):
        fashion_scenes(1, item_size=4, **kw)
    with pytest.raises(ValueError, match="could not place 4 items of 20-20 pixels on a 20 x 20 canvas"):
        fashion_scenes(1, canvas=20, items=4, item_size=20, max_overlap=0.0, **kw)
