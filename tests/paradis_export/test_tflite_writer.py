"""The TFLite writer's own checks on what the converter made."""

import keras
import pytest

from paradis_export.partitioner import Stage
from paradis_export.tflite_writer import convert_device


def _two_slices(same: bool) -> keras.Model:
    # (1, 4, 4, 3) -> two slices of the last axis; equal ones are one op to the converter.
    x = keras.Input(batch_shape=(1, 4, 4, 3), name="x")
    a = keras.layers.Lambda(lambda t: t[..., 0:1], name="a")(x)
    b = keras.layers.Lambda(lambda t: t[..., 0:1] if same else t[..., 1:2], name="b")(x)
    return keras.Model(x, {"a": a, "b": b})


def test_a_stage_whose_outputs_the_converter_merged_is_refused():
    stage = Stage("stage0", [], inputs=["x"], outputs=["a", "b"])
    shapes = {"x": (1, 4, 4, 3)}
    with pytest.raises(ValueError, match=r"device 1: stage stage0's outputs \[\['a', 'b'\]\] are one tensor"):
        convert_device({"stage0": _two_slices(same=True)}, [stage], shapes, what="device 1")
    assert convert_device({"stage0": _two_slices(same=False)}, [stage], shapes, what="device 1")
