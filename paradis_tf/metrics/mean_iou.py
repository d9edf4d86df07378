"""mean_iou: mean intersection over union of class masks (semantic segmentation)."""

from __future__ import annotations

import numpy as np

__all__ = ["mean_iou"]


def mean_iou(pred_mask, true_mask, num_classes: int, ignore_background: bool = False) -> float:
    """Mean over classes of ``|pred == c and true == c| / |pred == c or true == c|``.

    Counts are summed over every pixel of every image given (one confusion
    matrix for the whole batch, as ``keras.metrics.MeanIoU``), then averaged
    over the classes *present in the prediction or the truth* (union > 0): a
    class absent from both says nothing and is left out, not counted as 0 or 1.

    Args:
        pred_mask, true_mask: int class maps of one shape (any rank), values in
            ``0..num_classes - 1``; class 0 is background (``fashion_scenes``).
        num_classes: number of classes, background included (11 for the scenes).
        ignore_background: leave class 0 out of the average. Its pixels still
            count: predicting an item on background lowers that item's IoU.

    Raises:
        ValueError: shapes differ, a value is out of range, or no class is left
            to average.
    """
    pred = np.asarray(pred_mask)
    true = np.asarray(true_mask)
    if pred.shape != true.shape:
        raise ValueError(f"pred_mask and true_mask must have the same shape, received {pred.shape} and {true.shape}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, received {num_classes!r}.")
    for name, m in (("pred_mask", pred), ("true_mask", true)):
        if m.size and (not np.issubdtype(m.dtype, np.integer) or m.min() < 0 or m.max() >= num_classes):
            raise ValueError(
                f"{name} must hold ints in 0..{num_classes - 1}, received dtype {m.dtype} with values "
                f"{m.min()}..{m.max()} (argmax the logits first)."
            )
    # confusion[t, p] = number of pixels of true class t predicted as p.
    confusion = np.bincount(true.ravel() * num_classes + pred.ravel(), minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes)
    intersection = np.diag(confusion)  # (num_classes,)
    union = confusion.sum(0) + confusion.sum(1) - intersection  # (num_classes,)
    counted = union > 0
    if ignore_background:
        counted[0] = False
    if not counted.any():
        raise ValueError("no class is present in pred_mask or true_mask to average (all background, ignored).")
    return float(np.mean(intersection[counted] / union[counted]))
