"""paradis_runtime: runs bundles; imports neither Keras nor TensorFlow.

What a peer needs and nothing more (numpy, jsonschema, ai-edge-litert): the
fusion graph and manifest readers with their checks, the stage schedule, and
the executors. ``paradis_export`` writes what this package reads and imports
it; nothing here imports ``paradis_export`` or ``paradis_tf``.
"""

from paradis_runtime._connection import TLS, PeerConfig
from paradis_runtime._program import InputCheck, SelectionError
from paradis_runtime.coordinator import Coordinator, RequestFailed, Result, connect
from paradis_runtime.executor import ReferenceExecutor, resolve_graph
from paradis_runtime.fusion_graph import FusionGraphError, read_graph, validate
from paradis_runtime.link import Link
from paradis_runtime.manifest import read_manifest
from paradis_runtime.peer import Peer, serve

__version__ = "0.1.0"

__all__ = [
    "Coordinator", "FusionGraphError", "InputCheck", "Link", "Peer", "PeerConfig", "ReferenceExecutor", "RequestFailed",
    "Result", "SelectionError", "TLS", "connect", "read_graph", "read_manifest", "resolve_graph", "serve", "validate",
]
