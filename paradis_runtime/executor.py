"""ReferenceExecutor: runs a fusion graph in one process with ai_edge_litert.

The proof that the per-device files together give the model's answer: every
device's stages run in dependency order, tensors move by name exactly as the
graph's sends say, and the fusion happens as declared. Returns the fused
output and a per-stage trace (time, bytes).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Union

import numpy as np

from paradis_runtime._program import InputCheck, load_stages, quantize_input
from paradis_runtime.fusion_graph import FusionGraphError, read_graph
from paradis_runtime.schedule import Plan, run_schedule

__all__ = ["ReferenceExecutor", "resolve_graph"]


def resolve_graph(path: Path, switch: Optional[str] = None, max_devices: Optional[int] = None) -> Path:
    """A graph file, a switch folder, or a bundle (its manifest) -> graph file.

    In a bundle, ``switch`` picks by name; otherwise the first switch of the
    manifest's fallback order that needs at most ``max_devices`` devices.
    """
    if max_devices is not None and (isinstance(max_devices, bool) or not isinstance(max_devices, int)
                                    or max_devices < 1):
        raise ValueError(f"max_devices must be a positive int, received {max_devices!r}.")
    if path.is_file():
        return path
    if (path / "manifest.json").is_file():
        from paradis_runtime.manifest import read_manifest

        manifest = read_manifest(path)
        entries = {e["name"]: e for e in manifest["switches"]}
        name = switch
        if name is None:
            fits = [n for n in manifest["fallback"]
                    if max_devices is None or entries.get(n, {}).get("num_devices", 0) <= max_devices]
            if not fits:
                raise FusionGraphError(
                    f"{path / 'manifest.json'}: no switch runs on max_devices={max_devices} device(s); "
                    f"the bundle needs {min(e.get('num_devices', 0) for e in entries.values())} at least."
                )
            name = fits[0]
        if name not in entries:
            raise FusionGraphError(
                f"{path / 'manifest.json'}: field 'switches' has no switch {name!r}; it holds {sorted(entries)}."
            )
        return path / entries[name]["graph"]
    if (path / "fusion_graph.json").is_file():
        return path / "fusion_graph.json"
    raise FusionGraphError(
        f"{path}: neither a fusion graph file nor a folder holding manifest.json (a bundle) or fusion_graph.json."
    )


class ReferenceExecutor:
    """Runs one switch of an export on this machine.

    Args:
        path: ``fusion_graph.json``, its folder, or a bundle folder.
        switch: which switch of a bundle (default: the first of the
            manifest's fallback order that fits ``max_devices``).
        max_devices: devices available; a bundle falls back to a switch
            that needs no more.
        num_threads: LiteRT threads per interpreter.
    """

    def __init__(self, path: Union[str, Path], switch: Optional[str] = None, num_threads: int = 1,
                 max_devices: Optional[int] = None):
        self.graph_path = resolve_graph(Path(path), switch, max_devices)
        self.graph = read_graph(self.graph_path)
        g = self.graph
        self.precision = g["precision"]
        # device -> {stage name: signature runner}
        self._runners = [{st.name: st.runner for st in load_stages(self.graph_path, g, dev["device"], num_threads)}
                         for dev in g["devices"]]
        tensors = g["tensors"]
        quant = lambda t: None if tensors[t]["quantization"] is None else (
            tensors[t]["quantization"]["scale"], tensors[t]["quantization"]["zero_point"])
        self._plan = Plan(
            input_name=g["input"]["tensor"],
            stages=[[SimpleNamespace(**s) for s in dev["stages"]] for dev in g["devices"]],
            fusion=g["fusion"],
            quantization={t: quant(t) for t in g["fusion"]["inputs"]},
        )
        self._input_quant = quant(g["input"]["tensor"])
        self._input_check = InputCheck(g, self.graph_path)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.graph["input"]["shape"])

    def _check_input(self, image) -> np.ndarray:
        return self._input_check(image)

    def run(self, image) -> tuple:
        """One inference. ``image``: float32 ``input.shape`` (batch axis optional).

        Returns ``(output, trace)``: the fused float32 output and one dict per
        stage run (device, stage, seconds, bytes_received, bytes_sent).
        """
        image = self._check_input(image)
        # The input device quantizes once (int8); every device receives the same bytes.
        image = quantize_input(image, self._input_quant)

        def run_stage(device, stage, feeds):
            return self._runners[device][stage.name](**feeds)

        return run_schedule(self._plan, image, run_stage)

    def predict(self, images) -> np.ndarray:
        """Fused outputs of a batch (N, H, W, C), one inference each (one
        input without its batch axis is a batch of one)."""
        images = self._input_check.batch(images)
        return np.concatenate([self.run(images[i : i + 1])[0] for i in range(len(images))], axis=0)
