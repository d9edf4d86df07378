"""Reading (and one narrow edit of) TFLite flatbuffers, via the schema that
ships with TensorFlow."""

from __future__ import annotations

import numpy as np

_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8"}


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def read(model_bytes: bytes):
    """The flatbuffer as a mutable object tree (schema ModelT)."""
    schema = _schema()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(model_bytes), 0))


def write(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def operator_names(model_bytes: bytes) -> list:
    """Every operator code of the model: builtin names (``CONV_2D``) and
    custom codes as ``CUSTOM:<name>`` (Flex ops are custom ops ``Flex...``)."""
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for code in read(model_bytes).operatorCodes or []:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = names.get(builtin, str(builtin))
        if name == "CUSTOM":
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
            name = f"CUSTOM:{custom}"
        out.append(name)
    return out


def _op_name(model, op) -> str:
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    code = model.operatorCodes[op.opcodeIndex]
    return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")


def count_params(model_bytes: bytes) -> int:
    """Elements of the constant weight tensors (kernels, biases, per-channel
    constants): float tensors with data, and int8/int32 data feeding the
    weight or bias operand of a conv/dense op. Shape and index constants
    (int32 operands of slices, reductions) are not parameters, nor is a bias
    of zeros: the converter gives one to every CONV_2D built without a bias
    (e.g. a receiving layer's remote part), where it adds nothing."""
    model = read(model_bytes)
    total = 0

    def data(t):
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        return None if buf is None or buf.data is None or len(buf.data) == 0 else buf.data

    for sg in model.subgraphs:
        weight_operands, zero_biases = set(), set()
        for op in sg.operators or []:
            name = _op_name(model, op)
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                inputs = list(op.inputs)
                weight_operands.update(i for i in inputs[1:] if i >= 0)
                if len(inputs) > 2 and inputs[2] >= 0:
                    bias = data(sg.tensors[inputs[2]])
                    if bias is not None and not np.asarray(bias).any():
                        zero_biases.add(inputs[2])
            elif name in ("MUL", "ADD"):
                weight_operands.update(i for i in op.inputs if i >= 0)
        for i, t in enumerate(sg.tensors):
            if data(t) is None or i in zero_biases:
                continue
            dtype = _TYPES.get(t.type)
            if dtype != "float32" and i not in weight_operands:
                continue
            total += int(np.prod(t.shape)) if t.shape is not None and len(t.shape) else 1
    return total


def signature_tensors(model, key: str) -> tuple:
    """(subgraph, {input name: tensor index}, {output name: tensor index})."""
    for sig in model.signatureDefs:
        name = sig.signatureKey.decode() if isinstance(sig.signatureKey, bytes) else sig.signatureKey
        if name == key:
            dec = lambda m: m.name.decode() if isinstance(m.name, bytes) else m.name
            return (
                model.subgraphs[sig.subgraphIndex],
                {dec(m): m.tensorIndex for m in sig.inputs},
                {dec(m): m.tensorIndex for m in sig.outputs},
            )
    raise KeyError(key)


# Ops whose kernels read an input's scale and zero point when the interpreter
# prepares them, with no constant that depends on them.
_SCALE_READING = {"CONCATENATION", "ADD", "MEAN", "QUANTIZE", "RELU", "RELU6", "MAX_POOL_2D",
                  "AVERAGE_POOL_2D", "STRIDED_SLICE", "SLICE", "MUL", "DEQUANTIZE"}
# Ops whose int32 bias was quantized with scale input_scale * weight_scale.
_BIASED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


# XNNPACK refuses an int8 ADD with an input scale under 2**-10 of its output
# scale: the delegate fails to prepare and the whole signature cannot run.
_ADD_MIN_INPUT_SCALE = 2.0**-10


def widen_empty_ranges(model) -> list:
    """Gives the int8 output of a conv/dense that calibration only saw as
    zeros (a received channel dead on every calibration image: the
    converter's scale ~1e-8) the scale of the ADD that reads it. On the
    calibration data any scale is exact; the ADD's keeps values seen later
    instead of clipping them to ~1e-6, and XNNPACK accepts the ADD. The conv
    derives its output multiplier from the scales at prepare time, and its
    int32 bias depends on the input and weight scales only, so nothing else
    changes (only a tensor that the ADD alone reads, and no signature
    returns). Returns the tensors changed, as ``(subgraph index, name)``."""
    changed = []
    for n, sg in enumerate(model.subgraphs):
        produced, readers = set(), {}
        for op in sg.operators or []:
            if _op_name(model, op) in _BIASED:
                produced.update(op.outputs)
            for i in op.inputs:
                readers[i] = readers.get(i, 0) + 1
        produced -= set(sg.outputs)
        produced = {i for i in produced if readers.get(i) == 1}
        for op in sg.operators or []:
            if _op_name(model, op) != "ADD":
                continue
            out = sg.tensors[op.outputs[0]].quantization
            if out is None or out.scale is None or len(out.scale) != 1:
                continue  # a float ADD
            out_scale = float(out.scale[0])
            for i in op.inputs:
                q = sg.tensors[i].quantization
                if i not in produced or q is None or q.scale is None or len(q.scale) != 1:
                    continue
                if float(q.scale[0]) < out_scale * _ADD_MIN_INPUT_SCALE:
                    q.scale, q.zeroPoint = [out_scale], [0]
                    name = sg.tensors[i].name
                    changed.append((n, name.decode() if isinstance(name, bytes) else name))
    return changed


def set_input_quantization(model, key: str, input_name: str, scale: float, zero_point: int) -> None:
    """Makes a signature input's int8 quantization (scale, zero_point): the
    sender's, so bytes cross the wire unchanged.

    Kernels that read the input's parameters at prepare time need nothing
    else (a conv/dense without a bias among them); for a conv/dense reading it
    directly the int32 bias (quantized with input_scale * weight_scale) is
    rescaled to the new input scale.
    """
    sg, inputs, _ = signature_tensors(model, key)
    index = inputs[input_name]
    tensor = sg.tensors[index]
    q = tensor.quantization
    old_scale = float(q.scale[0])
    if old_scale == float(scale) and int(q.zeroPoint[0]) == int(zero_point):
        return
    for op in sg.operators or []:
        if index not in list(op.inputs):
            continue
        name = _op_name(model, op)
        if name in _SCALE_READING:
            continue
        if name in _BIASED and list(op.inputs)[0] == index:
            if len(op.inputs) <= 2 or op.inputs[2] < 0:
                # No bias (a piece's partial product, its bias dropped): the
                # output multiplier is computed from the tensors' scales at
                # prepare time, so nothing else depends on the input scale.
                continue
            bias_t = sg.tensors[op.inputs[2]]
            buf = model.buffers[bias_t.buffer]
            values = np.frombuffer(bytes(bytearray(buf.data)), dtype="<i4").astype("float64")
            ratio = old_scale / float(scale)
            buf.data = np.round(values * ratio).astype("<i4").tobytes()
            bias_t.quantization.scale = [float(s) / ratio for s in bias_t.quantization.scale]
            continue
        raise ValueError(
            f"Cannot move the quantization of input '{input_name}' of signature '{key}': its consumer "
            f"{name} bakes the input scale into a constant. Report this model to the exporter's authors."
        )
    q.scale = [float(scale)]
    q.zeroPoint = [int(zero_point)]


def tensor_quantization(model, key: str, name: str, output: bool) -> tuple:
    """(dtype, scale or None, zero point or None) of a signature tensor."""
    sg, inputs, outputs = signature_tensors(model, key)
    t = sg.tensors[(outputs if output else inputs)[name]]
    q = t.quantization
    has = q is not None and q.scale is not None and len(q.scale) > 0
    return _TYPES.get(t.type, str(t.type)), (float(q.scale[0]) if has else None), (int(q.zeroPoint[0]) if has else None)
