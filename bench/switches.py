"""One checkpoint for many switches (ParaDiS) against each switch trained alone.

CIFAR-style ResNet-20 on Fashion-MNIST, in two regimes (width 0.25 and 1.0).
Shared checkpoints: switches 1x1.0, 1x0.7, 1x0.5, 2x0.5, 4x0.25, trained
together once with the multi-device switches' gates learned at budget 0.2
(``shared_learned``) and once all shut (``shared_shut``); every step trains
every switch, so each switch gets as many updates as its twin. Twins: every
switch trained alone for the same epochs: a single-device switch such as
1x0.7 as a narrower network with its slice's channel counts, started from the
leading 70 % of the shared model's initial kernels (the slimmable
sub-network's start); multi-device ones in the full-width model, in both
gate modes.

A paired design, as in accuracy_comm.py: per seed, the shared checkpoints and
every twin start from the same kernels and see the same batches; each row
reports shared - twin per seed (mean and 95 % t interval), measured on the
whole test set. Per switch: top1_shared, top1_alone, paired.

Targets (ParaDiS): every shared switch minus its twin: interval above
-0.5 pt; all-shut 2x0.5 at most 1 pt below the single-device 1x0.7 (about
the same total FLOPs); 2x0.5 clearly above 1x0.5 (same per-device width).

``--modes sandwich`` adds a third shared checkpoint, learned gates trained
by the sandwich rule (``Sandwich(middle=1)``: per step the widest switch
1x1.0, the narrowest 1x0.5 and one of the three others, so each of those
gets a third of the steps). Its rows compare it with the twins above
(``<switch>_sandwich``: the whole gap) and, for a switch with fewer
updates, with a twin given the same number of updates (its epochs scaled
by the switch's share of the steps, ``<switch>_sandwich_matched``): what
remains there is interference between switches, the rest is the updates
the rule saves. The training time of each checkpoint is reported
(``train_seconds``).

Presets: ``--preset cpu`` trains 12 epochs (3x accuracy_comm's 4, where the
twins have converged) on 20,000 images; ``--preset gpu`` the full data.
``--modes shut`` (or ``learned``, or ``sandwich``) trains some of the
shared checkpoints only. Runs are stored in bench/records (committed), so a
later invocation reuses them; ``--cached-only`` reports the stored runs and starts none; ``--regimes R
--merge`` keeps the stored results of the other regimes (same setting,
recipes and backend only). Writes docs/results/switches.json, .md.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
from paradis_tf.switches import Switch, SwitchSet  # noqa: E402
from paradis_tf.training.sandwich import Sandwich  # noqa: E402

REGIMES = {"narrow": 0.25, "full": 1.0}
SWITCHES = ("1x1.0", "1x0.7", "1x0.5", "2x0.5", "4x0.25")
MULTI = ("2x0.5", "4x0.25")
MODES = ("learned", "shut", "sandwich")
SANDWICH_MIDDLE = 1


def update_shares(middle=SANDWICH_MIDDLE):
    """{switch: share of the steps that train it} under the sandwich rule."""
    windows = Sandwich(middle=middle).windows(SwitchSet(",".join(SWITCHES)).names)
    return {name: sum(name in w for w in windows) / len(windows) for name in SWITCHES}
PRESETS = {
    "gpu": {"train_limit": None, "test_limit": None, "epochs": 36, "seeds": 5, "batch_size": 128, "lr": 1e-3},
    "cpu": {"train_limit": 20000, "test_limit": None, "epochs": 12, "seeds": 5, "batch_size": 128, "lr": 1e-2},
}


def _model(width, switches, gates):
    """ResNet-20 of ``width`` serving ``switches``."""
    from paradis_tf.models import CifarResNet

    return CifarResNet(depth=20, width=width, num_classes=10, input_shape=(28, 28, 1), switches=switches,
                       gates=gates)


def run(width, switches, mode, seed, setting, data, twin_width=None, epochs=None):
    """Trains ``switches`` of the width-``width`` model; ``twin_width`` trains
    instead a narrower network of that width (switch 1x1.0) started from the
    leading channels of the same kernels: a single-device switch's twin.
    ``mode`` "sandwich" is "learned" trained by the sandwich rule; ``epochs``
    overrides the setting's (an update-matched twin)."""
    import keras

    # The paired start: the same kernels for the shared checkpoint and every twin.
    keras.utils.set_random_seed(seed)
    reference = _model(width, "1x1.0", "shut")
    keras.utils.set_random_seed(seed)
    learned = mode in ("learned", "sandwich") and any(s in MULTI for s in switches.split(","))
    model = _model(twin_width or width, switches, "learned" if learned else "shut")
    C.paired_init(model, reference, leading=twin_width is not None)
    kw = {"budget": 0.2, "finalize": True, "finetune_epochs": 1} if learned else {}
    if mode == "sandwich":
        kw["sandwich"] = Sandwich(middle=SANDWICH_MIDDLE, seed=seed)
    return C.train_and_evaluate(model, data, epochs or setting["epochs"], setting["batch_size"], setting["lr"], seed,
                                **kw)


