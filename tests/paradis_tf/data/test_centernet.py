import os

import numpy as np
import pytest

from paradis_tf.data.centernet import centernet_targets, decode_centernet, gaussian_radius
from paradis_tf.data.fashion_mnist import DEFAULT_PATH


def test_gaussian_radius_by_hand():
    # h = w = 10, min_overlap 0.7: the third case, (b3 + sqrt(b3^2 - 4 a3 c3)) / 2 with
    # a3 = 2.8, b3 = -1.4 * 20 = -28, c3 = -0.3 * 100 = -30: (-28 + sqrt(784 + 336)) / 2 = 2.733.
    assert gaussian_radius(10, 10) == pytest.approx((-28 + np.sqrt(1120)) / 2)
    # The first two cases are larger: (20 + sqrt(400 - 4 * 30 / 1.7)) / 2 and (40 + sqrt(1600 - 480)) / 2.
    assert (-28 + np.sqrt(1120)) / 2 < (20 + np.sqrt(400 - 120 / 1.7)) / 2 < (40 + np.sqrt(1120)) / 2
    # A 10 x 4 box: a3 = 2.8, b3 = -1.4 * 14 = -19.6, c3 = -0.3 * 40 = -12.
    assert gaussian_radius(10, 4) == pytest.approx((-19.6 + np.sqrt(19.6**2 + 4 * 2.8 * 12)) / 2)


def test_targets_of_one_box_by_hand():
    # [8, 24) x [4, 20) at stride 4: centre (16, 12) -> cell (x 4, y 3), offset 0;
    # 4 x 4 cells: radius floor((-11.2 + sqrt(11.2^2 + 4 * 2.8 * 4.8)) / 2) = floor(1.09) = 1,
    # sigma = 3 / 6: neighbours exp(-1 / 0.5) = e^-2, diagonals e^-4.
    t = centernet_targets(np.array([[[8, 4, 24, 20, 2], [-1, -1, -1, -1, -1]]]), canvas=32, stride=4, num_classes=3)
    assert t.heatmap.shape == (1, 8, 8, 3) and t.size.shape == (1, 8, 8, 2) and t.mask.shape == (1, 8, 8)
    expected = np.zeros((8, 8))
    e2, e4 = np.exp(-2), np.exp(-4)
    expected[2:5, 3:6] = [[e4, e2, e4], [e2, 1, e2], [e4, e2, e4]]
    np.testing.assert_allclose(t.heatmap[0, :, :, 2], expected, atol=1e-7)
    assert not t.heatmap[..., :2].any()
    assert t.mask.sum() == 1 and t.mask[0, 3, 4] == 1
    np.testing.assert_array_equal(t.size[0, 3, 4], [4, 4])  # 16 x 16 pixels in cells of 4
    np.testing.assert_array_equal(t.offset[0, 3, 4], [0, 0])
    # Off-grid centre: [1, 8) x [2, 7) -> centre (4.5, 4.5) / 4 = 1.125: cell (1, 1), offset 0.125;
    # a 7 x 5 pixel box is under 2 cells: radius 0, a single 1.
    t = centernet_targets([np.array([[1, 2, 8, 7, 0]])], canvas=(16, 32), stride=4, num_classes=1)
    assert t.heatmap.shape == (1, 4, 8, 1) and t.heatmap.sum() == 1 and t.heatmap[0, 1, 1, 0] == 1
    np.testing.assert_array_equal(t.offset[0, 1, 1], [0.125, 0.125])
    np.testing.assert_array_equal(t.size[0, 1, 1], [7 / 4, 5 / 4])
    packed = t.packed()  # heatmap (1) + size (2) + offset (2) + mask (1)
    assert packed.shape == (1, 4, 8, 6)
    np.testing.assert_array_equal(packed[0, 1, 1], [1, 7 / 4, 5 / 4, 0.125, 0.125, 1])


def test_splats_of_one_class_take_the_maximum():
    boxes = np.array([[[0, 0, 16, 16, 0], [8, 0, 24, 16, 0]]])  # centres 2 cells apart, radius 1
    h = centernet_targets(boxes, 32, 4, 1).heatmap[0, :, :, 0]
    assert h[2, 2] == 1 and h[2, 4] == 1
    assert h[2, 3] == pytest.approx(np.exp(-2))  # max(e^-2, e^-2), not their sum


