"""paradis_export: the deployment side of paradis-tf.

Partitioner, TFLite writer, fusion graph and runtime peers are built on top of
``paradis_tf`` split layers (DESIGN.md, "Export"). This package is installed by
the same distribution as ``paradis_tf`` under a distinct name so the wheel does
not install a top-level module called ``export``.
"""

__version__ = "0.1.0"
