"""``paradis plan``: which switch of a bundle is fastest over a given link.

    paradis plan --bundle runs/r20/bundle --link-mbps 50 --link-latency-ms 2 \\
        [--profile runs/r20/profile.json] [--measured runs/r20/report.json] [--json plan.json]

Predicts every switch's latency from a stage profile (``paradis profile``;
measured on the fly without ``--profile``), the bytes of each exchange and
the link, ranks the switches and marks the fastest. With ``--measured`` each
prediction stands beside its measurement. The cost model:
docs/runtime_planner.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from paradis_cli._common import UsageError, non_negative_float

__all__ = ["HELP", "add_arguments", "run", "plan_text"]


HELP = "predict each switch's latency over a link from a stage profile and pick the fastest"


def add_arguments(p) -> None:
    p.add_argument("--bundle", required=True, help="bundle folder written by 'paradis export'")
    p.add_argument("--link-mbps", type=non_negative_float, required=True,
                   help="bandwidth of each directed link between devices, Mbit/s (0 = unlimited)")
    p.add_argument("--link-latency-ms", type=non_negative_float, required=True,
                   help="one-way latency of each link, ms")
    p.add_argument("--frame-overhead-ms", type=non_negative_float, default=None,
                   help="extra delay per frame beyond the link model (system calls, copies, wake-ups), ms "
                        "(default: the profile's, measured by 'paradis profile --from-trace'; else 0)")
    p.add_argument("--profile", default=None,
                   help="profile from 'paradis profile --out' (default: profile the bundle now, on this machine)")
    p.add_argument("--measured", default=None,
                   help="JSON list of {switch, link_mbps, link_latency_ms, median_ms} ('paradis run --report') "
                        "to compare with")
    p.add_argument("--json", default=None, help="also write the plan here as JSON")


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def plan_text(rows: list, link, profile: dict, bundle: Path, measured_given: bool) -> str:
    bw = "unlimited bandwidth" if link.mbps is None else f"{link.mbps:g} Mbit/s"
    overheads = sorted({round(r.get("frame_overhead_ms", 0.0), 3) for r in rows})
    overhead = (f" + {overheads[0]:g} ms per frame" if len(overheads) == 1 and overheads[0]
                else f" + the profile's per-frame overhead ({', '.join(f'{o:g}' for o in overheads)} ms)"
                if len(overheads) > 1 else "")
    m = profile["machine"]
    lines = [
        f"plan for bundle {bundle}",
        f"link: {bw}, {link.latency_ms:g} ms one way{overhead}, on each directed link between devices: assumed "
        "for the predictions (the FRAME_FORMAT.md section 9 model that 'paradis run' emulates in the sender)",
        f"compute: stage medians measured {'in a run across peers ' if profile.get('source') == 'traces' else ''}"
        f"on {m.get('cpu', 'unknown')} ({m.get('cores', '?')} cores), "
        f"{profile['num_threads']} LiteRT thread(s) per device, one core per device assumed",
    ]
    header = (f"  {'switch':<14} {'devices':>7} {'wire bytes':>10} {'frames':>6} {'predicted ms':>12}"
              + (f" {'measured ms':>11} {'error %':>8}" if measured_given else "")
              + "  bottleneck (share of the critical path)")
    lines += ["", header, "-" * len(header)]
    for i, r in enumerate(rows):
        line = (f"{'*' if i == 0 else ' '} {r['switch']:<14} {r['devices']:>7} {r['bytes_per_inference']:>10,} "
                f"{r['exchanges']:>6} {r['predicted_ms']:>12.3f}")
        if measured_given:
            error = "-" if r["error_pct"] is None else f"{r['error_pct']:+.1f}"
            line += f" {_ms(r['measured_ms']):>11} {error:>8}"
        lines.append(line + f"  {r['bottleneck']}")
    lines += ["", f"* fastest predicted: {rows[0]['switch']} ({rows[0]['predicted_ms']:.3f} ms)",
              "wire bytes: every frame of one inference, input copies and 64-byte headers included"]
    if measured_given:
        measured = [r for r in rows if r["measured_ms"] is not None]
        if not measured:
            lines.append(f"measured: no entry of --measured is both a switch of this plan and this link ({bw}, "
                         f"{link.latency_ms:g} ms)")
        elif len(measured) > 1:
            best = min(measured, key=lambda r: r["measured_ms"])
            ranked = min(measured, key=lambda r: r["predicted_ms"])
            verdict = "agrees" if best is ranked else f"the prediction ranks {ranked['switch']} first among these"
            lines.append(f"fastest measured: {best['switch']} ({best['measured_ms']:.3f} ms); {verdict}")
    return "\n".join(lines)


def run(args) -> None:
    from paradis_cli.profile import bundle_folder, output_file

    bundle = bundle_folder(args.bundle)
    for flag, value in (("--profile", args.profile), ("--measured", args.measured)):
        if value is not None and not Path(value).is_file():
            what = ("write one with 'paradis profile --bundle DIR --out FILE'" if flag == "--profile"
                    else "pass the report 'paradis run --report' wrote")
            raise UsageError(f"{flag} {value!r}: no such file; {what}.")
    json_out = output_file(args.json, "--json") if args.json else None

    from paradis_runtime.fusion_graph import write_json
    from paradis_runtime.planner import (LinkModel, attach_measurements, plan, profile_bundle, read_measurements,
                                         read_profile)

    given = None if args.frame_overhead_ms is None else args.frame_overhead_ms / 1e3
    link = LinkModel(args.link_mbps, args.link_latency_ms, given or 0.0)
    measurements = read_measurements(args.measured) if args.measured else None
    if args.profile:
        profile = read_profile(args.profile)
    else:
        print(f"no --profile: profiling {bundle} on this machine first", file=sys.stderr, flush=True)
        profile = profile_bundle(bundle, progress=lambda line: print(line, file=sys.stderr, flush=True))
    rows = plan(bundle, profile, link.mbps, link.latency_ms, given)
    if measurements is not None:
        rows = attach_measurements(rows, measurements, link.mbps, link.latency_ms)
    print(plan_text(rows, link, profile, bundle, measurements is not None))
    if json_out is not None:
        write_json({
            "schema": "paradis-plan",
            "version": 1,
            "bundle": str(bundle),
            "link": {"mbps": link.mbps, "latency_ms": link.latency_ms,
                     "frame_overhead_ms": (None if given is None else 1e3 * given),
                     "frame_overhead_source": "profile" if given is None else "--frame-overhead-ms",
                     "source": "assumed"},
            "profile": {"file": args.profile, "machine": profile["machine"], "num_threads": profile["num_threads"],
                        "repeats": profile.get("repeats")},
            "fastest": rows[0]["switch"],
            "rows": rows,
        }, json_out)
        print(f"plan written to {json_out}")
