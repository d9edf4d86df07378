"""Evaluation metrics of the dense tasks, pure NumPy (no keras, no tensorflow).

Super-resolution: ``psnr`` and ``ssim`` on the BT.601 Y channel with a border
shave; segmentation: ``mean_iou``; detection: ``map50`` (VOC-style mAP at IoU 0.5).
"""

from paradis_tf.metrics._image import rgb_to_y
from paradis_tf.metrics.map50 import box_iou, map50
from paradis_tf.metrics.mean_iou import mean_iou
from paradis_tf.metrics.psnr import psnr
from paradis_tf.metrics.ssim import ssim

__all__ = ["box_iou", "map50", "mean_iou", "psnr", "rgb_to_y", "ssim"]
