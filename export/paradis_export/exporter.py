"""export_switch: one switch of a trained model -> per-device ``.tflite``
files plus ``fusion_graph.json`` in a directory."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from paradis_export import _flatbuffer, kinds
from paradis_export._keras_stages import run_keras, stage_models
from paradis_runtime.fusion_graph import DEFAULT_PREPROCESSING, SCHEMA_VERSION, input_problem, sha256_file, write_graph
from paradis_export.partitioner import Partition, partition
from paradis_export.tflite_writer import convert_device

__all__ = ["export_switch", "calibration_samples", "int8_problem"]


def _check_images(images, shape: tuple, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != len(shape) or tuple(images.shape[1:]) != tuple(shape[1:]) or len(images) < 1:
        raise ValueError(
            f"{what} must be an array (N, {', '.join(map(str, shape[1:]))}) of model inputs, received shape "
            f"{images.shape}."
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{what} must hold floats (preprocessed model inputs), received dtype {images.dtype}.")
    return images.astype("float32")


def _check_scale(images: np.ndarray, preprocessing: dict, what: str) -> None:
    """Refuses non-finite inputs and inputs outside the declared preprocessing's
    range: int8 scales calibrated on 0..255 where the model takes 0..1 leave
    a bundle that scores at chance, without a word."""
    problem = input_problem(images, preprocessing)
    if problem is not None:
        raise ValueError(f"{what} {problem[1]}: preprocess the calibration images as in training (e.g. "
                         "images / 255), or pass the preprocessing the model was trained with.")


def calibration_samples(part: Partition, images: np.ndarray, batch_size: int = 64, models=None) -> list:
    """[device] -> {stage name: [feeds, ...]}: every stage's float inputs on
    real images, computed by the float per-device programs (``models``:
    built with ``batch_size=None``, or built here)."""
    models = models or stage_models(part, batch_size=None)
    samples = [{s.name: [] for s in prog.stages} for prog in part.devices]

    def record(device, stage, feeds):
        n = len(next(iter(feeds.values())))
        for i in range(n):
            samples[device][stage].append({k: np.asarray(v[i : i + 1]) for k, v in feeds.items()})

    for start in range(0, len(images), batch_size):
        run_keras(part, models, images[start : start + batch_size], record=record)
    return samples


def _quantization(info: tuple) -> Optional[dict]:
    dtype, scale, zero_point = info
    return None if scale is None else {"scale": scale, "zero_point": zero_point}


def int8_problem(model, switch) -> Optional[str]:
    """Why ``switch`` of ``model`` cannot export in int8, or None if it can
    (checked before calibrating: the same check ``export_switch`` makes)."""
    return _int8_problem(partition(model, switch, receive="sum"))


def _int8_problem(part: Partition) -> Optional[str]:
    float_only = [op for op in part.graph.ops if kinds.get(op.kind) is not None and not kinds.get(op.kind).int8]
    if not float_only:
        return None
    # Layer norm: the converter folds an input's scale into constants after
    # its subtraction, so stage inputs cannot take their producer's int8
    # parameters (_unify_quantization).
    names = ", ".join(op.name for op in float_only[:3]) + (", ..." if len(float_only) > 3 else "")
    return (f"switch {part.switch.name} has layers of kinds {sorted({op.kind for op in float_only})} ({names}) that "
            "export in float32 only so far")


def export_switch(
    model,
    switch,
    directory,
    int8: bool = False,
    calibration: Optional[np.ndarray] = None,
    preprocessing: Optional[dict] = None,
    progress: Optional[Callable[[str], None]] = None,
    browser: bool = False,
) -> dict:
    """Writes ``device{k}.tflite`` for each device and ``fusion_graph.json``.

    Args:
        model: a trained SplitModel (gates binary: ``finalize_gates`` done).
        switch: the switch to export (name or index).
        directory: an existing, empty directory.
        int8: full-integer quantization; needs ``calibration``.
        calibration: (N, H, W, C) float model inputs (real samples) for int8.
        preprocessing: the input's pixel mapping (see the schema), default
            ``pixel / 255``.
        progress: called with a line per step (e.g. ``print``).
        browser: int8 only: also write ``device{k}.browser.tflite`` (uint8
            stage I/O, which LiteRT.js accepts where it refuses int8) and
            ``browser.json`` (``paradis_export.browser``). Float32 files run
            in browsers as they are, so float32 ignores it.

    Returns:
        The fusion graph (a dict, as written).
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"Export needs the TensorFlow backend (TFLite conversion), the active backend is "
            f"'{keras.backend.backend()}': run with KERAS_BACKEND=tensorflow. "
            "Checkpoints trained on JAX load as they are."
        )
    say = progress or (lambda line: None)
    directory = Path(directory)
    # int8: one convolution per received piece, so each keeps its sender's scale.
    part = partition(model, switch, receive="sum" if int8 else "concat")
    sw = part.switch
    if int8:
        problem = _int8_problem(part)
        if problem:
            raise ValueError(f"int8=True: {problem}; export with int8=False.")
    say(f"[{sw.name}] partitioned: {sw.num_devices} device(s), "
        f"{[len(p.stages) for p in part.devices]} stages, {len(part.sends)} sends")
    # Any batch: calibration runs in batches; the export traces them at batch 1.
    models = stage_models(part, batch_size=None)
    samples = None
    if int8:
        if calibration is None:
            raise ValueError("int8=True needs calibration images (real samples), received calibration=None.")
        calibration = _check_images(calibration, part.graph.input_shape, "calibration")
        _check_scale(calibration, {**DEFAULT_PREPROCESSING, **(preprocessing or {})}, "calibration")
        samples = calibration_samples(part, calibration, models=models)
        stages = sum(len(p.stages) for p in part.devices)
        say(f"[{sw.name}] calibration: {len(calibration)} images through {stages} stages")
    flat = []
    for prog in part.devices:
        flat.append(convert_device(models[prog.device], prog.stages, part.shapes, int8=int8,
                                   samples=None if samples is None else samples[prog.device],
                                   what=f"switch {sw.name} device {prog.device}"))
        say(f"[{sw.name}] device {prog.device}: converted ({len(flat[-1]):,} bytes)")
    quant = {}
    if int8:
        flat, quant = _unify_quantization(part, flat)
    doc = _graph_doc(model, part, directory, flat, quant, int8, preprocessing)
    write_graph(doc, directory / "fusion_graph.json")
    if browser and int8:
        from paradis_export.browser import write_browser_files

        write_browser_files(directory, doc)
        say(f"[{sw.name}] browser files: uint8 I/O for LiteRT.js")
    return doc


