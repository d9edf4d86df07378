"""Split layers: one full-width kernel, computed by the devices of a switch.

Every layer takes ``switch=`` (index or name) at call time. See DESIGN.md,
"Split layers", for the contract.
"""

from paradis_tf.layers._base import SplitLinearLayer, SwitchedLayer
from paradis_tf.layers._cost import LayerCost
from paradis_tf.layers.first_device_conv2d import FirstDeviceConv2D
from paradis_tf.layers.gate_config import GateConfig
from paradis_tf.layers.gate_variables import GateVariables
from paradis_tf.layers.partial_sum_fusion import PartialSumFusion
from paradis_tf.layers.pixel_shuffle import PixelShuffle
from paradis_tf.layers.split_conv2d import SplitConv2D
from paradis_tf.layers.split_dense import SplitDense
from paradis_tf.layers.split_depthwise_conv2d import SplitDepthwiseConv2D
from paradis_tf.layers.split_layer_normalization import SplitLayerNormalization
from paradis_tf.layers.split_multi_head_attention import SplitMultiHeadAttention
from paradis_tf.layers.switchable_batch_normalization import SwitchableBatchNormalization
from paradis_tf.layers.upsampling import Upsample2D
from paradis_tf.layers.weight_norm_split_conv2d import WeightNormSplitConv2D

__all__ = [
    "FirstDeviceConv2D",
    "GateConfig",
    "GateVariables",
    "LayerCost",
    "PartialSumFusion",
    "PixelShuffle",
    "SplitConv2D",
    "SplitDense",
    "SplitDepthwiseConv2D",
    "SplitLayerNormalization",
    "SplitMultiHeadAttention",
    "SplitLinearLayer",
    "SwitchableBatchNormalization",
    "SwitchedLayer",
    "Upsample2D",
    "WeightNormSplitConv2D",
]