def test_decode_extracts_3x3_peaks():
    heatmap = np.zeros((1, 6, 6, 2), np.float32)
    heatmap[0, 1, 1, 0] = 0.9
    heatmap[0, 1, 2, 0] = 0.8  # next to a higher score: not a peak
    heatmap[0, 4, 4, 0] = 0.5
    heatmap[0, 1, 2, 1] = 0.7  # another class at the same cell: its own peak
    heatmap[0, 5, 0, 1] = 0.05  # below the threshold
    size = np.zeros((1, 6, 6, 2), np.float32)
    size[0, 1, 1] = (4, 2)
    offset = np.zeros((1, 6, 6, 2), np.float32)
    offset[0, 1, 1] = (0.5, 0.25)
    (dets,) = decode_centernet(heatmap, size, offset, stride=2, threshold=0.1)
    # Cell (x 1, y 1) + offset (0.5, 0.25) at stride 2: centre (3, 2.5); 4 x 2 cells = 8 x 4 pixels.
    np.testing.assert_allclose(dets, [[-1, 0.5, 7, 4.5, 0.9, 0], [4, 2, 4, 2, 0.7, 1], [8, 8, 8, 8, 0.5, 0]], atol=1e-6)
    (top,) = decode_centernet(heatmap, size, offset, stride=2, k=1)
    assert top.shape == (1, 6) and top[0, 4] == pytest.approx(0.9)
    (none,) = decode_centernet(heatmap, size, offset, stride=2, threshold=0.95)
    assert none.shape == (0, 6)


def _round_trip(boxes, canvas, stride, num_classes):
    t = centernet_targets(boxes, canvas, stride, num_classes)
    # The encoded centres are exactly 1: a threshold of 1 keeps only them.
    decoded = decode_centernet(t.heatmap, t.size, t.offset, stride, k=50, threshold=1.0)
    for truth, dets in zip(boxes, decoded):
        truth = truth[truth[:, 4] >= 0]
        got = sorted(map(tuple, np.concatenate([dets[:, :4], dets[:, 5:]], 1).tolist()))
        assert got == sorted(map(tuple, truth.astype(float).tolist()))
        np.testing.assert_array_equal(dets[:, 4], 1.0)


def test_round_trip_recovers_random_boxes():
    rng = np.random.default_rng(0)
    boxes = np.full((20, 5, 5), -1)
    for i in range(20):
        cells = set()
        for j in range(int(rng.integers(1, 6))):
            x0, y0 = rng.integers(0, 48, size=2)
            w, h = rng.integers(1, 17, size=2)
            cell = (int((2 * x0 + w) / 8), int((2 * y0 + h) / 8))
            if cell in cells:  # one size per cell: CenterNet cannot hold two boxes there
                continue
            cells.add(cell)
            boxes[i, j] = (x0, y0, x0 + w, y0 + h, rng.integers(5))
    _round_trip(boxes, 64, 4, 5)


@pytest.mark.skipif(not os.path.isdir(DEFAULT_PATH), reason="dataset-fashion-mnist not installed")
def test_round_trip_recovers_scene_boxes():
    from paradis_tf.data.scenes import fashion_scenes

    scenes = fashion_scenes(32, split="test", canvas=64, seed=2)
    _round_trip(scenes.boxes, 64, 4, 10)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="canvas 30 must be positive and divisible by stride 4"):
        centernet_targets([np.array([[0, 0, 4, 4, 0]])], 30, 4, 1)
    with pytest.raises(ValueError, match=r"boxes\[0\] holds \[0, 0, 40, 4\], which is empty or outside the canvas 32"):
        centernet_targets([np.array([[0, 0, 40, 4, 0]])], 32, 4, 1)
    with pytest.raises(ValueError, match=r"boxes\[0\] holds \[4, 0, 4, 4\]"):
        centernet_targets([np.array([[4, 0, 4, 4, 0]])], 32, 4, 1)
    with pytest.raises(ValueError, match=r"boxes\[0\] has class 3: classes are ints in 0..2"):
        centernet_targets([np.array([[0, 0, 4, 4, 3]])], 32, 4, 3)
    with pytest.raises(ValueError, match="stride must be a positive int, received 0"):
        centernet_targets([np.array([[0, 0, 4, 4, 0]])], 32, 0, 3)
    with pytest.raises(ValueError, match=r"expected heatmap \(N, h, w, C\).*received shapes \(4, 4, 1\)"):
        decode_centernet(np.zeros((4, 4, 1)), np.zeros((4, 4, 2)), np.zeros((4, 4, 2)), 4)
