"""The logical graph of one switch: traced from a Keras functional model, with
batch norm folded into the convolution before it.

Everything here is full width (no device yet): ``partitioner.py`` slices it.
Tensors are named ``t0, t1, ...`` in topological order; the image is ``t0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import keras
from keras import ops

from paradis_tf.graph_walk import walk_graph
from paradis_tf.layers import (
    PartialSumFusion,
    SplitConv2D,
    SplitDense,
    SplitDepthwiseConv2D,
    SwitchableBatchNormalization,
)

# Layers that act on each channel alone: device-local, and the channels of
# their inputs and output must be laid out (permuted) identically.
_ELEMENTWISE = (keras.layers.ReLU, keras.layers.Activation, keras.layers.Add, keras.layers.Dropout,
                keras.layers.Identity)
_POOLING = (keras.layers.GlobalAveragePooling2D, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
_ACTIVATIONS = ("relu", "relu6", "gelu", "linear")


@dataclass
class Op:
    """One logical operation of the switch.

    kind: ``conv`` (Conv2D or Dense: channel-mixing, may communicate),
    ``partial`` (per-device partial outputs of a Dense/Conv, summed by the
    fusion), ``depthwise``, ``affine`` (an unfolded batch norm), ``act``,
    ``add``, ``pool``, ``fusion``, and the kinds of ``paradis_export.kinds``
    (``layernorm``, ``attention``, ``first_device_conv``, ``pixel_shuffle``,
    ``upsample``), one file each.
    """

    kind: str
    name: str  # the Keras layer's name
    inputs: list
    output: str
    params: dict = field(default_factory=dict)


@dataclass
class LogicalGraph:
    switch: object  # paradis_tf.switches.Switch
    input_name: str
    input_shape: tuple  # (1, H, W, C)
    output_name: str
    shapes: dict  # tensor name -> shape (batch 1)
    ops: list
    replicated: set  # tensors present in full on every device (the image)
    # Tensors partitioned by whole groups of channels (attention heads):
    # tensor -> group size (Switch.partition(C, group=...)).
    groups: dict = field(default_factory=dict)
    # Tensors whose channels keep their natural order on every device (an
    # attention head's channels must stay together and in order).
    fixed_order: set = field(default_factory=set)
    # Tensors in the partial-output layout (1, ..., D, C): device k holds
    # slot k whole (all C channels, natural order), and the fusion sums the
    # slots. Tensor -> the devices whose slot is computed; every other slot
    # is zeros by construction (FirstDeviceConv2D fills device 0's only), so
    # those devices hold nothing for it.
    partials: dict = field(default_factory=dict)

    def consumers(self, tensor: str) -> list:
        return [op for op in self.ops if tensor in op.inputs]

    def holds(self, tensor: str, device: int) -> bool:
        """Whether ``device`` holds a part of ``tensor``: its channels, or its
        slot of a partial-output tensor that is not zeros there."""
        return tensor not in self.partials or device in self.partials[tensor]


def _activation_name(layer) -> Optional[str]:
    """'relu'/'relu6'/'gelu'/'linear' for the activations the exporter knows, else None."""
    if isinstance(layer, keras.layers.ReLU):
        if layer.negative_slope == 0 and layer.threshold == 0:
            if layer.max_value is None:
                return "relu"
            if float(layer.max_value) == 6.0:
                return "relu6"
        return None
    fn = layer.activation if isinstance(layer, keras.layers.Activation) else layer
    name = getattr(fn, "__name__", None)
    return name if name in _ACTIVATIONS else None


def _unsupported(layer, why: str) -> ValueError:
    return ValueError(
        f"Cannot export layer '{layer.name}' ({type(layer).__name__}): {why}. The exporter supports "
        "paradis_tf split layers (attention and layer norm included), SwitchableBatchNormalization, "
        "FirstDeviceConv2D, PixelShuffle and Upsample2D, ReLU/ReLU6/GELU, Add, pooling and Dropout."
    )


def trace(model: keras.Model, switch) -> LogicalGraph:
    """The logical graph of ``switch`` in ``model`` (a SplitModel), batch 1."""
    from paradis_tf.training.split_model import SplitModel

    if not isinstance(model, SplitModel):
        raise ValueError(
            f"model must be a paradis_tf SplitModel (e.g. build_model(...) or keras.saving.load_model "
            f"of one), received {type(model).__name__}."
        )
    sw = model.switches[switch]
    plain = model.switch_model(sw.name)
    shape = (1,) + tuple(int(s) for s in plain.inputs[0].shape[1:])
    names: dict = {}  # id(KerasTensor) -> "t{i}"
    keep: list = []  # keeps the specs alive so their ids stay unique
    shapes: dict = {}
    raw: list = []

    def new_name(t) -> str:
        keep.append(t)
        names[id(t)] = f"t{len(names)}"
        shapes[names[id(t)]] = tuple(int(s) for s in t.shape)
        return names[id(t)]

    def visit(op, args, kwargs, out):
        ins = []
        for t in keras.tree.flatten(args):
            if isinstance(t, keras.KerasTensor):
                if id(t) not in names:  # the input spec, first seen here
                    new_name(t)
                ins.append(names[id(t)])
        raw.append((op, kwargs.get("switch"), ins, new_name(out)))

    out = keras.tree.flatten(walk_graph(plain, shape[1:], visit))[0]
    input_name = "t0"
    graph = LogicalGraph(sw, input_name, shape, names[id(out)], shapes, [], {input_name})
    from paradis_export import kinds  # after this module: the kinds import Op from here

    for layer, call_switch, ins, output in raw:
        kind = kinds.for_layer(layer)
        if kind is None:
            graph.ops.append(_logical_op(layer, call_switch, sw, ins, output, graph))
            continue
        if layer.switches[call_switch] != sw:
            raise _unsupported(layer, f"called with switch {call_switch!r} inside switch '{sw}'")
        if not kind.partial_inputs and any(t in graph.partials for t in ins):
            raise _unsupported(layer, _partial_input_why(ins, graph))
        graph.ops.extend(kind.trace(layer, sw, ins, output, graph))
    _fold_batch_norm(graph)
    return graph


def _logical_op(layer, call_switch, sw, ins, output, graph) -> Op:
    if isinstance(layer, keras.layers.InputLayer):
        raise _unsupported(layer, "nested input layers")
    if getattr(layer, "switches", None) is not None and call_switch is not None:
        if layer.switches[call_switch] != sw:
            raise _unsupported(layer, f"called with switch {call_switch!r} inside switch '{sw}'")
    if any(t in graph.partials for t in ins):
        return _partial_layout_op(layer, ins, output, graph)
    replicated = all(t in graph.replicated for t in ins)
    if isinstance(layer, (SplitConv2D, SplitDense)):
        index = layer.switch_index(sw.name)
        kernel = np.asarray(ops.convert_to_numpy(layer.kernel), dtype="float32")
        if isinstance(layer, SplitDense):
            kernel = kernel[None, None]  # (Cin, Cout) -> (1, 1, Cin, Cout): a Dense is a 1x1 conv
        params = {
            "kernel": kernel,  # (kh, kw, Cin, Cout)
            "bias": None if layer.bias is None else np.asarray(ops.convert_to_numpy(layer.bias), "float32"),
            "gates": layer.gate_values(index),  # (Cin, D) binary; local entries 1
            "dense": isinstance(layer, SplitDense),
            "activation": None,
        }
        if isinstance(layer, SplitConv2D):
            params.update(strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate)
        if layer.activation is not None:
            act = _activation_name(layer.activation)
            if act is None:
                raise _unsupported(layer, f"activation {layer.activation!r}")
            params["activation"] = None if act == "linear" else act
        if layer.replicated_input != replicated:
            raise _unsupported(layer, "replicated_input does not match where its input lives")
        if layer.partial_outputs:
            # (1, ..., D, Cout): every device computes its slot from its own channels.
            graph.partials[output] = tuple(range(sw.num_devices))
        return Op("partial" if layer.partial_outputs else "conv", layer.name, ins, output, params)
    if replicated:
        raise _unsupported(layer, "a computation on the replicated input before the first split layer")
    if isinstance(layer, SplitDepthwiseConv2D):
        act = None if layer.activation is None else _activation_name(layer.activation)
        if layer.activation is not None and act is None:
            raise _unsupported(layer, f"activation {layer.activation!r}")
        return Op("depthwise", layer.name, ins, output, {
            "kernel": np.asarray(ops.convert_to_numpy(layer.depthwise_kernel), "float32"),  # (kh, kw, C, 1)
            "bias": None if layer.bias is None else np.asarray(ops.convert_to_numpy(layer.bias), "float32"),
            "strides": layer.strides, "padding": layer.padding, "dilation_rate": layer.dilation_rate,
            "activation": None if act == "linear" else act,
        })
    if isinstance(layer, SwitchableBatchNormalization):
        i = layer.switch_index(sw.name)
        mean = ops.convert_to_numpy(layer.moving_means[i]).astype("float64")
        var = ops.convert_to_numpy(layer.moving_variances[i]).astype("float64")
        gamma = np.ones_like(mean) if layer.gammas[i] is None else ops.convert_to_numpy(layer.gammas[i])
        beta = np.zeros_like(mean) if layer.betas[i] is None else ops.convert_to_numpy(layer.betas[i])
        # y = (x - mean) / sqrt(var + eps) * gamma + beta = x * scale + offset, per channel (C,).
        scale = np.asarray(gamma, "float64") / np.sqrt(var + layer.epsilon)
        offset = np.asarray(beta, "float64") - mean * scale
        return Op("affine", layer.name, ins, output, {"scale": scale, "offset": offset})
    if isinstance(layer, PartialSumFusion):
        raise _unsupported(layer, f"its input {ins[0]} of shape {graph.shapes[ins[0]]} is not a split layer's "
                                  "partial outputs (B, ..., D, C) nor a per-device op of them: build the last split "
                                  "layer with partial_outputs=True")
    if isinstance(layer, keras.layers.Add):
        return Op("add", layer.name, ins, output)
    if isinstance(layer, (keras.layers.Dropout, keras.layers.Identity)):
        return Op("act", layer.name, ins, output, {"activation": None})
    if isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
        act = _activation_name(layer)
        if act is None:
            raise _unsupported(layer, "this activation")
        return Op("act", layer.name, ins, output, {"activation": None if act == "linear" else act})
    if isinstance(layer, _POOLING):
        if isinstance(layer, keras.layers.GlobalAveragePooling2D):
            if layer.keepdims or layer.data_format != "channels_last":
                raise _unsupported(layer, "keepdims=True or channels_first")
            return Op("pool", layer.name, ins, output, {"pool": "global_average"})
        if layer.data_format != "channels_last":
            raise _unsupported(layer, "channels_first")
        return Op("pool", layer.name, ins, output, {
            "pool": "max" if isinstance(layer, keras.layers.MaxPooling2D) else "average",
            "pool_size": tuple(layer.pool_size), "strides": tuple(layer.strides), "padding": layer.padding,
        })
    raise _unsupported(layer, "no per-device rule for this layer type")


def _partial_input_why(ins, graph) -> str:
    t = next(t for t in ins if t in graph.partials)
    return (f"its input {t} of shape {graph.shapes[t]} is per-device partial outputs (B, ..., D, C), which only "
            "Add, ReLU/ReLU6/GELU, PixelShuffle, Upsample2D and PartialSumFusion act on (per device): apply this "
            "layer before the split layer with partial_outputs=True, or after the fusion outside the model")


def _partial_layout_op(layer, ins, output, graph) -> Op:
    """An op on partial-output tensors (1, ..., D, C), computed by each device
    on its own slot: elementwise ops, and the fusion's sum over D. A slot
    that is zeros stays zeros through them (Add skips it, and every
    activation kept here maps 0 to 0), so a device that holds no slot of the
    inputs holds none of the output either."""
    num_devices = graph.switch.num_devices
    if isinstance(layer, PartialSumFusion):
        missing = sorted(set(range(num_devices)) - set(graph.partials[ins[0]]))
        if missing:
            raise _unsupported(layer, f"devices {missing} compute nothing for its input {ins[0]} (their slots are "
                                      "zeros): add a split layer's partial outputs to it so that every device has "
                                      "a partial to fuse")
        return Op("fusion", layer.name, ins, output, {"op": "sum"})
    if isinstance(layer, keras.layers.Add):
        if not all(t in graph.partials for t in ins):
            shapes = ", ".join(f"{t} {graph.shapes[t]} ({'partial outputs' if t in graph.partials else 'channels'})"
                               for t in ins)
            raise _unsupported(layer, f"an Add of partial outputs (B, ..., D, C) and channel-partitioned tensors "
                                      f"(B, ..., C): {shapes}; add tensors of one layout")
        graph.partials[output] = tuple(sorted({d for t in ins for d in graph.partials[t]}))
        return Op("add", layer.name, ins, output)
    if isinstance(layer, (keras.layers.Dropout, keras.layers.Identity)):
        act = None
    elif isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
        act = _activation_name(layer)
        if act is None:
            what = (f"activation {getattr(layer.activation, '__name__', layer.activation)!r}"
                    if isinstance(layer, keras.layers.Activation) else
                    f"ReLU(max_value={layer.max_value}, negative_slope={layer.negative_slope}, "
                    f"threshold={layer.threshold})")
            raise _unsupported(layer, f"{what} on partial outputs: use ReLU, ReLU6, GELU or linear (they keep a "
                                      "zero slot zero)")
    else:
        raise _unsupported(layer, _partial_input_why(ins, graph))
    graph.partials[output] = graph.partials[ins[0]]
    return Op("act", layer.name, ins, output, {"activation": None if act == "linear" else act})


def _fold_batch_norm(graph: LogicalGraph) -> None:
    """conv/depthwise -> affine becomes one op with a bias, when nothing else
    reads the conv's output and the conv has no activation of its own."""
    by_output = {op.output: op for op in graph.ops}
    kept = []
    for op in graph.ops:
        if op.kind == "affine":
            prev = by_output.get(op.inputs[0])
            if (
                prev is not None
                and prev.kind in ("conv", "depthwise")
                and prev.params["activation"] is None
                and len(graph.consumers(prev.output)) == 1
            ):
                scale, offset = op.params["scale"], op.params["offset"]
                k = prev.params["kernel"].astype("float64")
                if prev.kind == "conv":
                    k = k * scale  # (kh, kw, Cin, Cout) * (Cout,)
                else:
                    k = k * scale[:, None]  # (kh, kw, C, 1) * (C, 1)
                b = prev.params["bias"]
                b = offset if b is None else b.astype("float64") * scale + offset
                prev.params["kernel"] = k.astype("float32")
                prev.params["bias"] = b.astype("float32")
                prev.params["folded"] = op.name
                # The folded op now produces the affine's output tensor.
                del graph.shapes[prev.output]
                prev.output = op.output
                by_output[op.output] = prev
                continue
        kept.append(op)
    graph.ops[:] = kept
