"""Top-1 against traffic on Fashion-MNIST: what learning the communication buys.

CIFAR-style ResNet-20, two regimes:
  full:   2 devices (switch 2x0.5), width 1.0 (16-32-64 channels)
  narrow: 4 devices (switch 4x0.25), width 0.25 (4-8-16 channels)
Variants (each trained alone with the same recipe and epochs):
  unsplit      one device, full width (switch 1x1.0)
  dense_tp     every gate open (dense tensor parallelism)
  independent  every gate shut (ParaDiS branches)
  random_0.2   gates fixed at random from the start, exactly at budget 0.2
  random_annealed_0.2
               the disco_0.2 schedule with gate logits drawn at random and
               never trained: the budget closes gates in a fixed random order
               (what the schedule costs or gives, apart from learning the
               selection)
  disco_B      learned gates, budget B annealed over the first half, then
               finalize_gates and one epoch of fine-tuning (B = 0.5, 0.2, 0.1)
  disco_link   the disco_B recipe with a latency-aware budget instead of a byte
               ratio: Link(mbps=200, latency_ms=2), each device's modelled
               time (latency of every exchange point + bytes / bandwidth) at
               0.2 of its dense tensor-parallel time (docs/link_budget.md);
               its comm_ratio is in bytes, like the other rows
Metrics: top1 (mean over seeds, with spread), comm_ratio, flops_per_device_ratio,
params_per_device_ratio (to the unsplit model), gap_recovered =
(top1 - independent) / (unsplit - independent).

Presets: ``--preset gpu`` is the issue's setting (60k/10k images, 12 epochs,
3 seeds; run it with KERAS_BACKEND=jax on a GPU); ``--preset cpu`` is a reduced
setting for this 2-core machine. Per-run records are kept in bench/.runs, so
an interrupted benchmark resumes. ``--variants V1,V2 --merge`` runs only those
variants and keeps every other row of the stored results file (refused unless
that file was measured in the same setting, recipes and backend).

Writes docs/results/accuracy_comm.json, .md and .png.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

REGIMES = {"full": {"devices": 2, "width": 1.0}, "narrow": {"devices": 4, "width": 0.25}}
VARIANTS = ("unsplit", "dense_tp", "independent", "random_0.2", "random_annealed_0.2", "disco_0.5", "disco_0.2",
            "disco_0.1", "disco_link")
# disco_link's budget: paradis_tf.training.Link(**LINK_BUDGET).
LINK_BUDGET = {"mbps": 200.0, "latency_ms": 2.0}
PRESETS = {
    "gpu": {"train_limit": None, "test_limit": None, "epochs": 12, "seeds": 3, "batch_size": 128, "lr": 1e-3},
    "cpu": {"train_limit": 20000, "test_limit": 5000, "epochs": 4, "seeds": 2, "batch_size": 128, "lr": 1e-2},
}
TARGETS = {
    "narrow.disco_0.2.gap_recovered": ">= 0.75 and beats random_0.2 by more than the seed spread",
    "narrow.disco_0.1.gap_recovered": ">= 0.5",
    "full.disco_0.2.top1": "within 0.2 pt of unsplit",
    "full.flops_and_params_per_device_ratio": "<= 0.6 at 2 devices (disco_0.2)",
}


def run_variant(regime, variant, seed, setting, data):
    import keras
    from paradis_tf.models import CifarResNet

    d = REGIMES[regime]["devices"]
    switch = "1x1.0" if variant == "unsplit" else f"{d}x1/{d}" if d == 3 else f"{d}x{1 / d}"
    gates = {"dense_tp": "open", "independent": "shut"}.get(variant, "learned")
    keras.utils.set_random_seed(seed)
    model = CifarResNet(depth=20, width=REGIMES[regime]["width"], num_classes=10, input_shape=(28, 28, 1),
                        switches=switch, gates=gates)
    kw = {}
    if variant == "disco_link":
        from paradis_tf.training import Link

        kw = {"budget": Link(**LINK_BUDGET), "finalize": True, "finetune_epochs": 1}
    elif variant.startswith(("disco_", "random_annealed_")):
        kw = {"budget": float(variant.split("_")[-1]), "finalize": True, "finetune_epochs": 1,
              "random_ranking": variant.startswith("random_annealed_")}
    elif variant.startswith("random_"):
        kw = {"pin_random_budget": float(variant.split("_")[1])}
    result = C.train_and_evaluate(model, data, setting["epochs"], setting["batch_size"], setting["lr"], seed, **kw)
    return result[model.switches.names[0]]


def summarize(records):
    out = {}
    for regime, variants in records.items():
        out[regime] = {}
        for variant, runs in variants.items():
            top1, spread = C.mean_spread([r["top1"] for r in runs])
            first = runs[0]
            out[regime][variant] = {
                "top1": top1,
                "top1_spread": spread,
                "top1_seeds": [r["top1"] for r in runs],
                "comm_ratio": C.mean_spread([r["comm_ratio"] for r in runs])[0] if first["comm_ratio"] is not None else 0.0,
                "flops_per_device_ratio": first["flops_per_device_ratio"],
                "params_per_device_ratio": first["params_per_device_ratio"],
            }
    return with_gaps(out)


def with_gaps(summary):
    """Sets each row's gap_recovered from its regime's unsplit and independent rows."""
    for rows in summary.values():
        u = rows.get("unsplit", {}).get("top1")
        i = rows.get("independent", {}).get("top1")
        for row in rows.values():
            row["gap_recovered"] = None if u is None or i is None or u == i else (row["top1"] - i) / (u - i)
    return summary


def merge_stored(summary, setting):
    """--merge: rows this run did not measure, from the stored results file,
    when that file was measured in the same setting, recipes and backend."""
    stored = C.stored_results("accuracy_comm.json", setting)
    for regime in REGIMES:
        for variant, row in stored.get(regime, {}).items():
            summary.setdefault(regime, {}).setdefault(variant, row)
        if regime in stored["setting"]["seeds"]:
            setting["seeds"].setdefault(regime, stored["setting"]["seeds"][regime])
    setting["description"] = C.describe(setting)
    # Rows in the regime's variant order, wherever they came from.
    for regime, rows in summary.items():
        summary[regime] = {v: rows[v] for v in VARIANTS if v in rows}
    return with_gaps(summary)


def verdicts(summary):
    v = {}
    n, f = summary.get("narrow", {}), summary.get("full", {})
    if "disco_0.2" in n and "random_0.2" in n:
        d, r = n["disco_0.2"], n["random_0.2"]
        spread = max(d["top1_spread"] or 0, r["top1_spread"] or 0)
        v["narrow.disco_0.2.gap_recovered"] = bool(d["gap_recovered"] is not None and d["gap_recovered"] >= 0.75
                                                  and d["top1"] - r["top1"] > spread)
    if "disco_0.1" in n:
        v["narrow.disco_0.1.gap_recovered"] = bool((n["disco_0.1"]["gap_recovered"] or -1) >= 0.5)
    if "disco_0.2" in f and "unsplit" in f:
        v["full.disco_0.2.top1"] = bool(f["unsplit"]["top1"] - f["disco_0.2"]["top1"] <= 0.002)
        v["full.flops_and_params_per_device_ratio"] = bool(
            f["disco_0.2"]["flops_per_device_ratio"] <= 0.6 and f["disco_0.2"]["params_per_device_ratio"] <= 0.6)
    return v


def markdown(summary, setting, verdict):
    lines = ["# Accuracy against communication (Fashion-MNIST, ResNet-20)", "",
             f"Setting: {setting['description']}", ""]
    for regime, rows in summary.items():
        r = REGIMES[regime]
        lines += [f"## {regime}: {r['devices']} devices, width {r['width']}", "",
                  "| variant | top-1 % (mean) | spread pt | seeds | comm ratio | FLOPs/device | params/device | gap recovered |",
                  "|---|---|---|---|---|---|---|---|"]
        for variant, row in rows.items():
            gap = "-" if row["gap_recovered"] is None else f"{row['gap_recovered']:.2f}"
            lines.append(
                f"| {variant} | {100 * row['top1']:.2f} | {100 * (row['top1_spread'] or 0):.2f} | "
                f"{len(row['top1_seeds'])} | {row['comm_ratio']:.3f} | {row['flops_per_device_ratio']:.3f} | "
                f"{row['params_per_device_ratio']:.3f} | {gap} |")
        lines.append("")
    lines += ["## Targets", "", "| target | wanted | met |", "|---|---|---|"]
    for key, wanted in TARGETS.items():
        met = verdict.get(key)
        lines.append(f"| {key} | {wanted} | {'-' if met is None else ('yes' if met else 'no')} |")
    lines += ["", f"Command: `{setting['command']}`"]
    if setting.get("merged_from"):
        lines.append("Rows it did not run come from earlier runs: " + ", ".join(f"`{c}`" for c in setting["merged_from"]))
    lines.append("")
    return "\n".join(lines)


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 4.2), squeeze=False)
    for ax, (regime, rows) in zip(axes[0], summary.items()):
        for variant, row in rows.items():
            if variant == "unsplit":  # no traffic at all: a reference line
                ax.axhline(100 * row["top1"], color="gray", linestyle="--", label="unsplit")
                continue
            marker = "o" if variant.startswith("disco") else "s"
            # One colour per variant in every panel, whichever rows a regime has.
            ax.errorbar(row["comm_ratio"], 100 * row["top1"], yerr=50 * (row["top1_spread"] or 0),
                        fmt=marker, capsize=3, label=variant, color=f"C{VARIANTS.index(variant)}")
        ax.set_xlabel("traffic ratio (bytes / dense tensor parallelism)")
        ax.set_ylabel("top-1 %")
        r = REGIMES[regime]
        ax.set_title(f"{regime}: {r['devices']} devices, width {r['width']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--merge", action="store_true",
                        help="keep the stored results of the variants this run does not measure "
                             "(same setting, recipes and backend only)")
    args, setting, tag = C.parse_setting(parser, PRESETS, "accuracy_comm.py")
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    data = None if args.cached_only else C.load_data(setting["train_limit"], setting["test_limit"])
    records = {}
    for regime in args.regimes.split(","):
        records[regime] = {}
        for variant in args.variants.split(","):
            runs = []
            for seed in range(setting["seeds"][regime]):
                key = f"{tag}/{regime}_{variant}_{seed}"
                if variant.startswith(("disco_", "random_annealed_")):  # the learned-gate schedule
                    key += f"_{C.GATE_RECIPE}"
                rec = C.cached_run("accuracy_comm", key, lambda: run_variant(regime, variant, seed, setting, data),
                                   cached_only=args.cached_only)
                if rec is None:
                    continue
                runs.append(rec["result"])
                print(f"[{regime:>6}] {variant:<12} seed {seed}: top-1 {100 * rec['result']['top1']:.2f}%  "
                      f"traffic {rec['result']['comm_ratio'] if rec['result']['comm_ratio'] is not None else 0:.3f}  "
                      f"({rec['seconds']:.0f} s)", flush=True)
            if runs:
                records[regime][variant] = runs
    summary = summarize(records)
    if args.merge:
        summary = merge_stored(summary, setting)
    verdict = verdicts(summary)
    payload = {**summary, "setting": setting, "targets": TARGETS, "met": verdict}
    C.write_json("accuracy_comm.json", payload)
    md = markdown(summary, setting, verdict)
    C.write_text("accuracy_comm.md", md)
    plot(summary, os.path.join(C.RESULTS, "accuracy_comm.png"))
    print(md)


if __name__ == "__main__":
    main()
