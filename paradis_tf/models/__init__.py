"""Model families built from split layers; each is a SplitModel."""

from paradis_tf.models.cifar_resnet import CifarResNet
from paradis_tf.models.mobilenet_v1 import MobileNetV1
from paradis_tf.models.presets import PRESETS, build_model
from paradis_tf.models.resnet import ResNet

__all__ = ["CifarResNet", "MobileNetV1", "PRESETS", "ResNet", "build_model"]
