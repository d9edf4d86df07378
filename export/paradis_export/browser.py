"""Device files for browsers: the int8 file with uint8 stage inputs and outputs.

LiteRT.js (the web peer's runtime) refuses a model whose signatures have
int8 input or output tensors ("Element type INT8 is not supported."), while
the wire and the graph carry int8. uint8 with zero point ``z + 128`` and the
same scale holds exactly the same real values, and the bytes differ by XOR
0x80 (``u = q + 128`` mod 256). So the browser file is the int8 file itself
with, per signature, one QUANTIZE op in front of each int8 input (uint8 ->
int8, the same scale: a requantization by exactly 1, ``q = u - 128``) and one
after each int8 output (int8 -> uint8). Every other op, weight and scale is
the int8 file's, so after the page XORs its inputs and outputs the bytes
equal the int8 file's bit for bit (tests/android_demo/test_web.py).

``browser.json`` next to the graph lists the files with their sha256 and the
graph's own sha256, which binds them to that export.
"""

from __future__ import annotations

import copy
from pathlib import Path

from paradis_export import _flatbuffer
from paradis_runtime.fusion_graph import sha256_file, write_json

__all__ = ["uint8_io", "write_browser_files", "BROWSER_JSON"]

BROWSER_JSON = "browser.json"
_INT8, _UINT8 = 9, 3  # schema TensorType


def _quantize_code(model) -> int:
    """The index of a QUANTIZE operator code, added if the model has none."""
    schema = _flatbuffer._schema()
    q = schema.BuiltinOperator.QUANTIZE
    for i, code in enumerate(model.operatorCodes or []):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == q:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = q
    code.deprecatedBuiltinCode = min(q, 127)  # the field is an int8: codes >= 127 use builtinCode alone
    code.version = 2  # int8 output / requantization
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _uint8_twin(tensor, name: bytes):
    """A uint8 tensor holding what the int8 ``tensor`` holds: same shape and
    scale, zero point + 128."""
    twin = copy.deepcopy(tensor)
    twin.type = _UINT8
    twin.name = name
    twin.buffer = 0  # no data: an activation
    twin.quantization.zeroPoint = [int(z) + 128 for z in tensor.quantization.zeroPoint]
    return twin


def uint8_io(model_bytes: bytes, what: str = "device file") -> bytes:
    """The int8 model with uint8 signature inputs and outputs (see module doc)."""
    schema = _flatbuffer._schema()
    model = _flatbuffer.read(model_bytes)
    opcode = _quantize_code(model)
    changed = 0
    for sig in model.signatureDefs:
        sg = model.subgraphs[sig.subgraphIndex]
        first, last = [], []
        for maps, is_input in ((sig.inputs, True), (sig.outputs, False)):
            for m in maps:
                index = m.tensorIndex
                t = sg.tensors[index]
                if t.type != _INT8:
                    continue
                q = t.quantization
                if q is None or q.scale is None or len(q.scale) != 1:
                    raise ValueError(f"{what}: signature tensor {m.name!r} is int8 without one scale and zero point; "
                                     "a browser file needs per-tensor quantization on the wire.")
                sg.tensors.append(_uint8_twin(t, (t.name or b"") + (b"_u8_in" if is_input else b"_u8_out")))
                twin = len(sg.tensors) - 1
                op = schema.OperatorT()
                op.opcodeIndex = opcode
                op.inputs, op.outputs = ([twin], [index]) if is_input else ([index], [twin])
                (first if is_input else last).append(op)
                # The subgraph's and the signature's I/O now name the uint8 twin.
                if is_input:
                    sg.inputs = [twin if i == index else i for i in sg.inputs]
                else:
                    sg.outputs = [twin if i == index else i for i in sg.outputs]
                m.tensorIndex = twin
                changed += 1
        sg.operators = first + list(sg.operators or []) + last
    if not changed:
        raise ValueError(f"{what}: no int8 signature input or output: only int8 files need a browser file.")
    return _flatbuffer.write(model)


def write_browser_files(directory: Path, graph: dict) -> dict:
    """Writes ``device{k}.browser.tflite`` for every device of the int8 graph
    in ``directory`` and ``browser.json``; returns that document."""
    directory = Path(directory)
    if graph["precision"] != "int8":
        raise ValueError(f"{directory}: browser files are for int8 graphs (LiteRT.js runs float32 files as they "
                         f"are), received precision {graph['precision']!r}.")
    devices = []
    for dev in graph["devices"]:
        source = directory / dev["file"]
        target = directory / f"{Path(dev['file']).stem}.browser.tflite"
        data = uint8_io(source.read_bytes(), what=f"{source}")
        target.write_bytes(data)
        devices.append({"device": dev["device"], "file": target.name, "sha256": sha256_file(target),
                        "file_bytes": len(data), "io": "uint8", "source": dev["file"], "source_sha256": dev["sha256"]})
    doc = {
        "schema": "paradis-browser-files", "version": 1,
        "graph_sha256": sha256_file(directory / "fusion_graph.json"),
        "why": "LiteRT.js refuses int8 signature inputs and outputs; these files are the int8 files with uint8 "
               "I/O (zero point + 128, same scale): a browser XORs the wire's int8 bytes with 0x80.",
        "devices": devices,
    }
    write_json(doc, directory / BROWSER_JSON)
    return doc
