import numpy as np
import pytest

from paradis_tf.metrics import box_iou, map50


def test_box_iou_by_hand():
    # [0, 2) x [0, 2) and [1, 3) x [1, 3): intersection 1, union 4 + 4 - 1.
    np.testing.assert_allclose(box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]]), [[1 / 7, 1, 0]])


def test_known_precision_recall_curve():
    # Class 0: three true boxes over two images. By score: TP, duplicate (FP),
    # TP, wrong place (FP): precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3.
    # All-point AP = 1/3 * 1 + 1/3 * 2/3 (envelope) + 1/3 * 0 = 5/9.
    # Class 1: one box found exactly: AP 1. Class 2: detections but no truth: left out.
    truth = [
        np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 0], [40, 0, 50, 8, 1]]),
        np.array([[0, 0, 8, 8, 0]]),
    ]
    dets = [
        np.array([
            [0, 0, 10, 10, 0.9, 0],  # TP (first image, first box)
            [1, 1, 10, 10, 0.8, 0],  # duplicate of the same box: FP
            [40, 0, 50, 8, 0.7, 1],  # class 1 TP
            [60, 60, 70, 70, 0.95, 2],  # class 2 has no truth
        ]),
        np.array([
            [0, 0, 8, 8, 0.6, 0],  # TP (second image)
            [30, 30, 40, 40, 0.5, 0],  # FP
        ]),
    ]
    assert map50(dets, truth, num_classes=3) == pytest.approx((5 / 9 + 1) / 2)


def test_voc_duplicate_rule_and_threshold_edge():
    # Two true boxes; the second detection's best match is the already matched
    # box A, so it is a false positive even though it overlaps B by IoU 0.6.
    a = [0, 0, 10, 10, 0]
    b = [0, 0, 10, 6, 0]  # IoU(A, B) = 60 / 100
    truth = [np.array([a, b])]
    dets = [np.array([[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 9, 0.8, 0]])]  # 2nd: IoU 0.9 with A, 6/9 with B
    # precision 1, 1/2 at recall 1/2, 1/2: AP = 1/2.
    assert map50(dets, truth, 1) == pytest.approx(0.5)
    # IoU exactly 0.5 matches (>= 0.5): [0, 2) x [0, 1) against [0, 1) x [0, 1).
    assert map50([np.array([[0, 0, 2, 1, 0.5, 0]])], [np.array([[0, 0, 1, 1, 0]])], 1) == 1.0
    assert map50([np.array([[0, 0, 2, 1, 0.5, 0]])], [np.array([[0, 0, 1, 1, 0]])], 1, iou_threshold=0.51) == 0.0


def test_padded_ground_truth_and_empty_detections():
    truth = np.array([[[2, 2, 9, 9, 3], [-1, -1, -1, -1, -1]], [[0, 0, 4, 4, 1], [5, 5, 8, 8, 3]]])
    perfect = [np.array([[2, 2, 9, 9, 1.0, 3]]), np.array([[5, 5, 8, 8, 0.3, 3], [0, 0, 4, 4, 0.2, 1]])]
    assert map50(perfect, truth, 10) == 1.0
    assert map50([np.zeros((0, 6)), np.zeros((0, 6))], truth, 10) == 0.0


def test_bad_input_is_named():
    truth = [np.array([[0, 0, 1, 1, 0]])]
    with pytest.raises(ValueError, match="same images, received 2 and 1"):
        map50([np.zeros((0, 6))] * 2, truth, 1)
    with pytest.raises(ValueError, match=r"detections\[0\] has class 4: classes are ints in 0..2"):
        map50([np.array([[0, 0, 1, 1, 0.5, 4]])], truth, 3)
    with pytest.raises(ValueError, match=r"ground_truth\[0\] has class 3: classes"):
        map50([np.zeros((0, 6))], [np.array([[0, 0, 1, 1, 3]])], 3)
    with pytest.raises(ValueError, match="ground_truth holds no boxes"):
        map50([np.zeros((0, 6))], [np.full((2, 5), -1)], 3)
