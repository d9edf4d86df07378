"""paradis-tf: one vision model, trained once, run across several phones.

Split layers with trainable sparse communication (DISCO) over switches that
share one checkpoint (ParaDiS). See README.md and DESIGN.md.
"""

from paradis_tf import layers
from paradis_tf.accounting import device_summary
from paradis_tf.switches import Switch, SwitchSet
from paradis_tf.training.link_budget import Link

__version__ = "0.1.0"

__all__ = ["Link", "Switch", "SwitchSet", "device_summary", "layers", "__version__"]
