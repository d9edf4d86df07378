"""Keras models of a device's stages (stock Keras layers, sliced weights):
what the TFLite writer exports and what int8 calibration runs in float."""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from paradis_export import kinds
from paradis_export.partitioner import DeviceOp, Partition, Stage


class _Slice(keras.layers.Layer):
    """x[..., start:stop]: a contiguous channel slice (STRIDED_SLICE in TFLite)."""

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[..., self.start : self.stop]  # (1, ..., C) -> (1, ..., stop - start)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.stop - self.start,)


class _Affine(keras.layers.Layer):
    """x * scale + offset per channel: a batch norm that could not be folded."""

    def __init__(self, scale, offset, **kwargs):
        super().__init__(**kwargs)
        self.scale_value = np.asarray(scale, "float32")
        self.offset_value = np.asarray(offset, "float32")

    def call(self, x):
        return x * ops.convert_to_tensor(self.scale_value) + ops.convert_to_tensor(self.offset_value)


def _activation(name):
    return {None: None, "relu": "relu", "relu6": "relu6", "gelu": "gelu"}[name]


def _layer(op: DeviceOp, in_shape: tuple):
    p = op.params
    if op.kind == "conv":
        kh, kw, rows, cols = p["kernel"].shape
        layer = keras.layers.Conv2D(cols, (kh, kw), strides=p["strides"], padding=p["padding"],
                                    dilation_rate=p["dilation_rate"], use_bias=p["bias"] is not None,
                                    activation=_activation(p["activation"]), name=op.name)
    elif op.kind == "dense":
        layer = keras.layers.Dense(p["kernel"].shape[1], use_bias=p["bias"] is not None,
                                   activation=_activation(p["activation"]), name=op.name)
    elif op.kind == "depthwise":
        layer = keras.layers.DepthwiseConv2D(p["kernel"].shape[:2], strides=p["strides"], padding=p["padding"],
                                             dilation_rate=p["dilation_rate"], use_bias=p["bias"] is not None,
                                             activation=_activation(p["activation"]), name=op.name)
    elif op.kind == "affine":
        return _Affine(p["scale"], p["offset"], name=op.name)
    elif op.kind == "act":
        if p["activation"] is None:
            return None
        if p["activation"] == "gelu":
            return keras.layers.Activation("gelu", name=op.name)
        return keras.layers.ReLU(max_value=6.0 if p["activation"] == "relu6" else None, name=op.name)
    elif kinds.for_device_kind(op.kind) is not None:
        return kinds.for_device_kind(op.kind).stage_layer(op)
    elif op.kind == "add":
        return keras.layers.Add(name=op.name)
    elif op.kind == "concat":
        return keras.layers.Concatenate(axis=-1, name=op.name)
    elif op.kind == "slice":
        return _Slice(p["start"], p["stop"], name=op.name)
    elif op.kind == "pool":
        if p["pool"] == "global_average":
            return keras.layers.GlobalAveragePooling2D(name=op.name)
        cls = keras.layers.MaxPooling2D if p["pool"] == "max" else keras.layers.AveragePooling2D
        return cls(p["pool_size"], strides=p["strides"], padding=p["padding"], name=op.name)
    else:
        raise ValueError(f"No Keras layer for device op kind {op.kind!r}.")
    layer.build(in_shape)
    weights = [p["kernel"]] + ([p["bias"]] if p["bias"] is not None else [])
    layer.set_weights([np.asarray(w, "float32") for w in weights])
    return layer


def stage_model(stage: Stage, shapes: dict, batch_size=1) -> keras.Model:
    """A functional model: named inputs -> {output name: tensor}. Batch 1 is
    what is exported; ``batch_size=None`` runs calibration in batches."""
    env = {}
    inputs = []
    for name in stage.inputs:
        env[name] = keras.Input(shape=shapes[name][1:], batch_size=batch_size, name=name)
        inputs.append(env[name])
    for op in stage.ops:
        args = [env[t] for t in op.inputs]
        layer = _layer(op, shapes[op.inputs[0]])
        if layer is None:
            env[op.output] = args[0]
        else:
            env[op.output] = layer(args if len(args) > 1 else args[0])  # add, concat, kinds' multi-input ops
    return keras.Model(inputs, {name: env[name] for name in stage.outputs}, name=stage.name)


def stage_models(part: Partition, batch_size=1) -> list:
    """[device] -> {stage name: keras.Model}."""
    return [{s.name: stage_model(s, part.shapes, batch_size) for s in prog.stages} for prog in part.devices]


def run_keras(part: Partition, models: list, image: np.ndarray, record=None) -> np.ndarray:
    """Runs the stage models in dependency order on images (B, H, W, C)
    (B = 1 unless the models were built with ``batch_size=None``); returns
    the fused output. ``record(device, stage, inputs)`` sees every
    stage's inputs (int8 calibration)."""
    from paradis_runtime.schedule import run_schedule

    def run_stage(device, stage, feeds):
        if record is not None:
            record(device, stage.name, feeds)
        model = models[device][stage.name]
        out = model([feeds[n] for n in stage.inputs], training=False)
        return {k: np.asarray(ops.convert_to_numpy(v)) for k, v in out.items()}

    fused, _ = run_schedule(part_like(part), image, run_stage)
    return fused


def part_like(part: Partition):
    """The scheduling view of a Partition (same as a fusion graph's)."""
    from paradis_runtime.schedule import Plan

    return Plan(
        input_name=part.input_name,
        stages=[[s for s in prog.stages] for prog in part.devices],
        fusion=part.fusion,
        quantization={},
    )
