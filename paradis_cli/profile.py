"""``paradis profile``: time every stage of every switch of a bundle on this machine.

    paradis profile --bundle runs/r20/bundle --out runs/r20/profile.json [--repeats 20]
    paradis profile --bundle runs/r20/bundle --from-trace d0.jsonl d1.jsonl --out runs/r20/profile.json

The first times each device's stages in isolation; the second takes the stage
times from a real run across peers (``paradis run --trace`` and ``paradis peer
--trace``) and measures the runtime's cost per frame as well.

The profile feeds ``paradis plan --profile``; it is tied to the bundle's fusion
graphs by their sha256, so a re-exported bundle needs a new one.
"""

from __future__ import annotations

import sys
from pathlib import Path

from paradis_cli._common import UsageError, non_negative_int, positive_int

__all__ = ["HELP", "add_arguments", "run", "bundle_folder", "output_file", "profile_text"]


HELP = "time each stage of every switch of a bundle on this machine (input to 'paradis plan')"


def add_arguments(p) -> None:
    p.add_argument("--bundle", required=True, help="bundle folder written by 'paradis export'")
    p.add_argument("--out", default=None,
                   help="write the profile here (JSON, for 'paradis plan --profile'); without it, only print it")
    p.add_argument("--repeats", type=positive_int, default=20,
                   help="timed runs of each device's stages; a stage keeps the median and p90 (default 20)")
    p.add_argument("--warmup", type=non_negative_int, default=3,
                   help="untimed runs before those (default 3); with --from-trace, the requests skipped per device")
    p.add_argument("--from-trace", nargs="+", default=None, metavar="TRACE",
                   help="build the profile from the trace files of a run across peers (every device's: 'paradis "
                        "run --trace', 'paradis peer --trace') instead of timing stages here; it also measures "
                        "the runtime's overhead per frame, which 'paradis plan' then adds")


def bundle_folder(text: str, flag: str = "--bundle") -> Path:
    """The bundle folder named by ``flag``; UsageError when it holds no manifest."""
    path = Path(text)
    if not (path / "manifest.json").is_file():
        raise UsageError(f"{flag} {text!r}: no manifest.json there, so it is not a bundle folder; pass the "
                         "folder that 'paradis export --out' wrote.")
    return path


def output_file(text: str, flag: str) -> Path:
    """A file ``flag`` may write: its folder exists and it is not a folder itself."""
    path = Path(text)
    if path.is_dir():
        raise UsageError(f"{flag} {text!r} is a folder; pass a file name, e.g. {path / 'profile.json'}.")
    if not path.parent.is_dir():
        raise UsageError(f"{flag} {text!r}: the folder {str(path.parent)!r} does not exist; create it first.")
    return path


def profile_text(profile: dict) -> str:
    """One line per device of every switch: its compute per inference (sum of
    its stages' medians and p90s) and its slowest stage."""
    m = profile["machine"]
    lines = [f"profile of {profile['bundle']} on {m.get('cpu', 'unknown')} ({m.get('cores', '?')} cores), "
             f"{profile['num_threads']} LiteRT thread(s) per device, median and p90 of {profile.get('repeats', '?')} "
             f"runs per stage"]
    header = f"{'switch':<14} {'device':>6} {'stages':>6} {'median ms':>10} {'p90 ms':>9}  slowest stage (median ms)"
    lines += [header, "-" * len(header)]
    for name, entry in profile["switches"].items():
        for d, dev in enumerate(entry["devices"]):
            stages = dev["stages"]
            median = sum(s["median_s"] for s in stages.values())
            p90 = sum(s["p90_s"] for s in stages.values())
            slowest = max(stages, key=lambda k: stages[k]["median_s"])
            lines.append(f"{name:<14} {d:>6} {len(stages):>6} {1e3 * median:>10.3f} {1e3 * p90:>9.3f}  "
                         f"{slowest} ({1e3 * stages[slowest]['median_s']:.3f})")
        if "fusion" in entry:
            lines.append(f"{name:<14} {'fusion':>6} {'':>6} {1e3 * entry['fusion']['median_s']:>10.3f} "
                         f"{1e3 * entry['fusion']['p90_s']:>9.3f}")
        if "per_frame_overhead_s" in entry:
            lines.append(f"{name:<14} runtime overhead {1e3 * entry['per_frame_overhead_s']:.3f} ms per frame "
                         f"(measured latency {entry['measured_ms']:.3f} ms over {entry['requests']} requests)")
    return "\n".join(lines)


def run(args) -> None:
    bundle = bundle_folder(args.bundle)
    out = output_file(args.out, "--out") if args.out else None
    from paradis_runtime.planner import profile_bundle, profile_from_traces, write_profile

    if args.from_trace:
        for path in args.from_trace:
            if not Path(path).is_file():
                raise UsageError(f"--from-trace {path!r}: no such file; pass the files 'paradis run --trace' and "
                                 "'paradis peer --trace' wrote.")
        profile = profile_from_traces(bundle, args.from_trace, skip=args.warmup)
    else:
        profile = profile_bundle(bundle, repeats=args.repeats, warmup=args.warmup,
                                 progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(profile_text(profile))
    if out is None:
        print("not saved: pass --out FILE to keep it for 'paradis plan --profile FILE'")
    else:
        write_profile(profile, out)
        print(f"profile written to {out}")
