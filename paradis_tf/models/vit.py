"""ViT: a vision transformer whose every layer is split over devices.

Tokens stay a grid ``(B, h, w, E)`` from the patch embedding to the pooling:
every dense layer on tokens is then a 1x1 convolution for the exporter, and
pooling is a global average (no class token, which would need a token axis
beside the grid). Positions come from a depthwise 3x3 convolution added to
the patch embedding (the position encoding generator of CPVT, Chu et al.,
2021): channel-local, so it never communicates, and it works at any grid.
"""

from __future__ import annotations

import keras

from paradis_tf.layers.gate_config import GateConfig
from paradis_tf.layers.split_conv2d import SplitConv2D
from paradis_tf.layers.split_dense import SplitDense
from paradis_tf.layers.split_depthwise_conv2d import SplitDepthwiseConv2D
from paradis_tf.layers.split_layer_normalization import SplitLayerNormalization
from paradis_tf.layers.split_multi_head_attention import SplitMultiHeadAttention
from paradis_tf.models._blocks import ClassifierHead, check_classifier_args, scaled
from paradis_tf.models._classifier import SplitClassifier
from paradis_tf.switches import SwitchSet

__all__ = ["ViT"]

_ACTIVATIONS = ("gelu", "relu")


class PatchEmbedding:
    """Patches -> tokens: a split convolution of stride ``patch`` on the
    replicated image, plus a depthwise 3x3 position encoding (residual)."""

    def __init__(self, patch_size, embed_dim, switches, gates):
        self.conv = SplitConv2D(embed_dim, patch_size, switches, strides=patch_size, padding="valid",
                                replicated_input=True, gates=gates, name="patch_embed")
        self.position = SplitDepthwiseConv2D(3, switches, padding="same", name="position_encoding")

    def __call__(self, image, switch):
        x = self.conv(image, switch=switch)  # (B, H, W, C) -> (B, h, w, E), h = H / patch
        return keras.layers.Add()([x, self.position(x, switch=switch)])  # (B, h, w, E) + (B, h, w, E)


class TransformerBlock:
    """Pre-norm block: x + attention(LN(x)), then x + MLP(LN(x)).

    The MLP is two split dense layers on tokens, ``E -> mlp -> E``.
    """

    def __init__(self, embed_dim, num_heads, mlp_dim, switches, gates, activation, epsilon, name):
        self.norm1 = SplitLayerNormalization(switches, epsilon=epsilon, name=f"{name}_norm1")
        self.attention = SplitMultiHeadAttention(num_heads, embed_dim // num_heads, switches, gates=gates,
                                                 name=f"{name}_attention")
        self.norm2 = SplitLayerNormalization(switches, epsilon=epsilon, name=f"{name}_norm2")
        self.fc1 = SplitDense(mlp_dim, switches, gates=gates, activation=activation, name=f"{name}_mlp1")
        self.fc2 = SplitDense(embed_dim, switches, gates=gates, name=f"{name}_mlp2")

    def __call__(self, x, switch):
        y = self.attention(self.norm1(x, switch=switch), switch=switch)  # (B, h, w, E)
        x = keras.layers.Add()([x, y])
        y = self.fc1(self.norm2(x, switch=switch), switch=switch)  # (B, h, w, E) -> (B, h, w, mlp)
        y = self.fc2(y, switch=switch)  # (B, h, w, mlp) -> (B, h, w, E)
        return keras.layers.Add()([x, y])


@keras.saving.register_keras_serializable(package="paradis_tf")
class ViT(SplitClassifier):
    """Vision transformer on a grid of patch tokens, average-pooled.

    patch embedding (split conv on the replicated image, depthwise position
    encoding) -> ``depth`` pre-norm transformer blocks (split attention with
    heads spread over devices, split MLP, split layer norm) -> layer norm ->
    global average pooling -> per-device partial logits summed on device 0.

    Args:
        patch_size: side of a square patch; must divide the image's height
            and width.
        embed_dim: E, token channels; a multiple of ``num_heads``.
        depth: transformer blocks.
        num_heads: attention heads (each ``embed_dim // num_heads`` wide);
            every device of every switch needs at least one.
        mlp_ratio: hidden channels of the MLP over ``embed_dim``.
        num_classes, input_shape, switches, gates: as ``CifarResNet``.
        mlp_activation: ``"gelu"`` or ``"relu"``.
        epsilon: of every layer norm.
        width: channel multiplier (as the other families, for ``paradis
            train --width``): scales the channels of each head, so the
            embedding stays ``num_heads`` whole heads.
    """

    def __init__(self, patch_size=7, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0, num_classes=10,
                 input_shape=(28, 28, 1), switches="1x1.0", gates="learned", mlp_activation="gelu",
                 epsilon=1e-6, width=1.0, name=None, **kwargs):
        input_shape = check_classifier_args(num_classes, input_shape, width)
        for arg, value in (("patch_size", patch_size), ("embed_dim", embed_dim), ("depth", depth),
                           ("num_heads", num_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive int, received {value!r}.")
        if input_shape[0] % patch_size or input_shape[1] % patch_size:
            raise ValueError(
                f"The image size {input_shape[0]}x{input_shape[1]} is not divisible by patch_size={patch_size}: "
                "choose a patch size that divides both sides (e.g. 4 or 7 for 28x28), or resize the images."
            )
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}: every head has "
                "embed_dim // num_heads channels."
            )
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be a positive number, received {mlp_ratio!r}.")
        if mlp_activation not in _ACTIVATIONS:
            raise ValueError(f"mlp_activation must be one of {_ACTIVATIONS}, received {mlp_activation!r}.")
        switches = SwitchSet(switches)
        gates = GateConfig.coerce(gates)
        head_dim = scaled(embed_dim // num_heads, width)
        dim = head_dim * num_heads  # E at this width: whole heads
        mlp_dim = max(1, int(round(dim * mlp_ratio)))

        embed = PatchEmbedding(patch_size, dim, switches, gates)
        blocks = [TransformerBlock(dim, num_heads, mlp_dim, switches, gates, mlp_activation, epsilon,
                                   f"block{i + 1}") for i in range(depth)]
        norm = SplitLayerNormalization(switches, epsilon=epsilon, name="final_norm")
        head = ClassifierHead(num_classes, switches)

        inputs = keras.Input(input_shape, name="image")
        outputs = {}
        for switch in switches.names:
            x = embed(inputs, switch)  # (B, h, w, E)
            for block in blocks:
                x = block(x, switch)  # (B, h, w, E)
            outputs[switch] = head(norm(x, switch=switch), switch)  # (B, h, w, E) -> (B, classes)
        super().__init__(
            inputs, outputs, switches, name=name or "vit",
            architecture={"patch_size": patch_size, "embed_dim": embed_dim, "depth": depth,
                          "num_heads": num_heads, "mlp_ratio": mlp_ratio, "num_classes": num_classes,
                          "input_shape": list(input_shape), "gates": gates.get_config(),
                          "mlp_activation": mlp_activation, "epsilon": float(epsilon), "width": width},
            **kwargs,
        )
