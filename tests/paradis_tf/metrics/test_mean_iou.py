import numpy as np
import pytest

from paradis_tf.metrics import mean_iou

TRUE = np.array([[0, 0, 1, 1], [2, 2, 2, 2]])
PRED = np.array([[0, 1, 1, 1], [2, 2, 0, 2]])
# class 0: truth {(0,0), (0,1)}, prediction {(0,0), (1,2)}: 1 / 3
# class 1: truth {(0,2), (0,3)}, prediction {(0,1), (0,2), (0,3)}: 2 / 3
# class 2: truth row 1 (4 pixels), prediction 3 of them: 3 / 4


def test_known_per_class_iou():
    assert mean_iou(PRED, TRUE, num_classes=3) == pytest.approx((1 / 3 + 2 / 3 + 3 / 4) / 3)
    assert mean_iou(PRED, TRUE, num_classes=3, ignore_background=True) == pytest.approx((2 / 3 + 3 / 4) / 2)
    # Classes absent from both are left out of the mean, not counted as 0 or 1.
    assert mean_iou(PRED, TRUE, num_classes=7) == pytest.approx((1 / 3 + 2 / 3 + 3 / 4) / 3)
    assert mean_iou(TRUE, TRUE, num_classes=7) == 1.0


def test_class_only_predicted_counts_as_zero():
    pred = PRED.copy()
    pred[1, 3] = 4  # class 4 predicted once, never true: IoU 0; class 2 drops to 2 / 4
    assert mean_iou(pred, TRUE, num_classes=5) == pytest.approx((1 / 3 + 2 / 3 + 2 / 4 + 0) / 4)


def test_batch_pools_pixels_over_images():
    # Two images pooled: one confusion matrix, not a mean of per-image scores.
    pred = np.stack([PRED, TRUE])
    true = np.stack([TRUE, TRUE])
    # class 0: inter 1 + 2, union 3 + 2; class 1: 2 + 2 over 3 + 2; class 2: 3 + 4 over 4 + 4
    assert mean_iou(pred, true, 3) == pytest.approx((3 / 5 + 4 / 5 + 7 / 8) / 3)


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype int64")  # Keras's own int64 under JAX
def test_matches_keras_mean_iou():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    true = rng.integers(0, 6, size=(3, 16, 16))
    pred = np.where(rng.random(true.shape) < 0.6, true, rng.integers(0, 6, size=true.shape))
    pred[pred == 5] = 4  # class 5 only in the truth
    metric = keras.metrics.MeanIoU(num_classes=8)  # classes 6, 7 in neither: skipped by both
    metric.update_state(true.astype(np.int32), pred.astype(np.int32))
    assert mean_iou(pred, true, 8) == pytest.approx(float(metric.result()), abs=1e-6)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"pred_mask must hold ints in 0..2, received dtype int64 with values 0..3"):
        mean_iou(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="pred_mask must hold ints.*float64.*argmax the logits"):
        mean_iou(np.array([0.0, 1.0]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match=r"same shape, received \(2,\) and \(3,\)"):
        mean_iou(np.array([0, 1]), np.array([0, 1, 1]), 3)
    with pytest.raises(ValueError, match="no class is present"):
        mean_iou(np.zeros(4, int), np.zeros(4, int), 3, ignore_background=True)
