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

from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from paradis_export._staging import staged
from paradis_export.exporter import export_switch
from paradis_export.fusion_graph import SCHEMA_VERSION, FusionGraphError, read_json, write_json

__all__ = ["export_bundle", "read_manifest", "switch_names", "MANIFEST_VERSION"]

MANIFEST_VERSION = 1


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
) -> dict:
    """Exports ``switches`` of ``model`` into the bundle folder ``out``.

    Args:
        model: a trained SplitModel (gates finalized).
        switches: names (``"2x0.5,1x1.0"`` or a list).
        out: the bundle folder; must not exist unless ``overwrite``.
        int8, calibration: see ``export_switch``.
        progress: called with one line per step; None for silence.

    Returns:
        The manifest (a dict, as written).
    """
    out = Path(out)
    names = switch_names(model, switches)
    if out.exists() and not overwrite:
        raise FileExistsError(f"out: {out} exists; choose a new folder or pass overwrite=True to replace it.")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} exists and is not a folder.")
    with staged(out, overwrite) as tmp:
        entries = []
        for name in names:
            folder = _folder(name)
            (tmp / folder).mkdir()
            graph = export_switch(model, name, tmp / folder, int8=int8, calibration=calibration, progress=progress)
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


def read_manifest(folder) -> dict:
    """Reads ``folder/manifest.json`` and checks what a runtime relies on."""
    path = Path(folder) / "manifest.json"
    doc = read_json(path, f"missing; {folder} is not a bundle folder.")

    def fail(field: str, msg: str):
        raise FusionGraphError(f"{path}: field '{field}' {msg}")

    if not isinstance(doc, dict) or doc.get("schema") != "paradis-bundle":
        fail("schema", f"must be 'paradis-bundle', received {doc.get('schema') if isinstance(doc, dict) else doc!r}")
    if doc.get("version") != MANIFEST_VERSION:
        fail("version", f"is {doc.get('version')!r}; this runtime reads version {MANIFEST_VERSION}")
    entries = doc.get("switches")
    if not isinstance(entries, list) or not entries:
        fail("switches", "must be a non-empty list")
    names = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not isinstance(e.get("graph"), str):
            fail(f"switches[{i}]", "needs a 'name' and a 'graph' path")
        if ".." in Path(e["graph"]).parts or Path(e["graph"]).is_absolute():
            fail(f"switches[{i}].graph", f"must stay inside the bundle, received {e['graph']!r}")
        names.append(e["name"])
    if sorted(doc.get("fallback") or []) != sorted(names):
        fail("fallback", f"must list each switch once, received {doc.get('fallback')!r} for {names}")
    return doc