def _unify_quantization(part: Partition, flat: list) -> tuple:
    """Every stage input takes its producer's int8 parameters (the image:
    device 0's), so bytes cross stages and devices unchanged. First, the
    products that calibration only saw as zeros get a scale XNNPACK accepts
    (``_flatbuffer.widen_empty_ranges``)."""
    objs = [_flatbuffer.read(b) for b in flat]
    for obj in objs:
        _flatbuffer.widen_empty_ranges(obj)
    quant = {}
    for prog in part.devices:
        for stage in prog.stages:
            for t in stage.outputs:
                quant[t] = _flatbuffer.tensor_quantization(objs[prog.device], stage.name, t, output=True)
    first = part.devices[0].stages[0]
    quant[part.input_name] = _flatbuffer.tensor_quantization(objs[0], first.name, part.input_name, output=False)
    for prog in part.devices:
        for stage in prog.stages:
            for t in stage.inputs:
                _, scale, zero_point = quant[t]
                _flatbuffer.set_input_quantization(objs[prog.device], stage.name, t, scale, zero_point)
    return [_flatbuffer.write(o) for o in objs], quant


def _graph_doc(model, part: Partition, directory: Path, flat: list, quant: dict, int8: bool,
               preprocessing: Optional[dict]) -> dict:
    sw = part.switch
    elem = 1 if int8 else 4
    dtype = "int8" if int8 else "float32"
    producer = {part.input_name: None}
    for prog in part.devices:
        for s in prog.stages:
            for t in s.outputs:
                producer[t] = prog.device
    names = [part.input_name] + sorted((t for t in producer if t != part.input_name),
                                       key=lambda t: (producer[t], t))
    tensors = {}
    for i, t in enumerate(names):
        tensors[t] = {
            "id": i,
            "shape": [int(s) for s in part.shapes[t]],
            "dtype": dtype,
            "quantization": _quantization(quant[t]) if int8 else None,
            "device": producer[t],
        }
    nbytes = lambda t: int(np.prod(part.shapes[t])) * elem
    sends = [
        {"tensor": s.tensor, "source": s.source,
         "from": {"device": s.sender, "stage": s.sender_stage},
         "to": {"device": s.receiver, "stage": s.receiver_stage or "fusion"},
         "channels": [int(s.channels[0]), int(s.channels[1])], "bytes": nbytes(s.tensor)}
        for s in part.sends
    ]
    devices = []
    for prog, data in zip(part.devices, flat):
        file = directory / f"device{prog.device}.tflite"
        with open(file, "wb") as f:
            f.write(data)
        devices.append({
            "device": prog.device, "width": prog.width, "file": file.name, "sha256": sha256_file(file),
            "file_bytes": len(data), "params": int(prog.params), "flops": int(prog.flops),
            "bytes_sent": sum(s["bytes"] for s in sends if s["from"]["device"] == prog.device),
            "bytes_received": sum(s["bytes"] for s in sends if s["to"]["device"] == prog.device),
            "stages": [{"name": s.name, "signature": s.name, "inputs": list(s.inputs), "outputs": list(s.outputs),
                        "flops": int(s.flops)} for s in prog.stages],
        })
    channels = part.graph.input_shape[-1]
    pre = {**DEFAULT_PREPROCESSING, "color": "grayscale" if channels == 1 else "rgb"}
    pre.update(preprocessing or {})
    out = part.fusion["output"]
    # What the fused output is: the model's task says it (Task.output_kind);
    # a model without one is a classifier.
    task = getattr(model, "task", None)
    kind = getattr(task, "output_kind", None) or "logits"
    return {
        "schema": "paradis-fusion-graph",
        "version": SCHEMA_VERSION,
        "model": model.name,
        "switch": sw.name,
        "widths": [float(w) for w in sw.widths],
        "precision": dtype,
        "input": {"tensor": part.input_name, "shape": [int(s) for s in part.graph.input_shape], "dtype": "float32",
                  "device": 0, "preprocessing": pre},
        "output": {"tensor": out, "shape": [int(s) for s in part.shapes[out]], "dtype": "float32", "kind": kind},
        "fusion": dict(part.fusion),
        "devices": devices,
        "tensors": {**tensors, out: {"id": len(tensors), "shape": [int(s) for s in part.shapes[out]],
                                     "dtype": "float32", "quantization": None, "device": part.fusion["device"]}},
        "sends": sends,
        "totals": {
            "bytes_per_inference": sum(s["bytes"] for s in sends),
            "input_bytes": int(np.prod(part.graph.input_shape)) * elem,
            "params": sum(d["params"] for d in devices),
            "flops": sum(d["flops"] for d in devices),
        },
    }
