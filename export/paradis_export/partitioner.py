"""partition: each device's program of one switch, with sliced weights, cut
into stages where the device must receive data.

A full-width tensor ``t`` of C channels is held by device k as ``t_d{k}``:
its own channels (the switch's partition), in an export-time order (the
*permutation* of k's channels) chosen so that what k sends to another device
for one layer is as few contiguous slices as possible. Every channel-local op
(batch norm, activations, add, depthwise, pooling) links tensors whose
channels must share one order, so permutations are chosen per class of
linked tensors and per device. Each contiguous slice sent is a *piece*,
named ``{t}_d{j}_to{k}_{a}_{b}``: channels ``[a, b)`` of ``t_d{j}`` (permuted
positions), shape ``(1, H, W, b - a)``. A run that several devices need is
one piece sent to each, named for all of them (``_to0and2_``): one slice on
the sender, not one per receiver (the converter merges identical slices into
one tensor, and LiteRT.js reads a signature whose outputs share a tensor
under one name only).

A device computes, for a channel-mixing layer, its own channels and the
received pieces against the kernel rows of exactly those channels and the
columns of its own output channels: nothing else is stored or computed. A
layer that receives is split in two so the device computes while the pieces
are on the network: its *local part* (own channels against their rows, plus
the bias), a pre-activation partial ``{out}_local`` computed before the
device waits, then, in the stage that starts at the receive, the *remote
part* (the pieces against their rows), added to ``{out}_local``, then the
activation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import keras

from paradis_export._graph import LogicalGraph, Op, trace

__all__ = ["partition", "Partition", "DeviceProgram", "Stage", "DeviceOp", "Send"]


@dataclass
class DeviceOp:
    """One op of a device program. kind: conv, dense, depthwise, affine, act,
    add, pool, concat, slice, or a device kind of ``paradis_export.kinds``
    (ln_stats, ln_apply, attention, depth_to_space, resize)."""

    kind: str
    name: str
    inputs: list
    output: str
    params: dict = field(default_factory=dict)
    layer: str = ""  # the logical op (Keras layer) this op computes all or part of

    @property
    def num_params(self) -> int:
        return sum(int(np.size(self.params[k])) for k in ("kernel", "bias", "scale", "offset", "gamma", "beta")
                   if self.params.get(k) is not None)


@dataclass
class Stage:
    name: str
    ops: list
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    flops: int = 0


@dataclass
class DeviceProgram:
    device: int
    width: float
    stages: list
    params: int = 0
    flops: int = 0


@dataclass
class Send:
    """Tensor ``tensor`` goes from ``sender``'s stage to ``receiver``'s stage
    (``None``: the fusion). ``source`` is the sender's local tensor it is a
    slice of, ``channels`` the slice's [start, stop) in that tensor."""

    tensor: str
    source: str
    sender: int
    receiver: int
    channels: tuple
    sender_stage: str = ""
    receiver_stage: Optional[str] = None


@dataclass
class Partition:
    graph: LogicalGraph
    devices: list  # DeviceProgram per device
    shapes: dict  # device tensor name -> shape
    sends: list  # Send
    fusion: dict  # {"op", "device", "inputs", "output"}
    permutations: dict  # logical tensor -> [np.ndarray of channels per device]

    @property
    def switch(self):
        return self.graph.switch

    @property
    def input_name(self) -> str:
        return self.graph.input_name


class _UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def _gray_rank(bits: tuple) -> tuple:
    """Position of ``bits`` in reflected-Gray-code order: sorting by it keeps
    each bit's ones in few runs (bit i toggles about 2**i times, against
    2**(i+1) in plain binary order)."""
    out, acc = [], 0
    for b in bits:
        acc ^= int(b)
        out.append(acc)
    return tuple(out)


def _runs(positions: list) -> list:
    """Sorted positions -> maximal [start, stop) runs."""
    runs = []
    for p in positions:
        if runs and runs[-1][1] == p:
            runs[-1][1] = p + 1
        else:
            runs.append([p, p + 1])
    return [tuple(r) for r in runs]


