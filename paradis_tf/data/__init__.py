"""Data loaders returning ``tf.data`` pipelines; nothing is downloaded."""

from paradis_tf.data.fashion_mnist import CLASS_NAMES, fashion_mnist, load_fashion_mnist
from paradis_tf.data.image_folder import image_folder

__all__ = ["CLASS_NAMES", "fashion_mnist", "image_folder", "load_fashion_mnist"]
