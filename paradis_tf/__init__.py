"""paradis-tf: one vision model, trained once, run across several phones.

Split layers with trainable sparse communication (DISCO) over switches that
share one checkpoint (ParaDiS). See README.md and DESIGN.md.

Without Keras (a device that only runs exported bundles) the package still
imports, so ``paradis run --dataset fashion-mnist`` can read its test images
(``paradis_tf.data.load_fashion_mnist`` needs only numpy); everything else
needs Keras.
"""

try:
    import keras as _keras
except ImportError:  # a peer install ('paradis-tf[peer]'): only the numpy data readers work
    _keras = None

if _keras is not None:
    # Importing the layers and the model presets registers them with Keras, so
    # keras.models.load_model reads a checkpoint of either after
    # `import paradis_tf`.
    from paradis_tf import layers, models
    from paradis_tf.accounting import device_summary
    from paradis_tf.switches import Switch, SwitchSet
    from paradis_tf.training.link_budget import Link

__version__ = "0.1.0"

__all__ = ["Link", "Switch", "SwitchSet", "device_summary", "layers", "models", "__version__"]