def partition(model: keras.Model, switch, receive: str = "concat") -> Partition:
    """Splits ``switch`` of ``model`` into one program per device.

    Args:
        model: a trained SplitModel (gates binary as at inference: after
            ``finalize_gates``, or open/shut modes).
        switch: the switch's index or name, e.g. ``"2x0.5"``.
        receive: how a layer's remote part combines the received pieces
            (its local part, over the device's own channels, is always its
            own convolution, computed before the receive): ``"concat"`` (one
            convolution over the concatenated pieces; float32) or ``"sum"``
            (one convolution per piece, added; int8, where every piece keeps
            its sender's quantization).

    Returns:
        A Partition: per device its stages of sliced ops, every piece sent
        between devices, the final fusion and the channel permutations.

    Raises:
        ValueError: for a model that is not a SplitModel, an unknown switch, or
            a layer the exporter has no per-device rule for.
    """
    if receive not in ("concat", "sum"):
        raise ValueError(f"receive must be 'concat' or 'sum', received {receive!r}.")
    from paradis_export import kinds

    graph = trace(model, switch)
    sw = graph.switch
    num_devices = sw.num_devices
    ops = graph.ops

    # -- 1. classes of channel-linked tensors ----------------------------------
    classes = _UnionFind()
    for op in ops:
        if op.kind in ("depthwise", "affine", "act", "add", "pool"):
            for t in op.inputs:
                classes.union(t, op.output)
        elif kinds.get(op.kind) is not None:
            for a, b in kinds.get(op.kind).links(op):
                classes.union(a, b)
    # Partial outputs (and the per-device ops on them) and their fusion are
    # whole on every device (Cout each), never partitioned: a 1-channel image
    # output is fine.
    whole = set(graph.partials) | {op.output for op in ops if op.kind == "fusion"}
    ranges = {}
    for t, shape in graph.shapes.items():
        if t not in graph.replicated and t not in whole:
            # Attention's head tensors: whole heads per device.
            ranges[t] = sw.partition(shape[-1], group=graph.groups.get(t, 1))

    # -- 2. what each conv needs from each device ------------------------------
    # needs[(op name, j, k)] = channels of the conv's input owned by j that k reads.
    needs: dict = {}
    patterns: dict = {}  # (class, j) -> list of (bytes, op name, k)
    for op in ops:
        if op.kind != "conv" or op.inputs[0] in graph.replicated:
            continue
        t = op.inputs[0]
        gates = op.params["gates"]  # (Cin, D) binary
        positions = int(np.prod(graph.shapes[t][1:-1]))
        for j, r in enumerate(ranges[t]):
            for k in range(num_devices):
                if k == j:
                    continue
                chans = [c for c in r if gates[c, k] > 0.5]
                if chans:
                    needs[(op.name, j, k)] = chans
                    patterns.setdefault((classes.find(t), j), []).append((positions * len(chans), op.name, k))

    # -- 3. permutation per class and device -----------------------------------
    order: dict = {}  # (class, j) -> {channel: position}
    permutations: dict = {}
    for t, rs in ranges.items():
        root = classes.find(t)
        for j, r in enumerate(rs):
            if (root, j) in order:
                continue
            # Heaviest sends first: they become the most contiguous.
            keys = sorted(patterns.get((root, j), []), key=lambda e: (-e[0], e[1], e[2]))
            sets = [set(needs[(name, j, k)]) for _, name, k in keys]
            if t in graph.fixed_order:
                perm = list(r)  # a head's channels stay in order (its attention reads them so)
            else:
                perm = sorted(r, key=lambda c: (_gray_rank(tuple(c in s for s in sets)), c))
            order[(root, j)] = {c: p for p, c in enumerate(perm)}
        permutations[t] = [np.array(sorted(order[(root, j)], key=order[(root, j)].get)) for j in range(len(rs))]

    def perm(t: str, k: int) -> np.ndarray:
        return permutations[t][k]

    def local(t: str, k: int) -> str:
        return t if t in graph.replicated else f"{t}_d{k}"

    shapes: dict = {graph.input_name: graph.input_shape}
    for t, rs in ranges.items():
        for k, r in enumerate(rs):
            shapes[local(t, k)] = graph.shapes[t][:-1] + (len(r),)
    for t, holders in graph.partials.items():
        for k in holders:
            # Device k's slot: (1, ..., D, C) -> (1, ..., C), all C channels.
            shapes[local(t, k)] = graph.shapes[t][:-2] + graph.shapes[t][-1:]

    # -- 4. pieces: contiguous runs of the sender's permuted channels ----------
    pieces_in: dict = {}  # (op name, k) -> [(piece name, channels in kernel order)]
    pieces_out: dict = {}  # device tensor -> {piece name: (a, b)}
    sends: dict = {}  # (piece, receiver) -> Send
    receivers: dict = {}  # (t, j, a, b) -> devices that need channels [a, b) of t_d{j}
    wants: list = []  # (op name, k, (t, j, a, b)) in kernel-row order per (op, k)
    for (name, j, k), chans in sorted(needs.items(), key=lambda e: (e[0][0], e[0][2], e[0][1])):
        op = next(o for o in ops if o.name == name)
        t = op.inputs[0]
        pos = order[(classes.find(t), j)]
        for a, b in _runs(sorted(pos[c] for c in chans)):
            receivers.setdefault((t, j, a, b), set()).add(k)
            wants.append((name, k, (t, j, a, b)))
    for name, k, run in wants:
        t, j, a, b = run
        piece = piece_name(t, j, receivers[run], a, b)
        pieces_in.setdefault((name, k), []).append((piece, perm(t, j)[a:b]))
        pieces_out.setdefault(local(t, j), {})[piece] = (a, b)
        shapes[piece] = graph.shapes[t][:-1] + (b - a,)
        sends.setdefault((piece, k), Send(piece, local(t, j), j, k, (a, b)))
    # Sends of the registered kinds (a layer norm's statistics).
    ctx = kinds.SliceContext(graph, num_devices, ranges, perm, local, shapes, pieces_in, pieces_out, sends, Send,
                             receive, piece_name)
    for op in ops:
        if kinds.get(op.kind) is not None:
            kinds.get(op.kind).add_sends(op, ctx)

    # -- 5. device ops ---------------------------------------------------------
    fusion = None
    programs_ops = [[] for _ in range(num_devices)]
    arrived = [set() for _ in range(num_devices)]  # pieces an earlier layer of device k has read
    for op in ops:
        if op.kind == "fusion":
            partials = op.inputs[0]
            fusion = {"op": op.params["op"], "device": 0,
                      "inputs": [f"{partials}_d{k}" for k in range(num_devices)], "output": op.output}
            continue
        for k in range(num_devices):
            kind = kinds.get(op.kind)
            made = kind.device_ops(op, k, ctx) if kind else _device_ops(op, k, graph, perm, local, pieces_in,
                                                                         shapes, receive)
            for device_op in made:
                device_op.layer = op.name
                programs_ops[k].append(device_op)
            pieces = {name for name, _ in pieces_in.get((op.name, k), [])}
            if pieces and pieces <= arrived[k]:
                # All read already (a block's 3x3 and its projection share an
                # input): nothing to wait for, so no stage cut here.
                for device_op in reversed(programs_ops[k]):
                    if device_op.layer != op.name:
                        break
                    device_op.params.pop("receives", None)
            arrived[k] |= pieces
    if fusion is None:
        raise ValueError(
            "The model's output is not a PartialSumFusion of per-device partial outputs; the exporter "
            "needs one (ClassifierHead builds it)."
        )
    if fusion["output"] != graph.output_name:
        raise ValueError(f"The model's output {graph.output_name} is not its fusion's output {fusion['output']}.")
    for name in fusion["inputs"]:
        shapes[name] = graph.shapes[fusion["output"]]  # each device's partial (1, ..., Cout)
    shapes[fusion["output"]] = graph.shapes[fusion["output"]]

    # -- 6. stages -------------------------------------------------------------
    programs = []
    for k in range(num_devices):
        stages = _cut_stages(programs_ops[k], k, pieces_out, shapes, fusion)
        programs.append(DeviceProgram(k, float(sw.widths[k]), stages,
                                      params=sum(o.num_params for s in stages for o in s.ops),
                                      flops=sum(s.flops for s in stages)))
    producer = {t: (p.device, s.name) for p in programs for s in p.stages for t in s.outputs}
    first_use = {}
    for p in programs:
        for s in p.stages:
            for t in s.inputs:
                first_use.setdefault((p.device, t), s.name)
    send_list = []
    for send in sends.values():
        send.sender_stage = producer[send.tensor][1]
        send.receiver_stage = first_use[(send.receiver, send.tensor)]
        send_list.append(send)
    for k in range(1, num_devices):
        partial = fusion["inputs"][k]
        send_list.append(Send(partial, partial, k, 0, (0, shapes[partial][-1]), producer[partial][1], None))
    send_list.sort(key=lambda s: (s.sender, int(s.sender_stage[5:]), s.receiver, s.tensor))
    return Partition(graph, programs, shapes, send_list, fusion, permutations)


