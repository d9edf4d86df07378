"""CenterNet box coding: dense training targets from boxes, and boxes back from a head's maps.

CenterNet (Zhou, Wang and Kraehenbuehl, "Objects as Points", 2019) predicts,
on a grid ``stride`` times coarser than the image, one heatmap channel per
class (a peak at each object's centre), the object's size and the sub-cell
offset of its centre. Conventions here:

* boxes are ``[x0, y0, x1, y1, class]`` in input pixels, half-open (pixel
  ``i`` spans ``[i, i + 1)``), class in ``0..num_classes - 1``; rows with a
  negative class are padding (as ``fashion_scenes`` writes them).
* a box's centre is ``((x0 + x1) / 2, (y0 + y1) / 2)``; divided by ``stride``
  it falls in grid cell ``(floor(cx / stride), floor(cy / stride))`` and its
  ``offset`` is the fractional part, in [0, 1).
* ``size`` is ``(w, h) = (x1 - x0, y1 - y0) / stride`` in grid cells (as
  CenterNet, whose 0.1 size-loss weight assumes it), written only at the
  centre cell; ``mask`` is 1 there, 0 elsewhere, so size and offset losses
  are ``mask``-weighted. ``CenterNetTargets.packed()`` concatenates the four
  maps as ``paradis_tf.models.centernet.CenterNetLoss`` reads them. One size
  and offset per cell:
  of two boxes whose centres share a cell, the later row's are kept (as in
  CenterNet; pick a finer stride if that matters).
* the heatmap is the per-class maximum of Gaussians splatted at each centre
  cell with CenterNet's rule: radius = ``floor(gaussian_radius((h, w) / stride,
  0.7))`` (the CornerNet formula, as in CenterNet's released code), sigma =
  ``(2 * radius + 1) / 6``, value exactly 1 at the centre cell.

All NumPy; the encoder feeds a ``tf.data`` pipeline or a JAX loop equally.
"""

from __future__ import annotations

from typing import List, NamedTuple, Sequence, Tuple, Union

import numpy as np

__all__ = ["CenterNetTargets", "centernet_targets", "decode_centernet", "gaussian_radius"]


