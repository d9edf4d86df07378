"""The bundle manifest: several switches of one model in one folder, with the
order a runtime falls back in when devices are missing.

    BUNDLE/manifest.json
    BUNDLE/<switch>/fusion_graph.json, device0.tflite, device1.tflite, ...
"""

from __future__ import annotations

from pathlib import Path

from paradis_runtime.fusion_graph import FusionGraphError, read_json

__all__ = ["MANIFEST_VERSION", "read_manifest"]

MANIFEST_VERSION = 1


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
