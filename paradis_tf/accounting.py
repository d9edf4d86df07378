"""device_summary: what each device of each switch computes, stores and sends."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import keras

from paradis_tf.graph_walk import layer_calls
from paradis_tf.layers._base import SwitchedLayer

__all__ = ["device_summary"]


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return str(n)


def _ratio(a: float, b: float) -> Optional[float]:
    return None if b == 0 else a / b


def device_summary(
    model: keras.Model,
    input_shape: Sequence[int],
    bytes_per_element: int = 4,
    print_fn: Optional[Callable[[str], None]] = print,
) -> dict:
    """Per-switch, per-device parameters, FLOPs and traffic of a split model.

    Args:
        model: a functional model whose split layers are called with
            ``switch=``; one output per switch (or a plain per-switch model).
        input_shape: one sample's shape, without the batch axis, e.g.
            ``(28, 28, 1)``.
        bytes_per_element: bytes of one tensor element on the wire (4 for
            float32, 1 for int8).
        print_fn: where the table goes; None prints nothing.

    Returns:
        ``{"unsplit": {"params", "flops"}, "switches": {name: {...,
        "devices": [...]}}}``. ``comm_ratio`` is gated traffic over the dense
        tensor-parallel reference (every device receives every channel), None
        for a single device; the fusion of partial outputs is fixed traffic,
        reported as ``fusion_bytes``. ``params_ratio``/``flops_ratio`` compare
        a device with the unsplit model (full width, one device).

        Traffic is counted per layer: a channel that two layers read (a
        block's 3x3 convolution and its projection) is counted for each, as
        the training budget counts it; an export sends a run of channels that
        both need once per receiving device, so a bundle's
        ``bytes_per_inference`` can be lower, never higher.

    Raises:
        ValueError: for a layer with weights that is not a split layer.
    """
    if isinstance(bytes_per_element, bool) or not isinstance(bytes_per_element, int) or bytes_per_element < 1:
        raise ValueError(
            f"bytes_per_element must be a positive int, received {bytes_per_element!r}."
        )
    records = layer_calls(model, input_shape)
    per_switch: dict = {}
    for layer, switch, shape in records:
        if not isinstance(layer, SwitchedLayer):
            if layer.weights:
                raise ValueError(
                    f"Layer '{layer.name}' ({type(layer).__name__}) has weights but is not a "
                    "paradis_tf split layer, so its cost per device is unknown: build the "
                    "model from paradis_tf.layers."
                )
            continue
        name = layer.switches[switch].name
        per_switch.setdefault(name, (layer.switches[switch], []))[1].append((layer, shape))
    if not per_switch:
        raise ValueError(
            f"Model '{model.name}' has no paradis_tf split layer: nothing to summarize."
        )

    first_layer = next(iter(per_switch.values()))[1][0][0]
    order = {n: i for i, n in enumerate(first_layer.switches.names)}
    per_switch = dict(sorted(per_switch.items(), key=lambda kv: order.get(kv[0], len(order))))
    result = {"input_shape": list(input_shape), "bytes_per_element": bytes_per_element, "switches": {}}
    unsplit = None
    for name, (switch, calls) in per_switch.items():
        d = switch.num_devices
        totals = {
            key: [0] * d
            for key in (
                "params",
                "flops",
                "bytes_sent",
                "bytes_received",
                "dense_bytes_sent",
                "fusion_bytes_sent",
                "fusion_bytes_received",
            )
        }
        u_params = u_flops = 0
        for layer, shape in calls:
            cost = layer.switch_cost(name, shape, bytes_per_element)
            for key, values in totals.items():
                for k, v in enumerate(getattr(cost, key)):
                    values[k] += v
            p, f = layer.unsplit_cost(shape)
            u_params, u_flops = u_params + p, u_flops + f
        if unsplit is None:
            unsplit = {"params": u_params, "flops": u_flops}
        gated, dense = sum(totals["bytes_sent"]), sum(totals["dense_bytes_sent"])
        devices = []
        for k in range(d):
            devices.append(
                {
                    "device": k,
                    "width": switch.widths[k],
                    "params": totals["params"][k],
                    "flops": totals["flops"][k],
                    "bytes_sent": totals["bytes_sent"][k] + totals["fusion_bytes_sent"][k],
                    "bytes_received": totals["bytes_received"][k]
                    + totals["fusion_bytes_received"][k],
                    "gated_bytes_sent": totals["bytes_sent"][k],
                    "dense_tp_bytes_sent": totals["dense_bytes_sent"][k],
                    "fusion_bytes_sent": totals["fusion_bytes_sent"][k],
                    "comm_ratio": _ratio(totals["bytes_sent"][k], totals["dense_bytes_sent"][k]),
                    "params_ratio": _ratio(totals["params"][k], u_params),
                    "flops_ratio": _ratio(totals["flops"][k], u_flops),
                }
            )
        result["switches"][name] = {
            "num_devices": d,
            "widths": list(switch.widths),
            "bytes": gated,
            "dense_tp_bytes": dense,
            "comm_ratio": _ratio(gated, dense),
            "fusion_bytes": sum(totals["fusion_bytes_sent"]),
            "devices": devices,
        }
    result["unsplit"] = unsplit
    if print_fn is not None:
        print_fn(_format(result))
    return result


def _format(result: dict) -> str:
    u = result["unsplit"]
    lines = [
        f"Unsplit model: {u['params']:,} params, {u['flops'] / 1e6:.2f} MFLOPs per sample "
        f"(input {tuple(result['input_shape'])}, {result['bytes_per_element']} B per element)"
    ]
    fmt_r = lambda r: "-" if r is None else f"{r:.3f}"
    for name, s in result["switches"].items():
        lines.append("")
        lines.append(
            f"Switch {name}: traffic {_fmt_bytes(s['bytes'])} of {_fmt_bytes(s['dense_tp_bytes'])} "
            f"dense TP (ratio {fmt_r(s['comm_ratio'])}), fusion {_fmt_bytes(s['fusion_bytes'])}"
        )
        header = (
            f"{'device':>6} {'width':>6} {'params':>12} {'/unsplit':>9} {'MFLOPs':>10} "
            f"{'/unsplit':>9} {'sent':>10} {'received':>10} {'/denseTP':>9}"
        )
        lines.append(header)
        lines.append("-" * len(header))
        for dev in s["devices"]:
            lines.append(
                f"{dev['device']:>6} {dev['width']:>6.3g} {dev['params']:>12,} "
                f"{fmt_r(dev['params_ratio']):>9} {dev['flops'] / 1e6:>10.3f} "
                f"{fmt_r(dev['flops_ratio']):>9} {_fmt_bytes(dev['bytes_sent']):>10} "
                f"{_fmt_bytes(dev['bytes_received']):>10} {fmt_r(dev['comm_ratio']):>9}"
            )
    return "\n".join(lines)
