"""Model families built from split layers; each is a SplitModel: classifiers
(ResNet, MobileNetV1), super-resolution (WDSR), segmentation and detection
(CenterNet) on Fashion-MNIST scenes, and a vision transformer (ViT)."""

from paradis_tf.models.centernet import CenterNet, CenterNetLoss
from paradis_tf.models.cifar_resnet import CifarResNet
from paradis_tf.models.mobilenet_v1 import MobileNetV1
from paradis_tf.models.presets import PRESETS, build_model
from paradis_tf.models.resnet import ResNet
from paradis_tf.models.segmentation import SplitSegmenter
from paradis_tf.models.vit import ViT
from paradis_tf.models.wdsr import PSNR, WDSR

__all__ = ["CenterNet", "CenterNetLoss", "CifarResNet", "MobileNetV1", "PRESETS", "PSNR", "ResNet", "SplitSegmenter",
           "ViT", "WDSR", "build_model"]