def piece_name(t: str, sender: int, receivers, a: int, b: int) -> str:
    """The name of channels ``[a, b)`` of ``t_d{sender}`` sent to
    ``receivers``: ``t3_d1_to0_2_4``, or ``t3_d1_to0and2_2_4`` for two."""
    return f"{t}_d{sender}_to{'and'.join(str(k) for k in sorted(receivers))}_{a}_{b}"


def _linear_op(p: dict, name: str, x: str, out: str, kernel: np.ndarray, bias, activation) -> DeviceOp:
    params = {"kernel": np.ascontiguousarray(kernel), "bias": bias, "activation": activation}
    if p["dense"]:
        params["kernel"] = np.ascontiguousarray(kernel[0, 0])  # (1, 1, rows, cols) -> (rows, cols)
        return DeviceOp("dense", name, [x], out, params)
    params.update(strides=p["strides"], padding=p["padding"], dilation_rate=p["dilation_rate"])
    return DeviceOp("conv", name, [x], out, params)


def _device_ops(op: Op, k: int, graph: LogicalGraph, perm, local, pieces_in, shapes, receive: str) -> list:
    """The ops device k runs for logical op ``op`` (sliced weights)."""
    out_t = op.output
    p = op.params
    if op.kind in ("conv", "partial"):
        t = op.inputs[0]
        if t in graph.replicated:
            rows, inputs = [np.arange(graph.shapes[t][-1])], [t]  # the whole image
        else:
            received = pieces_in.get((op.name, k), [])
            rows = [perm(t, k)] + [chans for _, chans in received]
            inputs = [local(t, k)] + [name for name, _ in received]
        if op.kind == "partial":
            cols = np.arange(p["kernel"].shape[-1])
            bias = p["bias"] if (p["bias"] is not None and k == 0) else None  # the sum's bias, once
            out = f"{out_t}_d{k}"
        else:
            cols = perm(out_t, k)
            bias = None if p["bias"] is None else p["bias"][cols]
            out = local(out_t, k)
        if bias is not None and not np.any(bias):
            bias = None  # an all-zero bias is dropped by the converter: do not count it
        kernel = p["kernel"][..., cols]  # (kh, kw, Cin, cols)
        if len(inputs) == 1:
            return [_linear_op(p, op.name, inputs[0], out, kernel[:, :, rows[0]], bias, p["activation"])]
        return _local_then_remote(p, op.name, inputs, rows, kernel, bias, out, shapes, receive)
    # Partial-output slots that are zeros on device k (LogicalGraph.partials)
    # are not held: an op reads only the inputs k holds.
    ins = [local(t, k) for t in op.inputs if graph.holds(t, k)]
    out = local(out_t, k)
    if not ins:
        return []  # its output is zeros on k as well: nothing to compute
    if op.kind == "add" and len(ins) == 1:
        # Partial slots: the other addends are zeros on k (a FirstDeviceConv2D's
        # on devices 1..D-1), so the sum is the one k holds.
        return [DeviceOp("act", op.name, ins, out, {"activation": None})]
    if op.kind == "depthwise":
        c = perm(op.inputs[0], k)
        params = dict(p, kernel=np.ascontiguousarray(p["kernel"][:, :, c]),
                      bias=None if p["bias"] is None else p["bias"][c])
        return [DeviceOp("depthwise", op.name, ins, out, params)]
    if op.kind == "affine":
        c = perm(op.inputs[0], k)
        return [DeviceOp("affine", op.name, ins, out,
                         {"scale": p["scale"][c].astype("float32"), "offset": p["offset"][c].astype("float32")})]
    if op.kind in ("act", "add", "pool"):
        return [DeviceOp(op.kind, op.name, ins, out, dict(p))]
    raise ValueError(f"No per-device rule for op kind {op.kind!r} ({op.name}).")


