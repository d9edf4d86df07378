"""map50: mean average precision at IoU 0.5 (PASCAL VOC style) of box detections."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["box_iou", "map50"]


def box_iou(a, b) -> np.ndarray:
    """IoU of boxes ``(n, 4)`` and ``(m, 4)`` -> ``(n, m)``.

    Boxes are ``[x0, y0, x1, y1]`` with half-open pixel extents, so a box's
    area is ``(x1 - x0) * (y1 - y0)`` (no VOC "+1": that was for inclusive corners).
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None]  # (n, 1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)[None]  # (1, m, 4)
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h  # (n, m)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _average_precision(tp: np.ndarray, n_truth: int) -> float:
    """All-point interpolated AP (VOC 2010+): area under the monotone precision envelope."""
    tp_cum = np.cumsum(tp)
    recall = np.concatenate([[0.0], tp_cum / n_truth, [1.0]])
    precision = np.concatenate([[0.0], tp_cum / np.arange(1, len(tp) + 1), [0.0]])
    # Envelope: precision at recall r is the best precision at any recall >= r.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def map50(detections: Sequence, ground_truth: Sequence, num_classes: int, iou_threshold: float = 0.5) -> float:
    """VOC-style mean average precision at IoU ``iou_threshold`` (0.5).

    Per class: all detections of the class over all images, by decreasing
    score (ties keep image order, then row order); each is matched to the
    ground-truth box of its image and class with the highest IoU; it is a true
    positive if that IoU is ``>= iou_threshold`` and that box is not matched
    yet, otherwise a false positive (a duplicate does not fall back to the
    next-best box: VOC's rule). AP is the all-point interpolated area under the
    precision/recall curve; the mean runs over the classes that have ground
    truth (a class with detections but no ground truth is left out).

    Args:
        detections: per image, an ``(n_i, 6)`` array of ``[x0, y0, x1, y1,
            score, class]`` (``decode_centernet``'s output).
        ground_truth: per image, ``(m_i, 5)`` rows ``[x0, y0, x1, y1, class]``;
            rows with a negative class are padding (``fashion_scenes`` boxes
            ``(N, max_items, 5)`` can be passed as they are).
        num_classes: classes are ints in ``0..num_classes - 1``.
        iou_threshold: the IoU a match needs.

    Raises:
        ValueError: the image counts differ, a class is out of range, or there is no ground truth.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(
            f"detections and ground_truth must list the same images, received {len(detections)} "
            f"and {len(ground_truth)}."
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, received {num_classes!r}.")
    dets, truths = [], []
    for i, (d, t) in enumerate(zip(detections, ground_truth)):
        d = np.asarray(d, np.float64).reshape(-1, 6)
        t = np.asarray(t, np.float64).reshape(-1, 5)
        t = t[t[:, 4] >= 0]
        for name, cls in (("detections", d[:, 5]), ("ground_truth", t[:, 4])):
            bad = cls[(cls < 0) | (cls >= num_classes) | (cls != np.round(cls))]
            if bad.size:
                raise ValueError(f"{name}[{i}] has class {float(bad[0]):g}: classes are ints in 0..{num_classes - 1}.")
        dets.append(d)
        truths.append(t)
    aps = []
    for c in range(num_classes):
        gt = [t[t[:, 4] == c, :4] for t in truths]  # per image (m_ic, 4)
        n_truth = sum(len(g) for g in gt)
        if n_truth == 0:
            continue
        # (image index, row) of every detection of class c, in image then row order.
        image_of = np.concatenate([np.full(int(np.sum(d[:, 5] == c)), i) for i, d in enumerate(dets)])
        rows = np.concatenate([d[d[:, 5] == c] for d in dets]).reshape(-1, 6)
        order = np.argsort(-rows[:, 4], kind="stable")
        matched = [np.zeros(len(g), bool) for g in gt]
        tp = np.zeros(len(order))
        for rank, j in enumerate(order):
            g = gt[image_of[j]]
            if len(g) == 0:
                continue
            ious = box_iou(rows[j, :4], g)[0]  # (m_ic,)
            best = int(np.argmax(ious))
            if ious[best] >= iou_threshold and not matched[image_of[j]][best]:
                matched[image_of[j]][best] = True
                tp[rank] = 1.0
        aps.append(_average_precision(tp, n_truth))
    if not aps:
        raise ValueError("ground_truth holds no boxes: mAP is undefined without ground truth.")
    return float(np.mean(aps))