class CenterNetTargets(NamedTuple):
    """Dense targets on the ``(H / stride, W / stride)`` grid, all float32.

    ``heatmap`` (N, h, w, num_classes), ``size`` (N, h, w, 2) as (w, h) in
    cells, ``offset`` (N, h, w, 2) as (dx, dy) in cells, ``mask`` (N, h, w).
    """

    heatmap: np.ndarray
    size: np.ndarray
    offset: np.ndarray
    mask: np.ndarray

    def packed(self) -> np.ndarray:
        """One ``(N, h, w, num_classes + 5)`` array: heatmap, size, offset, mask (channels last).

        The layout ``paradis_tf.models.centernet.CenterNetLoss`` reads as ``y_true``.
        """
        # (N, h, w, C) + (N, h, w, 2) + (N, h, w, 2) + (N, h, w, 1) -> (N, h, w, C + 5)
        return np.concatenate([self.heatmap, self.size, self.offset, self.mask[..., None]], axis=-1)


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CornerNet/CenterNet's radius: the smallest of its three corner-shift cases.

    ``height`` and ``width`` in grid cells. Kept exactly as the released code
    computes it (each case's root divides by 2 where the quadratic formula
    would divide by 2a, a known quirk), so targets match published models.
    """
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + np.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + np.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return float(min(r1, r2, r3))


def _gaussian(radius: int) -> np.ndarray:
    """(2r + 1, 2r + 1) Gaussian with sigma (2r + 1) / 6, exactly 1 at the centre."""
    diameter = 2 * radius + 1
    sigma = diameter / 6
    d = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0  # as released: no denormal tails
    return g


def _grid(canvas: Union[int, Sequence[int]], stride: int) -> Tuple[int, int]:
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be a positive int, received {stride!r}.")
    hw = (canvas, canvas) if isinstance(canvas, (int, np.integer)) and not isinstance(canvas, bool) else canvas
    try:
        height, width = (int(v) for v in hw)
    except (TypeError, ValueError):
        raise ValueError(f"canvas must be an int or an (height, width) pair, received {canvas!r}.") from None
    if height < 1 or width < 1 or height % stride or width % stride:
        raise ValueError(
            f"canvas {canvas!r} must be positive and divisible by stride {stride}: crop or pad the "
            f"images to a multiple of the stride."
        )
    return height // stride, width // stride


def centernet_targets(
    boxes,
    canvas: Union[int, Sequence[int]],
    stride: int,
    num_classes: int,
    min_overlap: float = 0.7,
) -> CenterNetTargets:
    """Encodes boxes ``(N, M, 5)`` (or a list of ``(M_i, 5)``) as CenterNet's dense targets.

    Args:
        boxes: per image, rows ``[x0, y0, x1, y1, class]`` in pixels; a row
            with a negative class is padding and is skipped.
        canvas: input size, an int (square) or ``(height, width)``, divisible by ``stride``.
        stride: the head's output stride (e.g. 4).
        num_classes: heatmap channels; every class must be below it.
        min_overlap: CenterNet's IoU the Gaussian radius guarantees (0.7).

    Returns:
        ``CenterNetTargets(heatmap, size, offset, mask)``; see the module docstring.

    Raises:
        ValueError: a box lies outside the canvas or is empty, a class is out
            of range, or the canvas is not a multiple of the stride.
    """
    grid_h, grid_w = _grid(canvas, stride)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, received {num_classes!r}.")
    n = len(boxes)
    heatmap = np.zeros((n, grid_h, grid_w, num_classes), np.float32)
    size = np.zeros((n, grid_h, grid_w, 2), np.float32)
    offset = np.zeros((n, grid_h, grid_w, 2), np.float32)
    mask = np.zeros((n, grid_h, grid_w), np.float32)
    for i in range(n):
        rows = np.asarray(boxes[i], np.float64).reshape(-1, 5)
        for x0, y0, x1, y1, cls in rows[rows[:, 4] >= 0]:
            if not (0 <= x0 < x1 <= grid_w * stride and 0 <= y0 < y1 <= grid_h * stride):
                raise ValueError(
                    f"boxes[{i}] holds [{x0:g}, {y0:g}, {x1:g}, {y1:g}], which is empty or outside the canvas "
                    f"{canvas!r}: boxes are [x0, y0, x1, y1) pixels with x0 < x1, y0 < y1."
                )
            if cls != int(cls) or cls >= num_classes:
                raise ValueError(f"boxes[{i}] has class {cls:g}: classes are ints in 0..{num_classes - 1}.")
            # Centre in grid units; its integer part is the cell, the rest the offset.
            cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
            cell_x, cell_y = min(int(cx), grid_w - 1), min(int(cy), grid_h - 1)
            radius = max(0, int(gaussian_radius((y1 - y0) / stride, (x1 - x0) / stride, min_overlap)))
            g = _gaussian(radius)  # (2r + 1, 2r + 1)
            # Clip the splat to the grid: rows [top, bottom) and columns [left, right).
            top, bottom = max(cell_y - radius, 0), min(cell_y + radius + 1, grid_h)
            left, right = max(cell_x - radius, 0), min(cell_x + radius + 1, grid_w)
            patch = g[top - cell_y + radius:bottom - cell_y + radius, left - cell_x + radius:right - cell_x + radius]
            view = heatmap[i, top:bottom, left:right, int(cls)]  # (bottom - top, right - left)
            np.maximum(view, patch, out=view)
            size[i, cell_y, cell_x] = ((x1 - x0) / stride, (y1 - y0) / stride)
            offset[i, cell_y, cell_x] = (cx - cell_x, cy - cell_y)
            mask[i, cell_y, cell_x] = 1.0
    return CenterNetTargets(heatmap, size, offset, mask)


def _max_pool_3x3(x: np.ndarray) -> np.ndarray:
    """Stride-1 3x3 max over the two grid axes of (h, w, C), padding with -inf (SAME)."""
    h, w = x.shape[:2]
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)  # (h + 2, w + 2, C)
    out = padded[0:h, 0:w]
    for dy in range(3):
        for dx in range(3):
            out = np.maximum(out, padded[dy:dy + h, dx:dx + w])
    return out


def decode_centernet(heatmap, size, offset, stride: int, k: int = 100, threshold: float = 0.1) -> List[np.ndarray]:
    """Detections from CenterNet's maps: 3x3 max-pool peaks, top ``k``, score >= ``threshold``.

    Args:
        heatmap: (N, h, w, num_classes) class scores in [0, 1] (after the sigmoid).
        size: (N, h, w, 2) box (w, h) in cells.
        offset: (N, h, w, 2) centre offset (dx, dy) in cells.
        stride: the grid's stride in input pixels.
        k: at most ``k`` detections per image (highest scores first).
        threshold: drop peaks scoring below it.

    Returns:
        One float32 ``(n_i, 6)`` array per image, rows ``[x0, y0, x1, y1, score,
        class]`` in input pixels, by decreasing score (ties in grid order).
    """
    heatmap = np.asarray(heatmap, np.float32)
    size = np.asarray(size, np.float32)
    offset = np.asarray(offset, np.float32)
    if heatmap.ndim != 4 or size.shape != heatmap.shape[:3] + (2,) or offset.shape != size.shape:
        raise ValueError(
            f"expected heatmap (N, h, w, C), size and offset (N, h, w, 2); received shapes "
            f"{heatmap.shape}, {size.shape}, {offset.shape}."
        )
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be a positive int, received {stride!r}.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, received {k!r}.")
    out = []
    for i in range(heatmap.shape[0]):
        # A peak is a cell equal to the max of its 3x3 neighbourhood (CenterNet's NMS).
        peaks = (heatmap[i] == _max_pool_3x3(heatmap[i])) & (heatmap[i] >= threshold)  # (h, w, C)
        ys, xs, cs = np.nonzero(peaks)  # grid order (row-major), which breaks score ties
        scores = heatmap[i, ys, xs, cs]
        order = np.argsort(-scores, kind="stable")[:k]
        ys, xs, cs, scores = ys[order], xs[order], cs[order], scores[order]
        cx = (xs + offset[i, ys, xs, 0]) * stride
        cy = (ys + offset[i, ys, xs, 1]) * stride
        w, h = size[i, ys, xs, 0] * stride, size[i, ys, xs, 1] * stride  # cells -> pixels
        out.append(
            np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, scores, cs.astype(np.float32)], axis=1)
            .astype(np.float32)
            .reshape(-1, 6)
        )
    return out