def _local_then_remote(p: dict, layer: str, inputs: list, rows: list, kernel: np.ndarray, bias, out: str,
                       shapes: dict, receive: str) -> list:
    """A receiving layer's ops: the local part first, so that it can run
    before the pieces arrive, then the remote part, which starts the stage.

    ``inputs``: the device's own tensor, then the received pieces; ``rows``:
    their channels in kernel order; ``kernel``: (kh, kw, Cin, cols), the
    device's output columns. Linear, so the sum over inputs splits anywhere:
    conv(own) + bias + conv(pieces) is the layer before its activation.
    """
    # Own channels (1, H, W, own) -> partial (1, H', W', cols), pre-activation.
    # Its own op, not part of the remote one: it is all the device can do
    # while the pieces travel, and it ends the stage before the receive.
    partial = f"{out}_local"
    shapes[partial] = shapes[out]
    result = [_linear_op(p, f"{layer}_local", inputs[0], partial, kernel[:, :, rows[0]], bias, None)]
    pieces, piece_rows = inputs[1:], rows[1:]
    if receive == "concat" and len(pieces) > 1:
        # Pieces (1, H, W, b - a) each -> (1, H, W, received): one conv for all
        # received channels (float32: every piece has the same representation).
        x = f"{out}_in"
        received = np.concatenate(piece_rows)
        shapes[x] = shapes[pieces[0]][:-1] + (len(received),)
        result.append(DeviceOp("concat", f"{layer}_concat", pieces, x))
        pieces, piece_rows = [x], [received]
    # receive == "sum" keeps one conv per piece: each int8 piece keeps its
    # sender's quantization (a concat would force one scale on all).
    remote = []
    for i, (x, r) in enumerate(zip(pieces, piece_rows)):
        name = f"{out}_remote{i}"
        shapes[name] = shapes[out]
        remote.append(name)
        result.append(_linear_op(p, f"{layer}_remote{i}", x, name, kernel[:, :, r], None, None))
    result[1].params["receives"] = True  # the first op to read a piece: the stage starts here
    acc = partial
    for i, name in enumerate(remote, start=1):
        last = i == len(remote)
        target = out if last and p["activation"] is None else f"{out}_sum{i}"
        shapes[target] = shapes[out]
        result.append(DeviceOp("add", f"{layer}_sum{i}", [acc, name], target))
        acc = target
    if p["activation"] is not None:
        result.append(DeviceOp("act", f"{layer}_act", [acc], out, {"activation": p["activation"]}))
    return result


