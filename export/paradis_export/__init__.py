"""paradis_export: the deployment side of paradis-tf.

partition a trained SplitModel per device, write one TFLite file per device
plus the fusion graph (JSON, schema in ``export/fusion_graph.schema.json``),
bundle several switches, and run a bundle in one process (reference executor).
"""

from paradis_export.bundle import export_bundle, read_manifest
from paradis_export.executor import ReferenceExecutor
from paradis_export.exporter import export_switch
from paradis_export.fusion_graph import FusionGraphError, read_graph, validate
from paradis_export.partitioner import partition

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
