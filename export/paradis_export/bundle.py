"""Bundles: several switches of one model exported into one folder with a
manifest, so a runtime can fall back to a switch that needs fewer devices.

    OUT/manifest.json
    OUT/<switch>/fusion_graph.json, device0.tflite, device1.tflite, ...
        (<switch> is the switch's name with '/' written '_', e.g. 3x1_3)

An export is written to a staging folder beside OUT and renamed into place
only when every switch succeeded: a failed, interrupted (Ctrl-C) or
terminated (SIGTERM) export leaves no partial bundle (see ``_staging``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from paradis_export._staging import staged
from paradis_export.exporter import export_switch
from paradis_runtime.fusion_graph import SCHEMA_VERSION, write_json
from paradis_runtime.manifest import MANIFEST_VERSION

__all__ = ["export_bundle", "switch_names", "check_out"]


def switch_names(model, switches) -> list:
    """Names of ``switches`` (``"2x0.5,1x1.0"`` or a list) in ``model``, each once.

    Raises:
        ValueError: starting with ``switches:``, for an empty entry or a
            switch the model does not serve.
    """
    if isinstance(switches, str):
        entries = switches.split(",")
        if switches.strip() and any(not e.strip() for e in entries):
            raise ValueError(f"switches: {switches!r} has an empty entry; separate switches by single commas, "
                             "e.g. '2x0.5,1x1.0'.")
        switches = [e for e in entries if e.strip()]
    if not switches:
        raise ValueError(f"switches: name at least one switch, received {switches!r}.")
    names = []
    for s in switches:
        try:
            name = model.switches[s.strip() if isinstance(s, str) else s].name
        except ValueError as e:
            raise ValueError(f"switches: {e}") from None
        if name not in names:
            names.append(name)
    return names


def check_out(out, overwrite: bool, argument: str = "out") -> None:
    """Refuses a bundle folder ``out`` that an export must not replace.

    A folder that exists is replaced only with ``overwrite``, and only when
    it is empty or an earlier bundle (it holds ``manifest.json``): a slip
    such as ``--out runs/r20`` for ``--out runs/r20/bundle`` must not delete
    a training run and its checkpoint.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is False.
        ValueError: ``out`` is a file, or a folder that is neither empty nor a
            bundle, or the current folder or one above it.
    """
    out = Path(out)
    flag = "--overwrite" if argument.startswith("--") else "overwrite=True"
    if not out.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{argument}: {out} exists; choose a new folder or pass {flag} to replace it.")
    if not out.is_dir():
        raise ValueError(f"{argument}: {out} exists and is not a folder.")
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise ValueError(f"{argument}: {out} is the current folder or holds it; name the bundle folder itself, "
                         "e.g. runs/r20/bundle.")
    if any(out.iterdir()) and not (out / "manifest.json").is_file():
        kept = sorted(p.name for p in out.iterdir())
        shown = ", ".join(kept[:5]) + (", ..." if len(kept) > 5 else "")
        raise ValueError(f"{argument}: {out} is not a bundle (no manifest.json; it holds {shown}); {flag} "
                         "replaces only an earlier bundle or an empty folder. Name a new folder, e.g. "
                         f"{out / 'bundle'}.")


def _folder(switch_name: str) -> str:
    """A switch's folder in the bundle: its name, with '/' (as in 3x1/3) made '_'."""
    return switch_name.replace("/", "_")


def export_bundle(
    model,
    switches: Union[str, Sequence],
    out,
    int8: bool = False,
    calibration=None,
    overwrite: bool = False,
    progress: Optional[Callable[[str], None]] = print,
    browser: bool = False,
) -> dict:
    """Exports ``switches`` of ``model`` into the bundle folder ``out``.

    Args:
        model: a trained SplitModel (gates finalized).
        switches: names (``"2x0.5,1x1.0"`` or a list).
        out: the bundle folder; must not exist unless ``overwrite``, and then
            only an earlier bundle or an empty folder is replaced
            (``check_out``).
        int8, calibration: see ``export_switch``.
        progress: called with one line per step; None for silence.
        browser: int8: also write the browser files (``export_switch``).

    Returns:
        The manifest (a dict, as written).
    """
    out = Path(out)
    names = switch_names(model, switches)
    check_out(out, overwrite)
    if not int8 and calibration is not None:
        warnings.warn("calibration is for int8=True; a float32 export calibrates nothing", stacklevel=2)
    unfinalized = [n for n in getattr(model, "unfinalized_switches", tuple)() if n in names]
    if unfinalized:
        warnings.warn(f"switch(es) {', '.join(unfinalized)}: the learned gates are not finalized (finalize_gates "
                      "has not run: a checkpoint saved during training, such as checkpoint.keras?); the export "
                      "takes the cut they make now. Export the model 'paradis train' ends with (model.keras).",
                      stacklevel=2)
    with staged(out, overwrite) as tmp:
        entries = []
        for name in names:
            folder = _folder(name)
            (tmp / folder).mkdir()
            graph = export_switch(model, name, tmp / folder, int8=int8, calibration=calibration, progress=progress,
                                  browser=browser)
            entries.append({
                "name": name,
                "num_devices": len(graph["devices"]),
                "widths": graph["widths"],
                "graph": f"{folder}/fusion_graph.json",
                "bytes_per_inference": graph["totals"]["bytes_per_inference"],
                "max_device_flops": max(d["flops"] for d in graph["devices"]),
                "max_device_file_bytes": max(d["file_bytes"] for d in graph["devices"]),
            })
        manifest = {
            "schema": "paradis-bundle",
            "version": MANIFEST_VERSION,
            "graph_schema_version": SCHEMA_VERSION,
            "model": model.name,
            "precision": "int8" if int8 else "float32",
            "switches": entries,
            # Most devices first: a runtime tries them in this order and falls
            # back when a device is missing (ties: the lighter device first).
            "fallback": [e["name"] for e in sorted(entries, key=lambda e: (-e["num_devices"], e["max_device_flops"]))],
        }
        write_json(manifest, tmp / "manifest.json")
    return manifest
