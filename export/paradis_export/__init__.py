"""paradis_export: the deployment side of paradis-tf.

partition a trained SplitModel per device, write one TFLite file per device
plus the fusion graph (JSON, schema in ``export/fusion_graph.schema.json``),
and bundle several switches. Reading and running bundles lives in
``paradis_runtime`` (no Keras, no TensorFlow); its main names are
re-exported here for convenience.
"""

from paradis_export.bundle import export_bundle
from paradis_export.exporter import export_switch
from paradis_export.partitioner import partition
from paradis_runtime import FusionGraphError, ReferenceExecutor, read_graph, read_manifest, validate

__version__ = "0.1.0"

__all__ = [
    "FusionGraphError",
    "ReferenceExecutor",
    "export_bundle",
    "export_switch",
    "partition",
    "read_graph",
    "read_manifest",
    "validate",
]