def _flops(op: DeviceOp, shapes: dict) -> int:
    out = shapes[op.output]
    positions = int(np.prod(out[1:-1]))
    if op.kind == "conv":
        kh, kw, rows, cols = op.params["kernel"].shape
        return 2 * positions * kh * kw * rows * cols
    if op.kind == "dense":
        rows, cols = op.params["kernel"].shape
        return 2 * positions * rows * cols
    if op.kind == "depthwise":
        kh, kw, c, _ = op.params["kernel"].shape
        return 2 * positions * kh * kw * c
    from paradis_export import kinds

    kind = kinds.for_device_kind(op.kind)
    return kind.flops(op, shapes) if kind is not None else 0


def _cut_stages(device_ops: list, k: int, pieces_out: dict, shapes: dict, fusion: dict) -> list:
    """Cuts device k's ops into stages: a new stage starts at an op that
    needs received pieces, and right after an op whose output k sends (so
    the send leaves as early as possible). Slices for the pieces join the
    stage that produces their source. Nowhere else: two stages of a device
    are always separated by a send or a receive (a stage more is an invoke
    more).

    A receiving layer's local part (``_local_then_remote``) comes just before
    its remote part, so it ends the stage before the receive: it joins the
    previous stage, or, when that stage ends with a send, is the start of
    a stage of its own that runs while both the sent and the awaited pieces
    are on the network (joined to the sending stage, it would hold the send
    back by as long as it saves)."""
    groups, current = [], []
    for op in device_ops:
        receives = op.params.get("receives", False)
        if receives and current:
            groups.append(current)
            current = []
        current.append(op)
        if op.output in pieces_out:
            # Device tensor (1, H, W, C_k) -> one slice per piece (1, H, W, b - a).
            for piece, (a, b) in pieces_out[op.output].items():
                current.append(DeviceOp("slice", f"{piece}_slice", [op.output], piece, {"start": a, "stop": b},
                                        layer=op.layer))
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    final = fusion["inputs"][k]
    used_later: dict = {}
    for i, ops in enumerate(groups):
        for op in ops:
            for t in op.inputs:
                used_later.setdefault(t, set()).add(i)
    stages = []
    for i, ops in enumerate(groups):
        produced = {op.output for op in ops}
        inputs, outputs = [], []
        for op in ops:
            for t in op.inputs:
                if t not in produced and t not in inputs:
                    inputs.append(t)
        for op in ops:
            t = op.output
            later = any(j > i for j in used_later.get(t, ()))
            if later or t == final or op.kind == "slice":
                outputs.append(t)
        flops = sum(_flops(op, shapes) for op in ops)
        stages.append(Stage(f"stage{i}", ops, inputs, outputs, flops))
    return stages
