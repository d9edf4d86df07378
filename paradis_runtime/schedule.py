"""Dataflow scheduling shared by the reference executor and the float Keras
run: each device runs its stages in order, a stage when all its inputs exist."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np


@dataclass
class Plan:
    input_name: str
    stages: list  # [device] -> [stage objects with .name, .inputs, .outputs]
    fusion: dict  # {"op", "device", "inputs", "output"}
    quantization: dict  # fusion input name -> (scale, zero_point) for int8 partials

    @cached_property
    def consumers(self) -> dict:
        """tensor -> devices that read it (the fusion device for partials);
        computed once, not per inference."""
        out: dict = {}
        for d, stages in enumerate(self.stages):
            for s in stages:
                for t in s.inputs:
                    out.setdefault(t, set()).add(d)
        for t in self.fusion["inputs"]:
            out.setdefault(t, set()).add(self.fusion["device"])
        return out


def dequantize(x: np.ndarray, quant) -> np.ndarray:
    if quant is None:
        return np.asarray(x, dtype="float32")
    scale, zero_point = quant
    return (np.asarray(x, dtype="float32") - zero_point) * np.float32(scale)


def fuse_partials(fusion: dict, quantization: dict, partials: list) -> np.ndarray:
    """The final fusion (float32) of the graph's ``fusion`` entry, from every
    device's partial output; one function for every executor, so their
    outputs agree bit for bit."""
    values = [dequantize(x, quantization.get(name)) for name, x in zip(fusion["inputs"], partials)]
    if fusion["op"] != "sum":
        raise ValueError(f"Unknown fusion op {fusion['op']!r}; this runtime knows 'sum'.")
    return np.sum(values, axis=0, dtype="float32")


def fuse(plan: Plan, partials: list) -> np.ndarray:
    """The final fusion (float32), from every device's partial output."""
    return fuse_partials(plan.fusion, plan.quantization, partials)


def run_schedule(plan: Plan, image, run_stage: Callable) -> tuple:
    """Runs every stage once in dependency order.

    ``run_stage(device, stage, feeds) -> {output name: array}``. Returns the
    fused output and a trace: one dict per stage run, in order, with its
    device, stage, seconds and the bytes it received from and sent to other
    devices.
    """
    location = {plan.input_name: None}  # tensor -> producing device (None: replicated input)
    store = {plan.input_name: image}
    consumers = plan.consumers
    nxt = [0] * len(plan.stages)
    delivered = set()
    trace = []
    remaining = sum(len(s) for s in plan.stages)
    while remaining:
        progressed = False
        for d, stages in enumerate(plan.stages):
            while nxt[d] < len(stages) and all(t in store for t in stages[nxt[d]].inputs):
                stage = stages[nxt[d]]
                feeds = {t: store[t] for t in stage.inputs}
                # A tensor crosses to a device once, however many of its stages read it.
                fresh = [t for t in stage.inputs if location.get(t) not in (None, d) and (d, t) not in delivered]
                delivered.update((d, t) for t in fresh)
                received = sum(int(np.asarray(feeds[t]).nbytes) for t in fresh)
                start = time.perf_counter()
                outputs = run_stage(d, stage, feeds)
                seconds = time.perf_counter() - start
                sent = 0
                for t, v in outputs.items():
                    store[t] = v
                    location[t] = d
                    sent += int(np.asarray(v).nbytes) * len(consumers.get(t, set()) - {d})
                trace.append({"device": d, "stage": stage.name, "seconds": seconds,
                              "bytes_received": received, "bytes_sent": sent})
                nxt[d] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            waiting = [
                f"device {d} {stages[nxt[d]].name} waits for "
                f"{[t for t in stages[nxt[d]].inputs if t not in store]}"
                for d, stages in enumerate(plan.stages) if nxt[d] < len(stages)
            ]
            raise ValueError(f"The fusion graph cannot progress: {'; '.join(waiting)}.")
    missing = [t for t in plan.fusion["inputs"] if t not in store]
    if missing:
        raise ValueError(f"No stage produced the fusion inputs {missing}.")
    return fuse(plan, [store[t] for t in plan.fusion["inputs"]]), trace
