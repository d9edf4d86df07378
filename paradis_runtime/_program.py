"""One device's part of one switch, loaded for the peer runtime.

A ``DeviceProgram`` is what a peer process holds per switch it serves: the
device file's stage runners (ai_edge_litert), and everything the wire needs
that the graph decides once, at load time: which tensors this device expects
from each peer (the frame checks of FRAME_FORMAT.md section 6, step 7), to
which devices each of its outputs goes (section 4), and the refusals section
6 asks for at start-up (more than 65,535 devices, a sent tensor of rank > 6,
a tensor id >= 0xFFFFFFFF, a frame over the cap).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from paradis_runtime.frames import (DTYPE_CODES, HEADER_LEN, MAX_FRAME_BYTES, NO_TENSOR, FrameType, Header,
                                   TensorSpec, decode_header, encode_header)
from paradis_runtime.fusion_graph import FusionGraphError, input_problem, read_graph

__all__ = ["DeviceProgram", "InputCheck", "SelectionError", "StageRun", "load_stages", "programs_for",
           "quantize_input"]


class SelectionError(FusionGraphError):
    """The switches or the device asked for are not in the bundle: the
    caller's choice is wrong, not the bundle (a command line reports it as a
    usage error)."""


@dataclass(frozen=True)
class StageRun:
    name: str
    inputs: tuple
    outputs: tuple
    runner: object  # signature runner: runner(**feeds) -> {output name: array}


def quantize_input(image: np.ndarray, quant) -> np.ndarray:
    """float32 model input -> the wire tensor (int8 graphs quantize once, on the input device)."""
    if quant is None:
        return np.ascontiguousarray(image, dtype=np.float32)
    scale, zero_point = quant
    return np.clip(np.round(image / scale) + zero_point, -128, 127).astype(np.int8)


class InputCheck:
    """Checks one model input against a graph's ``input``: float32, its shape
    (batch axis optional), finite; warns once when the values are off the
    declared preprocessing's scale (a stream of them would flood the log)."""

    def __init__(self, graph: dict, where):
        self.shape = tuple(graph["input"]["shape"])
        self.preprocessing = graph["input"]["preprocessing"]
        self.where = where
        self.warned = False

    def __call__(self, image) -> np.ndarray:
        image = np.asarray(image)
        shape = self.shape
        if image.dtype != np.float32:
            raise ValueError(
                f"{self.where}: field 'input.dtype' is float32; received an input of dtype {image.dtype} "
                "(preprocess it as input.preprocessing says, as float32)."
            )
        if image.shape == shape[1:]:
            image = image[None]
        if image.ndim == len(shape) and image.shape[1:] == shape[1:] and len(image) > shape[0]:
            raise ValueError(
                f"{self.where}: run() takes one input of shape {list(shape)}; received a batch of "
                f"{len(image)}: use predict(images) for a batch."
            )
        if image.shape != shape:
            raise ValueError(
                f"{self.where}: field 'input.shape' is {list(shape)}; received an input of shape "
                f"{list(image.shape)}."
            )
        problem = input_problem(image, self.preprocessing)
        if problem is not None and problem[0] == "non_finite":
            # int8 would quantize NaN to some byte and answer with finite logits.
            raise ValueError(f"{self.where}: the input {problem[1]}.")
        if problem is not None and not self.warned:
            self.warned = True
            warnings.warn(f"{self.where}: the input {problem[1]}: the output is likely wrong; preprocess "
                          "the input as input.preprocessing says.", stacklevel=4)
        return image

    def batch(self, images) -> np.ndarray:
        """``images`` for ``predict`` (and ``paradis run --image``): a batch
        (N, ...) of inputs, or one input without its batch axis (taken as a
        batch of one); never empty. Each is then checked by ``__call__``."""
        images = np.asarray(images)
        shape = self.shape
        if images.shape == shape[1:]:
            return images[None]
        if images.ndim != len(shape) or images.shape[1:] != shape[1:]:
            dims = ", ".join(str(d) for d in shape[1:])
            raise ValueError(f"{self.where}: expected a batch of inputs of shape (N, {dims}), or one input "
                             f"of shape ({dims}); received shape {images.shape}.")
        if len(images) == 0:
            raise ValueError(f"{self.where}: received an empty batch (shape {images.shape}); "
                             "pass at least one input.")
        return images


