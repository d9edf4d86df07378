"""Draws docs/figures/concepts.png, the diagram of docs/concepts.md.

    python docs/figures/concepts.py [--out docs/figures/concepts.png]

Everything drawn is read from the library, not drawn by hand: the channel
slices come from ``Switch.partition``, the kernel masks from a real
``SplitDense`` layer (``kernel_mask``) whose learned gates are pinned open or
shut, and each panel's traffic ratio from its gate values.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

C = 16  # channels of the example layer (input and output)
SWITCHES = "1x1.0,2x0.5,4x0.25"
EXTRA = ("0.5+0.3+0.2", "1x0.5")  # drawn in panel (a) only
# Remote gates pinned open, per switch: (input channel, destination device).
OPEN = {"2x0.5": [(2, 1), (5, 1), (12, 0)], "4x0.25": [(1, 1), (6, 3), (9, 0), (14, 2)]}
COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]  # device 0, 1, 2, 3


def example_layer():
    """A SplitDense(C) on (B, C) inputs with learned gates, pinned as OPEN says."""
    from paradis_tf import SwitchSet
    from paradis_tf import layers as L

    switches = SwitchSet(SWITCHES)
    layer = L.SplitDense(C, switches)
    layer.build((None, C))
    for name, opened in OPEN.items():
        devices = len(switches[name].widths)
        pins = np.zeros((C, devices), "float32")  # every remote gate shut ...
        for c, k in opened:
            pins[c, k] = 1.0  # ... but these
        layer.pin_gates(name, pins)
    return layer


def traffic_ratio(layer, switch: str) -> float:
    """Open remote gates / all remote entries: the layer's traffic against dense TP."""
    remote = layer.remote_mask(switch)
    return float((layer.gate_values(switch) * remote).sum() / remote.sum())


def draw(out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from paradis_tf import Switch

    layer = example_layer()
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6), gridspec_kw={"width_ratios": [1.3, 1, 1]}, layout="constrained")

    # (a) Switches: which device owns which channel slice.
    ax = axes[0]
    names = SWITCHES.split(",") + list(EXTRA)
    for row, name in enumerate(names):
        for k, r in enumerate(Switch.parse(name).partition(C)):
            ax.barh(row, len(r), left=r.start, color=COLORS[k % 4], edgecolor="white")
            ax.text(r.start + len(r) / 2, row, f"d{k}", ha="center", va="center", color="white", fontsize=9)
        last = max(r.stop for r in Switch.parse(name).partition(C))
        if last < C:
            ax.barh(row, C - last, left=last, color="#dddddd", edgecolor="white")
            ax.text((last + C) / 2, row, "inactive", ha="center", va="center", fontsize=9)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, C)
    ax.set_xlabel(f"channel (C = {C}): device k owns a contiguous slice")
    ax.set_title("(a) switches: one set of weights,\nsliced per device configuration")

    # (b), (c) The kernel mask of one split layer: who computes with which channel.
    cmap = ListedColormap(["white", "#222222"] + COLORS)
    for ax, name in zip(axes[1:], OPEN):
        mask = np.asarray(layer.kernel_mask(name), dtype="float32")  # (C_in, C_out), 1 = used
        owner = np.zeros(C, int)
        for k, r in enumerate(Switch.parse(name).partition(C)):
            owner[r.start:r.stop] = k
        local = owner[:, None] == owner[None, :]
        # 0 shut (never sent), 1 open remote (sent), 2 + k local to device k.
        image = np.where(local, 2 + owner[None, :].repeat(C, 0), np.where(mask > 0, 1, 0))
        ax.imshow(image, cmap=cmap, vmin=0, vmax=5, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_xlabel("output channel (computed by its owner)")
        ax.set_ylabel("input channel")
        ax.set_title(f"({'bc'[list(OPEN).index(name)]}) split layer in {name}: kernel x mask\n"
                     f"traffic ratio {traffic_ratio(layer, name):.2f} of dense tensor parallelism")
    handles = [Patch(color=COLORS[0], label="local (diagonal blocks, colour of the owning device): never sent"),
               Patch(color="#222222", label="gate open: channel sent to that device"),
               Patch(facecolor="white", edgecolor="black", label="gate shut: not sent, weight unused")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=10, frameon=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_suffix(".png")))
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    print("wrote", draw(Path(parser.parse_args().out)))


if __name__ == "__main__":
    main()
