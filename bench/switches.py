"""One checkpoint for many switches (ParaDiS) against each switch trained alone.

CIFAR-style ResNet-20 on Fashion-MNIST, in two regimes (width 1.0 and 0.25).
Shared checkpoints: switches 1x1.0, 1x0.7, 1x0.5, 2x0.5, 4x0.25, trained
together once with the multi-device switches' gates learned at budget 0.2
(``shared_learned``) and once all shut (``shared_shut``). Twins: every switch
trained alone for the same epochs (multi-device ones in both gate modes).
Per switch: top1_shared, top1_alone.

Targets (ParaDiS): every shared switch within 0.5 pt of its twin; all-shut
2x0.5 at most 1 pt below the single-device 1x0.7 (about the same total
FLOPs); 2x0.5 clearly above 1x0.5 (same per-device width).

Presets as in bench/accuracy_comm.py; ``--modes shut`` (or ``learned``) trains
one of the two shared checkpoints only. Runs are stored in bench/.runs, so a
later invocation with both modes reuses them; ``--cached-only`` reports the
stored runs and starts none; ``--regimes R --merge`` keeps the stored results
of the other regimes (same setting, recipes and backend only). Writes
docs/results/switches.json, .md.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
from paradis_tf.switches import Switch  # noqa: E402

REGIMES = {"full": 1.0, "narrow": 0.25}
SWITCHES = ("1x1.0", "1x0.7", "1x0.5", "2x0.5", "4x0.25")
MULTI = ("2x0.5", "4x0.25")
PRESETS = {
    "gpu": {"train_limit": None, "test_limit": None, "epochs": 12, "seeds": 1, "batch_size": 128, "lr": 1e-3},
    "cpu": {"train_limit": 20000, "test_limit": 5000, "epochs": 4, "seeds": 1, "batch_size": 128, "lr": 1e-2},
}


def _model(width, switches, gates):
    """ResNet-20 of ``width`` serving ``switches``."""
    from paradis_tf.models import CifarResNet

    return CifarResNet(depth=20, width=width, num_classes=10, input_shape=(28, 28, 1), switches=switches,
                       gates=gates)


def run(width, switches, mode, seed, setting, data):
    import keras

    keras.utils.set_random_seed(seed)
    learned = mode == "learned" and any(s in MULTI for s in switches.split(","))
    model = _model(width, switches, "learned" if learned else "shut")
    kw = {"budget": 0.2, "finalize": True, "finetune_epochs": 1} if learned else {}
    return C.train_and_evaluate(model, data, setting["epochs"], setting["batch_size"], setting["lr"], seed, **kw)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default="learned,shut",
                        help="which shared checkpoints to train: learned (budget 0.2) and/or shut")
    parser.add_argument("--merge", action="store_true",
                        help="keep the stored results of the regimes this run does not measure "
                             "(same setting, recipes and backend only)")
    args, setting, tag = C.parse_setting(parser, PRESETS, "switches.py")
    modes = args.modes.split(",")
    if not modes or any(m not in ("learned", "shut") for m in modes):
        raise SystemExit(f"--modes: expected learned and/or shut, comma-separated, received {args.modes!r}")
    data = None if args.cached_only else C.load_data(setting["train_limit"], setting["test_limit"])
    result = {}
    for regime in args.regimes.split(","):
        width = REGIMES[regime]
        result[regime] = {}
        seeds = range(setting["seeds"][regime])
        # Single-device twins do not depend on the gate mode: a narrower
        # network with the channel counts of the slice the switch uses.
        singles = {}
        for switch in SWITCHES:
            if switch in MULTI:
                continue
            twin_width = width * Switch.parse(switch).total_width
            for seed in seeds:
                key = f"{tag}/{regime}_alone_{switch}_single_{seed}"
                rec = C.cached_run("switches", key, lambda: run(twin_width, "1x1.0", "shut", seed, setting, data),
                                   cached_only=args.cached_only)
                if rec is None:
                    continue
                singles.setdefault(switch, []).append(rec["result"]["1x1.0"])
                print(f"[{regime:>6}] alone {switch} seed {seed}: {100 * rec['result']['1x1.0']['top1']:.2f}% "
                      f"({rec['seconds']:.0f} s)", flush=True)
        for mode in modes:
            shared_runs, alone = [], dict(singles)
            for seed in seeds:
                suffix = f"_{C.GATE_RECIPE}" if mode == "learned" else ""
                key = f"{tag}/{regime}_shared_{mode}_{seed}{suffix}"
                rec = C.cached_run("switches", key, lambda: run(width, ",".join(SWITCHES), mode, seed, setting, data),
                                   cached_only=args.cached_only)
                if rec is None:
                    continue
                shared_runs.append(rec["result"])
                print(f"[{regime:>6}] shared ({mode}) seed {seed}: " + ", ".join(
                    f"{k} {100 * v['top1']:.2f}%" for k, v in rec["result"].items()) + f" ({rec['seconds']:.0f} s)",
                    flush=True)
                for switch in MULTI:
                    # The twin: that multi-device switch on its own, same gates.
                    key = f"{tag}/{regime}_alone_{switch}_{mode}_{seed}{suffix}"
                    rec = C.cached_run("switches", key, lambda: run(width, switch, mode, seed, setting, data),
                                       cached_only=args.cached_only)
                    if rec is None:
                        continue
                    alone.setdefault(switch, []).append(rec["result"][switch])
                    print(f"[{regime:>6}] alone {switch} ({mode}) seed {seed}: "
                          f"{100 * rec['result'][switch]['top1']:.2f}% ({rec['seconds']:.0f} s)", flush=True)
            for switch in SWITCHES:
                if mode == "shut" and switch not in MULTI and "learned" in modes:
                    continue  # single-device rows come from the learned checkpoint
                if not shared_runs or switch not in alone:
                    continue  # --cached-only: not stored yet
                row_key = switch if switch not in MULTI else f"{switch}_{mode}"
                result[regime][row_key] = {
                    "top1_shared": C.mean_spread([r[switch]["top1"] for r in shared_runs])[0],
                    "top1_alone": C.mean_spread([r["top1"] for r in alone[switch]])[0],
                    "comm_ratio": shared_runs[0][switch]["comm_ratio"],
                    "checkpoint": f"shared_{mode}",
                }
    result = {regime: rows for regime, rows in result.items() if rows}  # --cached-only: regimes not run yet
    if args.merge:
        stored = C.stored_results("switches.json", setting)
        for regime in REGIMES:
            if regime in stored and regime not in result:
                result[regime] = stored[regime]
                setting["seeds"][regime] = stored["setting"]["seeds"][regime]
        result = {regime: result[regime] for regime in REGIMES if regime in result}
    setting["seeds"] = {regime: n for regime, n in setting["seeds"].items() if regime in result}
    setting["description"] = C.describe(setting)
    verdict = {}
    for regime, rows in result.items():
        verdict[f"{regime}.shared_within_0.5pt_of_alone"] = all(
            r["top1_shared"] >= r["top1_alone"] - 0.005 for r in rows.values())
        if "2x0.5_shut" in rows and "1x0.7" in rows:
            verdict[f"{regime}.shut_2x0.5_at_most_1pt_below_1x0.7"] = (
                rows["2x0.5_shut"]["top1_shared"] >= rows["1x0.7"]["top1_shared"] - 0.01)
            verdict[f"{regime}.2x0.5_above_1x0.5"] = rows["2x0.5_shut"]["top1_shared"] > rows["1x0.5"]["top1_shared"]
    payload = {**result, "setting": setting, "met": verdict}
    C.write_json("switches.json", payload)
    lines = ["# One checkpoint, many switches (Fashion-MNIST, ResNet-20)", "", f"Setting: {setting['description']}", ""]
    for regime, rows in result.items():
        lines += [f"## {regime} (width {REGIMES[regime]})", "",
                  "| switch | checkpoint | top-1 shared % | top-1 alone % | shared - alone pt | traffic |",
                  "|---|---|---|---|---|---|"]
        for key, r in rows.items():
            traffic = "-" if r["comm_ratio"] is None else f"{r['comm_ratio']:.3f}"
            lines.append(f"| {key} | {r['checkpoint']} | {100 * r['top1_shared']:.2f} | {100 * r['top1_alone']:.2f} | "
                         f"{100 * (r['top1_shared'] - r['top1_alone']):+.2f} | {traffic} |")
        lines.append("")
    lines += ["## Targets", "", "| target | met |", "|---|---|"]
    lines += [f"| {k} | {'yes' if v else 'no'} |" for k, v in verdict.items()]
    lines += ["", f"Command: `{setting['command']}`"]
    if setting.get("merged_from"):
        lines.append("Regimes it did not run come from earlier runs: "
                     + ", ".join(f"`{c}`" for c in setting["merged_from"]))
    lines.append("")
    C.write_text("switches.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