def load_stages(graph_path: Path, graph: dict, device: int, num_threads: int = 1) -> list:
    """Device ``device``'s stages of ``graph`` with their LiteRT signature
    runners (one interpreter per device file; the runners keep it alive)."""
    from ai_edge_litert.interpreter import Interpreter

    dev = graph["devices"][device]
    file = Path(graph_path).parent / dev["file"]
    try:
        interpreter = Interpreter(model_path=str(file), num_threads=num_threads)
    except (ValueError, RuntimeError) as e:
        raise FusionGraphError(
            f"{graph_path}: device {device}'s file {file} cannot be loaded by LiteRT "
            f"({str(e).strip().splitlines()[0]}); it matches the graph's sha256, so the export itself wrote a bad "
            "file or both were edited: export the bundle again.") from None
    keys = interpreter.get_signature_list()
    out = []
    for i, s in enumerate(dev["stages"]):
        if s["signature"] not in keys:
            raise FusionGraphError(f"{graph_path}: field 'devices[{device}].stages[{i}].signature': "
                                   f"{dev['file']} has no signature {s['signature']!r} (it has {sorted(keys)}).")
        out.append(StageRun(s["name"], tuple(s["inputs"]), tuple(s["outputs"]),
                            interpreter.get_signature_runner(s["signature"])))
    return out


def _quant(spec: dict):
    q = spec["quantization"]
    return None if q is None else (q["scale"], q["zero_point"])


class DeviceProgram:
    """Device ``device`` of the graph at ``graph_path``.

    Args:
        graph_path: a ``fusion_graph.json``.
        device: this device's index in the graph.
        max_frame_bytes: the frame cap; a graph that would send a bigger
            frame is refused here, not mid-inference.
        load: False skips LiteRT (for tests of the wire logic only).
    """

    def __init__(self, graph_path, device: int, max_frame_bytes: int = MAX_FRAME_BYTES, num_threads: int = 1,
                 load: bool = True):
        self.graph_path = Path(graph_path)
        raw = self.graph_path.read_bytes()
        # The HELLO hash covers the exact file bytes (and through them the device files' digests).
        self.sha256 = hashlib.sha256(raw).digest()
        self.graph = g = read_graph(self.graph_path)
        self.switch: str = g["switch"]
        self.num_devices = len(g["devices"])
        self.device = device
        where = str(self.graph_path)
        if self.num_devices > 65535:
            raise FusionGraphError(f"{where}: {self.num_devices} devices; the wire's u16 indices allow 65,535.")
        if not 0 <= device < self.num_devices:
            raise SelectionError(f"{where}: switch {self.switch!r} has devices 0..{self.num_devices - 1}; "
                                 f"received device={device}.")
        tensors = g["tensors"]
        self.specs = {name: TensorSpec(name, t["dtype"], tuple(t["shape"])) for name, t in tensors.items()}
        self.ids = {name: t["id"] for name, t in tensors.items()}
        self.names = {t["id"]: name for name, t in tensors.items()}
        self.input_name = g["input"]["tensor"]
        self.input_device = g["input"]["device"]
        self.input_quant = _quant(tensors[self.input_name])
        self.fusion = g["fusion"]
        self.fusion_quant = {t: _quant(tensors[t]) for t in self.fusion["inputs"]}
        stages = g["devices"][device]["stages"]
        readers = {d["device"] for d in g["devices"] for s in d["stages"] if self.input_name in s["inputs"]}

        # What crosses the wire: distinct (tensor, to) per sender (section 4), and the input.
        sends = sorted({(s["tensor"], s["from"]["device"], s["to"]["device"]) for s in g["sends"]
                        if s["from"]["device"] != s["to"]["device"]})
        wire = [(self.input_name, self.input_device, d) for d in sorted(readers - {self.input_device})] + sends
        for name, _, _ in wire:
            spec = self.specs[name]
            if len(spec.shape) > 6:
                raise FusionGraphError(f"{where}: tensor '{name}' is sent with rank {len(spec.shape)}; frames "
                                       "carry rank <= 6.")
            if self.ids[name] >= NO_TENSOR:
                raise FusionGraphError(f"{where}: tensor '{name}' has id {self.ids[name]}; ids must stay "
                                       "below 0xFFFFFFFF.")
            if HEADER_LEN + spec.payload_len > max_frame_bytes:
                raise FusionGraphError(f"{where}: tensor '{name}' makes a frame of {HEADER_LEN + spec.payload_len:,} "
                                       f"bytes, over the cap of {max_frame_bytes:,}; raise max_frame_bytes.")
        # tensor -> devices it goes to from here; peer -> {tensor id: spec} expected from that peer.
        self.send_to: dict = {}
        self.expected: dict = {}
        for name, src, dst in wire:
            if src == device:
                self.send_to.setdefault(name, []).append(dst)
            if dst == device:
                self.expected.setdefault(src, {})[self.ids[name]] = self.specs[name]
        # Every header this device writes or accepts for a tensor is fixed by
        # the graph but for request_id (bytes 24..32): precomputed once, so a
        # frame is three joins to write and one dict lookup to accept.
        self._templates = {name: self._header(name) for name, _, _ in wire}
        self.accept: dict = {}  # peer -> {header without request_id: Header with request_id 0}
        for peer, specs in self.expected.items():
            for tid, spec in specs.items():
                h = self._templates[spec.name]
                self.accept.setdefault(peer, {})[h[:24] + h[32:]] = decode_header(h)
        self.neighbours = sorted({d for _, s, t in wire for d in (s, t) if device in (s, t)} - {device})
        self.is_input = device == self.input_device
        self.is_fusion = device == self.fusion["device"]
        self.local_inputs = [t for t in self.fusion["inputs"] if tensors[t]["device"] == device]

        self.stages: list = []
        if load:
            self._load(stages, num_threads)
        else:
            self.stages = [StageRun(s["name"], tuple(s["inputs"]), tuple(s["outputs"]), None) for s in stages]

    def _load(self, stages: list, num_threads: int) -> None:
        self.stages = load_stages(self.graph_path, self.graph, self.device, num_threads)

    def _header(self, name: str) -> bytes:
        spec = self.specs[name]
        return encode_header(Header(type=FrameType.TENSOR, payload_len=spec.payload_len, request_id=0,
                                    tensor_id=self.ids[name], dtype=DTYPE_CODES[spec.dtype][0], dims=spec.shape))

    def frame(self, name: str, rid: int, array) -> bytes:
        """The TENSOR frame of ``name`` for request ``rid`` (header and payload,
        one buffer for one write)."""
        spec = self.specs[name]
        payload = np.ascontiguousarray(array, dtype=DTYPE_CODES[spec.dtype][2])
        if payload.nbytes != spec.payload_len:
            raise ValueError(f"{self.graph_path}: tensor '{name}' is {list(spec.shape)} {spec.dtype}; received an "
                             f"array of shape {list(np.shape(array))}.")
        h = self._templates[name]
        return b"".join((h[:24], rid.to_bytes(8, "little"), h[32:], payload.data))

    def wire_array(self, name: str, payload) -> np.ndarray:
        """A received payload as the graph's array (no copy)."""
        spec = self.specs[name]
        dtype = np.float32 if spec.dtype == "float32" else np.int8
        return np.frombuffer(payload, dtype=dtype).reshape(spec.shape)

    def describe(self) -> str:
        return f"switch {self.switch!r} device {self.device}/{self.num_devices}"


