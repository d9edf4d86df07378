"""Data without downloads: Fashion-MNIST (``tf.data`` pipelines and NumPy
arrays), image folders, Fashion-MNIST scenes for segmentation and detection
(with CenterNet targets), and super-resolution patches from the photos in
scikit-image's wheel."""

from paradis_tf.data.centernet import CenterNetTargets, centernet_targets, decode_centernet
from paradis_tf.data.fashion_mnist import CLASS_NAMES, fashion_mnist, load_fashion_mnist
from paradis_tf.data.image_folder import image_folder
from paradis_tf.data.photos import EVAL_PHOTOS, TRAIN_PHOTOS, bicubic_resize, load_photo, sr_eval_images, sr_patches
from paradis_tf.data.scenes import Scenes, fashion_scenes

__all__ = [
    "CLASS_NAMES", "CenterNetTargets", "EVAL_PHOTOS", "Scenes", "TRAIN_PHOTOS", "bicubic_resize",
    "centernet_targets", "decode_centernet", "fashion_mnist", "fashion_scenes", "image_folder",
    "load_fashion_mnist", "load_photo", "sr_eval_images", "sr_patches",
]
