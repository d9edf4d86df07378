"""The fusion graph: the JSON every runtime reads to run one switch across
devices. Validated against ``export/fusion_graph.schema.json`` on write and
on read, plus the cross-references a schema cannot express."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_PATH", "SCHEMA_VERSION", "FusionGraphError", "load_schema", "validate", "read_graph",
           "write_graph", "sha256_file", "input_range", "input_problem", "DEFAULT_PREPROCESSING"]

SCHEMA_VERSION = 1
# The package holds a link to export/fusion_graph.schema.json, the contract
# written next to the exporter and read by every runtime.
SCHEMA_PATH = Path(__file__).resolve().parent / "fusion_graph.schema.json"


class FusionGraphError(ValueError):
    """A fusion graph or bundle that a runtime must not run; names file and field."""


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return json.load(f)


def _field(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(root)"


def validate(doc: Any, where: str = "fusion graph") -> None:
    """Raises FusionGraphError naming ``where`` and the failing field."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise FusionGraphError(
            f"{where}: field '{_field(e.absolute_path)}' fails the fusion graph schema "
            f"(version {SCHEMA_VERSION}): {e.message}"
        )
    _check_references(doc, where)


def _check_references(doc: dict, where: str) -> None:
    """What the schema cannot say: names resolve, devices are numbered 0..D-1,
    every stage input is produced once, sends match their tensors."""
    tensors = doc["tensors"]
    devices = doc["devices"]
    d = len(devices)

    def fail(field: str, msg: str):
        raise FusionGraphError(f"{where}: field '{field}' {msg}")

    if len(doc["widths"]) != d:
        fail("widths", f"has {len(doc['widths'])} entries for {d} devices")
    produced = {doc["input"]["tensor"]: None}
    for i, dev in enumerate(devices):
        if dev["device"] != i:
            fail(f"devices[{i}].device", f"is {dev['device']}, expected {i} (devices in order)")
        names = [s["name"] for s in dev["stages"]]
        if len(set(names)) != len(names):
            fail(f"devices[{i}].stages", f"repeats a stage name: {names}")
        for j, stage in enumerate(dev["stages"]):
            for t in stage["inputs"] + stage["outputs"]:
                if t not in tensors:
                    fail(f"devices[{i}].stages[{j}]", f"names tensor '{t}', which is not in 'tensors'")
            for t in stage["outputs"]:
                if t in produced:
                    fail(f"devices[{i}].stages[{j}].outputs", f"produces '{t}' a second time")
                produced[t] = i
                if tensors[t]["device"] != i:
                    fail(f"tensors.{t}.device", f"is {tensors[t]['device']}, but device {i} produces it")
    for i, dev in enumerate(devices):
        for j, stage in enumerate(dev["stages"]):
            for t in stage["inputs"]:
                if t not in produced:
                    fail(f"devices[{i}].stages[{j}].inputs", f"reads '{t}', which no stage produces")
    for field in ("input", "output"):
        t = doc[field]["tensor"]
        if t not in tensors:
            fail(f"{field}.tensor", f"names '{t}', which is not in 'tensors'")
        if list(tensors[t]["shape"]) != list(doc[field]["shape"]):
            fail(f"{field}.shape", f"is {doc[field]['shape']} but tensors.{t}.shape is {tensors[t]['shape']}")
    fusion = doc["fusion"]
    if not 0 <= fusion["device"] < d:
        fail("fusion.device", f"is {fusion['device']} for {d} devices")
    for t in fusion["inputs"]:
        if t not in produced:
            fail("fusion.inputs", f"names '{t}', which no stage produces")
    if fusion["output"] != doc["output"]["tensor"]:
        fail("fusion.output", f"is '{fusion['output']}', not the output tensor '{doc['output']['tensor']}'")
    for i, send in enumerate(doc["sends"]):
        t = send["tensor"]
        if t not in tensors or produced.get(t) != send["from"]["device"]:
            fail(f"sends[{i}].tensor", f"'{t}' is not produced on device {send['from']['device']}")
        for end in ("from", "to"):
            if not 0 <= send[end]["device"] < d:
                fail(f"sends[{i}].{end}.device", f"is {send[end]['device']} for {d} devices")
        a, b = send["channels"]
        if b - a != tensors[t]["shape"][-1]:
            fail(f"sends[{i}].channels", f"[{a}, {b}) does not match the last axis of '{t}' "
                 f"({tensors[t]['shape'][-1]})")
    ids = [v["id"] for v in tensors.values()]
    if len(set(ids)) != len(ids):
        fail("tensors", "repeats an id")


# What the training loaders feed every model: pixel / 255.
DEFAULT_PREPROCESSING = {"layout": "NHWC", "pixel_scale": 1.0 / 255.0, "pixel_offset": 0.0}


def input_range(preprocessing: dict, margin: float = 0.0) -> tuple:
    """(low, high) of model inputs under ``input = pixel * pixel_scale +
    pixel_offset`` for pixels 0..255, widened by ``margin`` of its span on
    each side (a check's tolerance for augmentation or rounding)."""
    a = preprocessing["pixel_offset"]
    b = a + 255.0 * preprocessing["pixel_scale"]
    low, high = min(a, b), max(a, b)
    span = high - low
    return low - margin * span, high + margin * span


def input_problem(array, preprocessing: dict, margin: float = 0.5):
    """What is wrong with model inputs under ``preprocessing``, or None.

    Returns ``("non_finite", message)`` when ``array`` holds NaN or inf, and
    ``("scale", message)`` when its values fall outside the declared range
    widened by ``margin`` of its span (pixels left in 0..255 for a model that
    takes pixel / 255). One min and one max over the array: NaN and inf
    surface in them, so no separate finiteness pass is needed.
    """
    import numpy as np

    lo, hi = float(np.min(array)), float(np.max(array))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "non_finite", "holds NaN or infinite values"
    low, high = input_range(preprocessing, margin)
    if lo < low or hi > high:
        exact = input_range(preprocessing)
        return "scale", (
            f"ranges over [{lo:g}, {hi:g}], far outside [{exact[0]:g}, {exact[1]:g}] that the declared "
            f"preprocessing gives (pixel (0..255) * {preprocessing['pixel_scale']:g} + "
            f"{preprocessing['pixel_offset']:g})")
    return None


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(doc: dict, path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def read_json(path: Path, missing: str) -> Any:
    """The parsed file; FusionGraphError ``"{path}: {missing}"`` when absent."""
    if not path.is_file():
        raise FusionGraphError(f"{path}: {missing}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FusionGraphError(f"{path}: not valid JSON ({e}).") from None


def write_graph(doc: dict, path) -> None:
    """Validates, then writes ``doc`` as indented JSON."""
    validate(doc, str(path))
    write_json(doc, path)


def read_graph(path, check_files: bool = True) -> dict:
    """Reads and validates a fusion graph; with ``check_files`` every device
    file must exist next to it with its recorded sha256."""
    path = Path(path)
    doc = read_json(path, "no such fusion graph file.")
    validate(doc, str(path))
    if check_files:
        for i, dev in enumerate(doc["devices"]):
            file = path.parent / dev["file"]
            if not file.is_file():
                raise FusionGraphError(f"{path}: field 'devices[{i}].file': {file} is missing.")
            digest = sha256_file(file)
            if digest != dev["sha256"]:
                raise FusionGraphError(
                    f"{path}: field 'devices[{i}].sha256': {file} has sha256 {digest}, the graph "
                    f"records {dev['sha256']}; the file was changed or belongs to another export."
                )
    return doc
