"""Named model presets (data, not code) and ``build_model``."""

from __future__ import annotations

from paradis_tf.models.centernet import CenterNet
from paradis_tf.models.cifar_resnet import CifarResNet
from paradis_tf.models.mobilenet_v1 import MobileNetV1
from paradis_tf.models.resnet import ResNet
from paradis_tf.models.segmentation import SplitSegmenter
from paradis_tf.models.vit import ViT
from paradis_tf.models.wdsr import WDSR

__all__ = ["PRESETS", "build_model"]

PRESETS = {
    # ResNet-8: the CIFAR ResNet with one block per stage, for quick runs and tests.
    "resnet8": (CifarResNet, {"depth": 8}),
    "resnet20": (CifarResNet, {"depth": 20}),
    "resnet32": (CifarResNet, {"depth": 32}),
    "resnet56": (CifarResNet, {"depth": 56}),
    "resnet18": (ResNet, {"depth": 18}),
    "resnet34": (ResNet, {"depth": 34}),
    "resnet50": (ResNet, {"depth": 50}),
    "mobilenet_v1": (MobileNetV1, {}),
    # A small vision transformer: 16 tokens of 7x7 patches on 28x28 images.
    "vit_tiny": (ViT, {"patch_size": 7, "embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0}),
    # Dense tasks (issue 15): super-resolution on skimage photos, segmentation
    # and detection on Fashion-MNIST scenes (paradis_tf.data).
    "wdsr_x2": (WDSR, {"scale": 2, "num_blocks": 8, "filters": 32}),
    "wdsr_x3": (WDSR, {"scale": 3, "num_blocks": 8, "filters": 32}),
    "fcn_scenes": (SplitSegmenter, {"num_classes": 11, "input_shape": (64, 64, 1)}),
    "centernet_scenes": (CenterNet, {"num_classes": 10, "input_shape": (64, 64, 1)}),
}


def build_model(name: str, **kwargs):
    """Builds preset ``name`` (see ``PRESETS``); ``kwargs`` override its arguments.

    Example: ``build_model("resnet20", input_shape=(28, 28, 1), switches="1x1.0,2x0.5")``.
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown model {name!r}; presets: {sorted(PRESETS)}.")
    cls, defaults = PRESETS[name]
    return cls(**{**defaults, **kwargs})