def programs_for(bundle: Path, device: int, switches: Optional[list] = None, **kwargs) -> list:
    """Every switch of ``bundle`` (or those named) that has device ``device``,
    in the manifest's fallback order (best first)."""
    from paradis_runtime.manifest import read_manifest

    bundle = Path(bundle)
    if not (bundle / "manifest.json").is_file():
        from paradis_runtime.executor import resolve_graph

        program = DeviceProgram(resolve_graph(bundle), device, **kwargs)
        if switches and program.switch not in switches:
            raise SelectionError(f"{bundle}: this folder holds switch {program.switch!r} only, not "
                                 f"{', '.join(repr(s) for s in switches if s != program.switch)}; name the "
                                 "bundle folder (the one with manifest.json) to choose among its switches.")
        return [program]
    manifest = read_manifest(bundle)
    entries = {e["name"]: e for e in manifest["switches"]}
    if switches:
        unknown = [s for s in switches if s not in entries]
        if unknown:
            raise SelectionError(f"{bundle}: no switch {unknown[0]!r} in the bundle; it holds {sorted(entries)}.")
    names = [n for n in manifest["fallback"] if not switches or n in switches]
    out = [DeviceProgram(bundle / entries[n]["graph"], device, **kwargs) for n in names
           if entries[n].get("num_devices", 0) > device]
    if not out:
        largest = max(e.get("num_devices", 0) for e in entries.values())
        raise SelectionError(f"{bundle}: no switch {'among ' + str(switches) + ' ' if switches else ''}has a "
                             f"device {device}; the largest has {largest} devices, numbered 0 to {largest - 1}.")
    return out
