"""TFLite writer: one ``.tflite`` per device, one signature per stage.

Route (DESIGN.md, "Facts"): ``keras.export.ExportArchive`` with one endpoint
per stage -> SavedModel -> ``TFLiteConverter.from_saved_model(signature_keys)``
with TFLite builtin ops only (no Flex, no custom op). Float32, or full int8
from real calibration samples keyed by signature.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from paradis_export import _flatbuffer

__all__ = ["convert_device", "check_operators", "FORBIDDEN_OPERATORS"]

# GATHER is not delegated by XNNPACK; Flex and custom ops need runtimes phones lack.
FORBIDDEN_OPERATORS = ("GATHER", "GATHER_ND", "EMBEDDING_LOOKUP")


def check_operators(model_bytes: bytes, what: str) -> list:
    """The model's operator names; ValueError naming ``what`` for a forbidden one."""
    names = _flatbuffer.operator_names(model_bytes)
    bad = [n for n in names if n in FORBIDDEN_OPERATORS or n.startswith("CUSTOM")]
    if bad:
        raise ValueError(f"{what}: the converted model contains {bad}; exported models must use "
                         "TFLite builtin ops only, without GATHER.")
    return names


def _endpoint(model):
    def endpoint(*args):
        return model(list(args), training=False)

    return endpoint


def convert_device(models: dict, stages: list, shapes: dict, int8: bool = False, samples=None,
                   what: str = "device") -> bytes:
    """Converts one device's stage models into one flatbuffer.

    Args:
        models: ``{stage name: keras.Model}`` (inputs and outputs named).
        stages: the device's Stage list (signature order).
        shapes: tensor name -> shape.
        int8: full-integer quantization (int8 inputs and outputs).
        samples: for int8, ``{stage name: [ {input name: float array}, ... ]}``.
    """
    import tensorflow as tf
    import keras

    archive = keras.export.ExportArchive()
    for stage in stages:
        model = models[stage.name]
        archive.track(model)

        archive.add_endpoint(
            stage.name,
            _endpoint(model),
            input_signature=[tf.TensorSpec(shapes[n], tf.float32, name=n) for n in stage.inputs],
        )
    with tempfile.TemporaryDirectory(prefix="paradis_export_") as tmp:
        path = os.path.join(tmp, "saved_model")
        archive.write_out(path, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=[s.name for s in stages])
        if int8:
            if not samples or any(not samples.get(s.name) for s in stages):
                raise ValueError(f"{what}: int8 conversion needs calibration samples for every stage.")

            def representative():
                count = max(len(v) for v in samples.values())
                for i in range(count):
                    for stage in stages:
                        batch = samples[stage.name]
                        yield stage.name, {n: np.asarray(v, "float32") for n, v in batch[i % len(batch)].items()}

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        model_bytes = converter.convert()
    check_operators(model_bytes, what)
    check_distinct_outputs(model_bytes, stages, what)
    return model_bytes


def check_distinct_outputs(model_bytes: bytes, stages: list, what: str) -> None:
    """ValueError if two outputs of one stage's signature are one tensor.

    The converter merges identical ops (two equal slices, say) into one
    tensor; a signature then names it twice, and LiteRT.js returns such
    outputs under the tensor's one name, so a browser peer would miss the
    other. The partitioner makes each slice once; this keeps it so.
    """
    model = _flatbuffer.read(model_bytes)
    for stage in stages:
        outputs = _flatbuffer.signature_tensors(model, stage.name)[2]
        by_tensor: dict = {}
        for name, index in outputs.items():
            by_tensor.setdefault(index, []).append(name)
        shared = [names for names in by_tensor.values() if len(names) > 1]
        if shared:
            raise ValueError(f"{what}: stage {stage.name}'s outputs {shared} are one tensor in the converted "
                             "file (the converter merged equal ops); a browser peer would read only one of each. "
                             "The partitioner must make each sent slice once: please report this model.")