def _twin_width(width, switch):
    """The width of a single-device switch's twin: a narrower network with
    the channel counts of the switch's slice (None for a multi-device one)."""
    return None if switch in MULTI else width * Switch.parse(switch).total_width


def _above(rows, bound=-0.005):
    """Whether every row's paired 95 % interval lies above ``bound``."""
    return all(r["paired"]["ci95"] is not None and r["paired"]["ci95"][0] > bound for r in rows)


def _row(shared_runs, alone_runs, switch, checkpoint):
    seeds = [s for s in sorted(shared_runs) if s in alone_runs]
    shared = [shared_runs[s][switch]["top1"] for s in seeds]
    alone = [alone_runs[s]["top1"] for s in seeds]
    return {
        "top1_shared": C.mean_spread(shared)[0],
        "top1_alone": C.mean_spread(alone)[0],
        "seeds": seeds,
        "paired": C.paired_difference(shared, alone),
        "comm_ratio": shared_runs[seeds[0]][switch]["comm_ratio"],
        "checkpoint": checkpoint,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default="learned,shut",
                        help="which shared checkpoints to train: learned (budget 0.2), shut, and/or sandwich "
                             "(learned, by the sandwich rule; with update-matched twins)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the stored results of the regimes this run does not measure "
                             "(same setting, recipes and backend only)")
    args, setting, tag = C.parse_setting(parser, PRESETS, "switches.py", regimes="narrow")
    modes = args.modes.split(",")
    if not modes or any(m not in MODES for m in modes):
        raise SystemExit(f"--modes: expected some of {list(MODES)}, comma-separated, received {args.modes!r}")
    bad = [r for r in args.regimes.split(",") if r not in REGIMES]
    if bad:
        raise SystemExit(f"--regimes: unknown {bad}; choose from {list(REGIMES)}")
    data = None if args.cached_only else C.load_data(setting["train_limit"], setting["test_limit"])

    def cached(key, fn, label, shown=None):
        # shown: the switch a single-device twin stands for (its model's only switch is 1x1.0).
        rec = C.cached_run("switches", key, fn, cached_only=args.cached_only)
        if rec is not None:
            result = rec["result"]
            print(f"[{label}] " + ", ".join(f"{shown or k} {100 * v['top1']:.2f}%" for k, v in result.items())
                  + f" ({rec['seconds']:.0f} s)", flush=True)
        return rec

    result, seconds = {}, {}
    shares = update_shares()
    for regime in args.regimes.split(","):
        width = REGIMES[regime]
        result[regime] = {}
        shared = {m: {} for m in modes}
        alone = {}  # (switch, mode or "single" or "matched") -> {seed: run of that switch}
        took = {m: [] for m in modes}  # training seconds of each shared checkpoint
        # Seed-major: an interrupted run leaves complete pairs.
        for seed in range(setting["seeds"][regime]):
            for switch in SWITCHES:
                if switch in MULTI:
                    continue
                # Single-device twins do not depend on the gate mode.
                twin_width = _twin_width(width, switch)
                key = f"{tag}/{regime}_alone_{switch}_single_{seed}"
                rec = cached(key, lambda: run(width, "1x1.0", "shut", seed, setting, data, twin_width),
                             f"{regime} seed {seed} alone {switch}", shown=switch)
                if rec is not None:
                    alone.setdefault((switch, "single"), {})[seed] = rec["result"]["1x1.0"]
            for mode in modes:
                suffix = f"_{C.GATE_RECIPE}" if mode != "shut" else ""
                key = f"{tag}/{regime}_shared_{mode}_{seed}{suffix}"
                rec = cached(key, lambda: run(width, ",".join(SWITCHES), mode, seed, setting, data),
                             f"{regime} seed {seed} shared ({mode})")
                if rec is not None:
                    shared[mode][seed] = rec["result"]
                    took[mode].append(rec["seconds"])
                # The sandwich checkpoint's twins are the learned ones (same keys, run once).
                twin_mode = "learned" if mode == "sandwich" else mode
                for switch in MULTI:
                    key = f"{tag}/{regime}_alone_{switch}_{twin_mode}_{seed}{suffix}"
                    rec = cached(key, lambda: run(width, switch, twin_mode, seed, setting, data),
                                 f"{regime} seed {seed} alone {switch} ({twin_mode})")
                    if rec is not None:
                        alone.setdefault((switch, twin_mode), {})[seed] = rec["result"][switch]
                if mode != "sandwich":
                    continue
                for switch in SWITCHES:
                    # A twin with the updates the rule gives this switch.
                    epochs = max(1, round(shares[switch] * setting["epochs"]))
                    if epochs == setting["epochs"]:
                        continue
                    single = switch not in MULTI
                    twin_width = _twin_width(width, switch)
                    key = f"{tag}/{regime}_alone_{switch}_{'single' if single else twin_mode}_e{epochs}_{seed}{suffix}"
                    rec = cached(key, lambda: run(width, "1x1.0" if single else switch, twin_mode, seed, setting,
                                                  data, twin_width, epochs=epochs),
                                 f"{regime} seed {seed} alone {switch} ({epochs} epochs)", shown=switch)
                    if rec is not None:
                        alone.setdefault((switch, "matched"), {})[seed] = rec["result"]["1x1.0" if single else switch]
        for mode in modes:
            if not shared[mode]:
                continue  # --cached-only: not stored yet
            seconds.setdefault(regime, {})[f"shared_{mode}"] = sum(took[mode]) / len(took[mode])
            for switch in SWITCHES:
                if switch not in MULTI and mode == "shut" and "learned" in modes:
                    continue  # single-device rows come from the learned checkpoint
                twin_mode = "learned" if mode == "sandwich" else mode
                twin = alone.get((switch, "single" if switch not in MULTI else twin_mode))
                if twin and any(s in twin for s in shared[mode]):
                    row_key = switch if switch not in MULTI and mode != "sandwich" else f"{switch}_{mode}"
                    result[regime][row_key] = _row(shared[mode], twin, switch, f"shared_{mode}")
                matched = alone.get((switch, "matched")) if mode == "sandwich" else None
                if matched and any(s in matched for s in shared[mode]):
                    result[regime][f"{switch}_sandwich_matched"] = _row(shared[mode], matched, switch,
                                                                        "shared_sandwich")
        if "shut" in modes and shared["shut"] and "learned" in modes and shared["learned"]:
            # All-shut 2x0.5 against 1x0.7 of the learned checkpoint, same seeds.
            seeds = [s for s in sorted(shared["shut"]) if s in shared["learned"]]
            result[regime]["shut_2x0.5_minus_1x0.7"] = C.paired_difference(
                [shared["shut"][s]["2x0.5"]["top1"] for s in seeds],
                [shared["learned"][s]["1x0.7"]["top1"] for s in seeds])
    if args.worker:
        return  # one of --workers: the parent writes the results
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
        switch_rows = {k: r for k, r in rows.items() if k != "shut_2x0.5_minus_1x0.7" and "sandwich" not in k}
        if switch_rows:
            verdict[f"{regime}.shared_minus_alone_above_-0.5pt"] = _above(switch_rows.values())
        sandwich_rows = [r for k, r in rows.items() if k.endswith("_sandwich")]
        if sandwich_rows:
            verdict[f"{regime}.sandwich_minus_alone_above_-0.5pt"] = _above(sandwich_rows)
        gap = rows.get("shut_2x0.5_minus_1x0.7")
        if gap is not None:
            verdict[f"{regime}.shut_2x0.5_at_most_1pt_below_1x0.7"] = gap["diff_mean"] >= -0.01
        if "2x0.5_shut" in rows and "1x0.5" in rows:
            verdict[f"{regime}.2x0.5_above_1x0.5"] = rows["2x0.5_shut"]["top1_shared"] > rows["1x0.5"]["top1_shared"]
    payload = {**result, "setting": setting, "met": verdict, "train_seconds": seconds,
               "sandwich_update_shares": shares if "sandwich" in modes else None}
    C.write_json("switches.json", payload)
    lines = ["# One checkpoint, many switches (Fashion-MNIST, ResNet-20)", "", f"Setting: {setting['description']}", "",
             "Paired design: per seed, the shared checkpoint and each twin start from the same kernels and see the "
             "same batches; shared - alone per seed, with a 95 % t interval (pt = percentage points of top-1).", ""]
    for regime, rows in result.items():
        lines += [f"## {regime} (width {REGIMES[regime]})", "",
                  "| switch | checkpoint | top-1 shared % | top-1 alone % | shared - alone pt | 95 % interval pt | "
                  "seeds | traffic |",
                  "|---|---|---|---|---|---|---|---|"]
        for key, r in rows.items():
            if key == "shut_2x0.5_minus_1x0.7":
                continue
            p = r["paired"]
            ci = "-" if p["ci95"] is None else f"[{100 * p['ci95'][0]:+.2f}, {100 * p['ci95'][1]:+.2f}]"
            traffic = "-" if r["comm_ratio"] is None else f"{r['comm_ratio']:.3f}"
            lines.append(f"| {key} | {r['checkpoint']} | {100 * r['top1_shared']:.2f} | {100 * r['top1_alone']:.2f} | "
                         f"{100 * p['diff_mean']:+.2f} | {ci} | {len(r['seeds'])} | {traffic} |")
        gap = rows.get("shut_2x0.5_minus_1x0.7")
        if gap is not None:
            lines += ["", f"All-shut 2x0.5 minus 1x0.7 (shared checkpoints): {100 * gap['diff_mean']:+.2f} pt."]
        if seconds.get(regime):
            lines += ["", "Training time per shared checkpoint (mean over seeds, this machine): " + ", ".join(
                f"{k} {v:.0f} s" for k, v in seconds[regime].items()) + "."]
        lines.append("")
    if "sandwich" in modes:
        lines += ["Sandwich rows: `<switch>_sandwich` is the sandwich checkpoint minus the twin trained for all "
                  "epochs; `<switch>_sandwich_matched` minus a twin given the same number of updates (share of "
                  "steps: " + ", ".join(f"{k} {v:.2f}" for k, v in shares.items()) + ").", ""]
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
