"""``paradis inspect``: a bundle (or one fusion graph) as tables.

    paradis inspect runs/r20/bundle
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HELP", "add_arguments", "run", "inspect_text"]


HELP = "print a bundle (or one fusion graph) as tables"


def add_arguments(i) -> None:
    i.add_argument("path", help="bundle folder, switch folder or fusion_graph.json")


def inspect_text(path, per_stage: bool = True) -> str:
    from paradis_runtime import read_graph, read_manifest

    path = Path(path)
    if (path / "manifest.json").is_file():
        manifest = read_manifest(path)
        graphs = [(e["name"], read_graph(path / e["graph"])) for e in manifest["switches"]]
        lines = [f"bundle {path}: model {manifest['model']}, {manifest['precision']}, fallback order "
                 f"{' -> '.join(manifest['fallback'])}"]
    else:
        from paradis_runtime import resolve_graph

        file = resolve_graph(path)
        graph = read_graph(file)
        graphs = [(graph["switch"], graph)]
        lines = [f"fusion graph {file}"]
    for name, g in graphs:
        t = g["totals"]
        others = len(g["devices"]) - 1
        replicated = (f"+ input {t['input_bytes']:,} B to each of the {others} other device(s)" if others
                      else "one device: nothing crosses a network")
        lines += ["", f"switch {name}: {len(g['devices'])} device(s), {g['precision']}, "
                      f"{t['bytes_per_inference']:,} B on the wire per inference ({replicated}), "
                      f"fusion '{g['fusion']['op']}' on device {g['fusion']['device']}"]
        out = g["output"]
        # The kind comes from the model's task (logits, image, segmentation_logits, centernet).
        lines.append(f"output: {out.get('kind', 'logits')} {tuple(out['shape'])} {out['dtype']}")
        header = (f"{'device':>6} {'width':>6} {'file':>16} {'file size':>12} {'params':>10} {'MFLOPs':>9} "
                  f"{'stages':>6} {'sent B':>10} {'received B':>10}")
        lines += [header, "-" * len(header)]
        for d in g["devices"]:
            lines.append(f"{d['device']:>6} {d['width']:>6.3g} {d['file']:>16} {d['file_bytes']:>12,} "
                         f"{d['params']:>10,} {d['flops'] / 1e6:>9.3f} {len(d['stages']):>6} "
                         f"{d['bytes_sent']:>10,} {d['bytes_received']:>10,}")
        lines.append("params: weights in the device's file, batch norm folded into the convolutions "
                     "('paradis train' counts batch norm unfolded)")
        if per_stage and g["sends"]:
            lines += ["", f"{'from':>10} {'to':>12} {'tensor':<28} {'channels':>9} {'bytes':>8}"]
            for s in g["sends"]:
                lines.append(f"{'d%d.%s' % (s['from']['device'], s['from']['stage']):>10} "
                             f"{'d%d.%s' % (s['to']['device'], s['to']['stage']):>12} {s['tensor']:<28} "
                             f"{'%d:%d' % tuple(s['channels']):>9} {s['bytes']:>8,}")
    return "\n".join(lines)


def run(args) -> None:
    from paradis_cli._common import UsageError

    path = Path(args.path)
    if not (path.is_file() or (path / "manifest.json").is_file() or (path / "fusion_graph.json").is_file()):
        raise UsageError(f"{args.path} is neither a fusion graph file nor a folder holding manifest.json "
                         "(a bundle) or fusion_graph.json (a switch).")
    print(inspect_text(path))
