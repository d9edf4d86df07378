"""Op kinds as files, one per kind: its trace (Keras layer -> logical ops),
its slicing (logical op -> one device's ops, and the sends it needs), its
stage layers (device op -> stock Keras layer for the TFLite writer) and its
FLOPs. The tracer (``_graph.py``), the partitioner and the stage builder
(``_keras_stages.py``) look a kind up here before their built-in rules, so a
new layer family adds a file here, not a branch in each of them.

The kinds written inline in those three files (conv, depthwise, batch norm,
activations, pooling, fusion) predate the registry and move here as they are
touched.
"""

from paradis_export.kinds._registry import OpKind, SliceContext, for_device_kind, for_layer, get, register
from paradis_export.kinds import (  # noqa: F401  (they register themselves)
    attention,
    first_device_conv,
    layer_norm,
    pixel_shuffle,
    upsample,
)

__all__ = ["OpKind", "SliceContext", "for_device_kind", "for_layer", "get", "register"]
