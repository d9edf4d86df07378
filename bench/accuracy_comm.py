"""Top-1 against traffic on Fashion-MNIST: what learning the communication buys.

A paired design: for one seed every variant starts from the same kernels
(``_common.paired_init``), sees the same batches in the same order with the
same augmentation (``_common.batches``), and the random-gate variants draw
the same random logits; each variant is reported as its per-seed difference
to a baseline (mean and 95 % t interval), measured on the whole 10,000-image
test set. Seed-to-seed noise that all variants share cancels.

CIFAR-style ResNet-20, three regimes:
  narrow: 4 devices (switch 4x0.25), width 0.25 (4-8-16 channels)
  mid:    2 devices (switch 2x0.5), width 0.5 (8-16-32 channels)
  full:   2 devices (switch 2x0.5), width 1.0 (16-32-64 channels)
Variants (each trained alone with the same recipe and epochs):
  unsplit      one device, full width (switch 1x1.0)
  dense_tp     every gate open (dense tensor parallelism)
  independent  every gate shut (ParaDiS branches)
  random_B     gates fixed at random from the start, exactly at budget B
               (B = 0.2, 0.1: the arbitrary subset a learned one must beat)
  random_annealed_0.2
               the disco_0.2_late schedule with gate logits drawn at random and
               never trained: the budget closes gates in a fixed random order
  disco_B      learned gates with the library's default ranking (GateRanking():
               the logits, the cut frozen once the budget is reached), budget B
               reached after a tenth of the steps, then finalize_gates and one
               epoch of fine-tuning (B = 0.5, 0.2, 0.1)
  disco_0.2_<recipe>
               another gate ranking and schedule (RECIPES below: what the budget
               cut ranks gates by, when it may change them, and how long the
               budget anneals); ``late`` is the default before g2 (the cut
               redone at every step, annealed over half the run)
  disco_link   a latency-aware budget instead of a byte ratio:
               Link(mbps=200, latency_ms=2) at 0.2 of each device's dense time
               (docs/link_budget.md); its comm_ratio is in bytes
Metrics: top1 (mean over seeds, with spread), comm_ratio, flops_per_device_ratio,
params_per_device_ratio (to the unsplit model), gap_recovered =
(top1 - independent) / (unsplit - independent), seconds per run; per regime
``paired.<variant>`` (against random_0.2 for the learned and annealed-random
variants at 0.2, against random_0.1 for disco_0.1 when random_0.1 was
measured, against unsplit otherwise), ``paired_unsplit.<variant>`` and, for
every other ranking, ``paired_default.disco_0.2_<recipe>`` (against the
library's default, disco_0.2): diff_mean and ci95 in top-1 fractions
(0.01 = 1 pt).

Presets: ``--preset gpu`` (60k/10k images, 12 epochs, 5 seeds; run it with
KERAS_BACKEND=jax on a GPU); ``--preset cpu`` is the setting for this 2-core
machine in which every ranking was tried (4 epochs, Adam 0.01);
``--preset cpu_long`` (12 epochs, Adam 0.001, 20 seeds unless --seeds says) is the
instrument that separates unsplit from independent branches by more than 3x
the paired half-width in both regimes (narrow 7.2x at 13 seeds, mid 5.4x at
26, its final reading), run on the contrasts the targets read. ``--workers N``
trains N runs at once, one per core: on this 2-core machine two single-core
runs took 370-440 s where one run on both cores took about 200 s (the same
throughput, within 5 %); on a machine with more cores it is the way to use
them. Per-run records are kept in bench/records (committed), so an
interrupted benchmark resumes, also in a later session on a fresh machine.
``--variants V1,V2 --merge`` runs only those variants and keeps every other
row of the stored results file (refused unless that file was measured in the
same setting, recipes and backend).

Writes docs/results/accuracy_comm.json, .md and .png (preset cpu_long:
docs/results/accuracy_comm_cpu_long.json, .md and .png).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

REGIMES = {"narrow": {"devices": 4, "width": 0.25}, "mid": {"devices": 2, "width": 0.5},
           "full": {"devices": 2, "width": 1.0}}
# Gate rankings tried at budget 0.2 (shared with bench/tasks.py).
RECIPES = C.GATE_RECIPES
VARIANTS = (("unsplit", "dense_tp", "independent", "random_0.2", "random_0.1", "random_annealed_0.2", "disco_0.5",
             "disco_0.2", "disco_0.1") + tuple(f"disco_0.2_{r}" for r in RECIPES) + ("disco_link",))
# What `--variants` runs unless told otherwise: the rows the targets read and
# every ranking tried.
DEFAULT_VARIANTS = ("unsplit", "independent", "random_0.2", "random_annealed_0.2", "disco_0.2", "disco_0.1") + tuple(
    f"disco_0.2_{r}" for r in RECIPES)
# disco_link's budget: paradis_tf.training.Link(**LINK_BUDGET).
LINK_BUDGET = {"mbps": 200.0, "latency_ms": 2.0}
PRESETS = {
    "gpu": {"train_limit": None, "test_limit": None, "epochs": 12, "seeds": 5, "batch_size": 128, "lr": 1e-3},
    "cpu": {"train_limit": 20000, "test_limit": None, "epochs": 4, "seeds": 6, "batch_size": 128, "lr": 1e-2},
    # The instrument on this CPU (issue 14, item 1): 3x the epochs at a tenth
    # of the rate. At 5 seeds unsplit and independent branches differ by 5.2
    # pt, 4.4x the paired half-width (preset cpu: 2.4 pt, 1.9x), so the seeds
    # go to the contrasts the targets read: run it with --variants unsplit,independent,random_0.2,
    # disco_0.2,random_0.1,disco_0.1 and --workers 2. Its results go to their own files
    # (accuracy_comm_cpu_long.*), beside preset cpu's ranking sweep. The mid
    # regime: --variants unsplit,independent,random_0.2,disco_0.2 --merge.
    "cpu_long": {"train_limit": 20000, "test_limit": None, "epochs": 12, "seeds": 20, "batch_size": 128,
                 "lr": 1e-3},
}
# Item 1's test of one regime (see _separates).
_SEPARATES = "unsplit - independent >= 3x the paired half-width, every half-width <= 0.3 pt"
TARGETS = {
    "narrow.disco_0.2_minus_random_0.2": "paired 95 % interval above 0",
    "narrow.disco_0.1.gap_recovered": ">= 0.5",
    "mid.disco_0.2_minus_random_0.2": "paired 95 % interval above -0.2 pt",
    "mid.disco_0.2_minus_unsplit": "paired 95 % interval above -0.2 pt (within 0.2 pt of unsplit)",
    "mid.flops_and_params_per_device_ratio": "<= 0.6 at 2 devices (disco_0.2)",
    # Item 1 asks for one CPU setting that tells variants apart: each regime's
    # own verdict says which one does; "instrument" asks it of every regime.
    "narrow.instrument": _SEPARATES,
    "mid.instrument": _SEPARATES,
    "instrument": "per regime: " + _SEPARATES,
}


def results_stem(preset):
    """The results files a preset writes: preset cpu_long its own, the others
    (cpu, and gpu when a GPU is lent) accuracy_comm.*."""
    return "accuracy_comm_cpu_long" if preset == "cpu_long" else "accuracy_comm"


def baseline_of(variant, measured=()):
    """The variant a paired difference is taken against: the random subset
    at the same budget for learned gates (disco_0.1's only where random_0.1
    was ``measured``), else unsplit."""
    if variant.startswith(("disco_0.2", "random_annealed_0.2")):
        return "random_0.2"
    if variant == "disco_0.1" and "random_0.1" in measured:
        return "random_0.1"
    return None if variant == "unsplit" else "unsplit"


def run_variant(regime, variant, seed, setting, data):
    import keras
    from paradis_tf.models import CifarResNet

    d, width = REGIMES[regime]["devices"], REGIMES[regime]["width"]
    switch = "1x1.0" if variant == "unsplit" else f"{d}x{1 / d}"
    gates = {"dense_tp": "open", "independent": "shut"}.get(variant, "learned")

    def build(switch, gates):
        return CifarResNet(depth=20, width=width, num_classes=10, input_shape=(28, 28, 1), switches=switch,
                           gates=gates)

    # The paired start: kernels drawn once per seed (the unsplit model's),
    # copied into whichever variant this is.
    keras.utils.set_random_seed(seed)
    reference = build("1x1.0", "learned")
    keras.utils.set_random_seed(seed)
    model = build(switch, gates)
    C.paired_init(model, reference)
    kw = {}
    if variant == "disco_link":
        from paradis_tf.training import Link

        kw = {"budget": Link(**LINK_BUDGET), "finalize": True, "finetune_epochs": 1}
    elif variant.startswith(("disco_", "random_annealed_")):
        if variant.startswith("random_annealed_"):
            budget, recipe = variant.rsplit("_", 1)[1], ""
        else:  # disco_<budget>[_<recipe>]
            budget, _, recipe = variant[len("disco_"):].partition("_")
        kw = {"budget": float(budget), "finalize": True, "finetune_epochs": 1,
              "random_ranking": variant.startswith("random_annealed_")}
        if variant.startswith("random_annealed_"):
            recipe = "late"  # the schedule it was measured with (g1), with random logits
        if recipe:
            from paradis_tf.training import GateRanking

            ranking, kw["anneal_fraction"] = C.gate_recipe(recipe)
            kw["gate_ranking"] = GateRanking(**ranking)
    elif variant.startswith("random_"):
        kw = {"pin_random_budget": float(variant.split("_")[1])}
    result = C.train_and_evaluate(model, data, setting["epochs"], setting["batch_size"], setting["lr"], seed, **kw)
    return result[model.switches.names[0]]


def summarize(records):
    """records: {regime: {variant: {seed: run}}} -> {regime: {"variants", "paired",
    "paired_unsplit", "paired_default", "instrument"}}."""
    out = {}
    for regime, variants in records.items():
        rows = {}
        for variant, runs in variants.items():
            seeds = sorted(runs)
            top1, spread = C.mean_spread([runs[s]["top1"] for s in seeds])
            first = runs[seeds[0]]
            rows[variant] = {
                "top1": top1,
                "top1_spread": spread,
                "top1_seeds": [runs[s]["top1"] for s in seeds],
                "seeds": seeds,
                "seconds": C.mean_spread([runs[s].get("seconds") for s in seeds])[0],
                # [seconds, cores] per seed: the regime's wall-time line is made
                # from the rows, so rows merged from a stored file count too.
                "wall": [[runs[s].get("seconds"), runs[s].get("cores")] for s in seeds],
                "comm_ratio": C.mean_spread([runs[s]["comm_ratio"] for s in seeds])[0]
                if first["comm_ratio"] is not None else 0.0,
                "flops_per_device_ratio": first["flops_per_device_ratio"],
                "params_per_device_ratio": first["params_per_device_ratio"],
            }
        out[regime] = {"variants": rows}
    return with_paired(out)


def _paired(rows, variant, baseline):
    """The paired difference of ``variant`` to ``baseline`` over their common seeds."""
    a, b = rows[variant], rows[baseline]
    common = [s for s in a["seeds"] if s in b["seeds"]]
    if not common:
        return None
    pick = lambda row: [row["top1_seeds"][row["seeds"].index(s)] for s in common]  # noqa: E731
    return {"baseline": baseline, "n": len(common), **C.paired_difference(pick(a), pick(b))}


def with_paired(summary):
    """Sets each regime's gap_recovered, paired differences, the instrument
    check and the wall time per run (from every row's runs, merged ones too)."""
    for regime in summary.values():
        rows = regime["variants"]
        regime["wall_time"] = C.wall_by_cores([(seconds, cores) for row in rows.values()
                                               for seconds, cores in row.get("wall", []) if seconds is not None])
        u = rows.get("unsplit", {}).get("top1")
        i = rows.get("independent", {}).get("top1")
        for row in rows.values():
            row["gap_recovered"] = None if u is None or i is None or u == i else (row["top1"] - i) / (u - i)
        regime["paired"], regime["paired_unsplit"], regime["paired_default"] = {}, {}, {}
        for variant in rows:
            base = baseline_of(variant, rows)
            if base in rows:
                regime["paired"][variant] = _paired(rows, variant, base)
            if variant != "unsplit" and "unsplit" in rows:
                regime["paired_unsplit"][variant] = _paired(rows, variant, "unsplit")
            if variant.startswith("disco_0.2_") and "disco_0.2" in rows:
                # Another ranking against the library's default one: what the default is chosen over.
                regime["paired_default"][variant] = _paired(rows, variant, "disco_0.2")
        gap = regime["paired_unsplit"].get("independent")
        contrasts = [p for table in ("paired", "paired_unsplit") for p in regime[table].values()
                     if p and p["half_width"] is not None]
        widths = [p["half_width"] for p in contrasts]
        # Seeds a 0.3 pt half-width would take at the spread measured: the
        # target's price, for the widest contrast and for the gap itself.
        needs = [C.seeds_for_half_width(p["diffs"], 0.003) for p in contrasts]
        regime["instrument"] = None if not gap or gap["half_width"] is None else {
            # independent - unsplit is negative: the gap is its opposite.
            "unsplit_minus_independent": -gap["diff_mean"],
            "gap_half_width": gap["half_width"],
            "gap_in_half_widths": -gap["diff_mean"] / gap["half_width"] if gap["half_width"] else None,
            "max_half_width": max(widths) if widths else None,
            "gap_seeds_for_0.3pt": C.seeds_for_half_width(gap["diffs"], 0.003),
            "max_seeds_for_0.3pt": max(needs) if needs else None,
        }
    return summary


def merge_stored(summary, setting):
    """--merge: rows this run did not measure, from the stored results file,
    when that file was measured in the same setting, recipes and backend."""
    stored = C.stored_results(results_stem(setting["preset"]) + ".json", setting)
    for regime in REGIMES:
        for variant, row in stored.get(regime, {}).get("variants", {}).items():
            summary.setdefault(regime, {"variants": {}})["variants"].setdefault(variant, row)
        if regime in stored["setting"]["seeds"]:
            setting["seeds"].setdefault(regime, stored["setting"]["seeds"][regime])
    setting["description"] = C.describe(setting)
    # Rows in the regime's variant order, wherever they came from.
    for regime in summary.values():
        regime["variants"] = {v: regime["variants"][v] for v in VARIANTS if v in regime["variants"]}
    summary = {r: summary[r] for r in REGIMES if r in summary}
    return with_paired(summary)


def _above(paired, bound):
    return bool(paired and paired["ci95"] is not None and paired["ci95"][0] > bound)


def verdicts(summary):
    v = {}
    n, m = summary.get("narrow"), summary.get("mid")
    if n and "disco_0.2" in n["paired"]:
        v["narrow.disco_0.2_minus_random_0.2"] = _above(n["paired"]["disco_0.2"], 0.0)
    if n and "disco_0.1" in n["variants"] and n["variants"]["disco_0.1"]["gap_recovered"] is not None:
        v["narrow.disco_0.1.gap_recovered"] = bool(n["variants"]["disco_0.1"]["gap_recovered"] >= 0.5)
    if m and "disco_0.2" in m["paired"]:
        v["mid.disco_0.2_minus_random_0.2"] = _above(m["paired"]["disco_0.2"], -0.002)
    if m and "disco_0.2" in m["paired_unsplit"]:
        v["mid.disco_0.2_minus_unsplit"] = _above(m["paired_unsplit"]["disco_0.2"], -0.002)
    if m and "disco_0.2" in m["variants"]:
        row = m["variants"]["disco_0.2"]
        v["mid.flops_and_params_per_device_ratio"] = bool(
            row["flops_per_device_ratio"] <= 0.6 and row["params_per_device_ratio"] <= 0.6)
    for name, regime in summary.items():
        if regime["instrument"]:
            v[f"{name}.instrument"] = _separates(regime["instrument"])
    checks = [r["instrument"] for r in summary.values()]
    if checks and all(checks):
        v["instrument"] = all(_separates(c) for c in checks)
    return v


def _separates(instrument):
    """Item 1's test of a regime: the unsplit-independent gap is at least 3x
    its paired half-width and no contrast's half-width exceeds 0.3 pt."""
    return bool(instrument["gap_in_half_widths"] is not None and instrument["gap_in_half_widths"] >= 3
                and instrument["max_half_width"] is not None and instrument["max_half_width"] <= 0.003)


def _pt(x, signed=False):
    return "-" if x is None else (f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}")


def _interval(p):
    if not p:
        return "-", "-"
    ci = "-" if p["ci95"] is None else f"[{100 * p['ci95'][0]:+.2f}, {100 * p['ci95'][1]:+.2f}]"
    return _pt(p["diff_mean"], signed=True), ci


def _above_below(paired):
    """"8 / 4": on how many seeds the variant is above and below its baseline
    (ties in neither); "-" for no pairing or a stored file that predates the counts."""
    if not paired or "above" not in paired:
        return "-"
    return f"{paired['above']} / {paired['below']}"


def markdown(summary, setting, verdict):
    lines = ["# Accuracy against communication (Fashion-MNIST, ResNet-20)", "",
             f"Setting: {setting['description']}", "",
             "Paired design: per seed, every variant starts from the same kernels and sees the same batches; "
             "differences are per seed, with a 95 % t interval (pt = percentage points of top-1).", ""]
    for name, regime in summary.items():
        r = REGIMES[name]
        lines += [f"## {name}: {r['devices']} devices, width {r['width']}", "",
                  "| variant | top-1 % (mean) | spread pt | seeds | paired diff pt | 95 % interval pt | vs | "
                  "seeds above / below it | "
                  "diff to unsplit pt | 95 % interval pt | diff to disco_0.2 pt | 95 % interval pt | comm ratio | "
                  "FLOPs/device | params/device | gap recovered | s/run |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for variant, row in regime["variants"].items():
            p = regime["paired"].get(variant)
            d, ci = _interval(p)
            du, ciu = _interval(regime["paired_unsplit"].get(variant))
            dd, cid = _interval(regime.get("paired_default", {}).get(variant))
            gap = "-" if row["gap_recovered"] is None else f"{row['gap_recovered']:.2f}"
            secs = "-" if row.get("seconds") is None else f"{row['seconds']:.0f}"
            lines.append(
                f"| {variant} | {100 * row['top1']:.2f} | {100 * (row['top1_spread'] or 0):.2f} | "
                f"{len(row['top1_seeds'])} | {d} | {ci} | {p['baseline'] if p else '-'} | "
                f"{_above_below(p)} | "
                f"{du} | {ciu} | {dd} | {cid} | "
                f"{row['comm_ratio']:.3f} | {row['flops_per_device_ratio']:.3f} | "
                f"{row['params_per_device_ratio']:.3f} | {gap} | {secs} |")
        inst = regime.get("instrument")
        if inst:
            lines += ["", f"Instrument: unsplit - independent = {100 * inst['unsplit_minus_independent']:.2f} pt, "
                      f"{'-' if inst['gap_in_half_widths'] is None else format(inst['gap_in_half_widths'], '.1f')}x "
                      "its paired half-width "
                      f"({100 * inst['gap_half_width']:.2f} pt); "
                      f"widest half-width in this regime {100 * (inst['max_half_width'] or 0):.2f} pt. "
                      f"At the per-seed spread measured, a 0.3 pt half-width needs "
                      f"{inst.get('gap_seeds_for_0.3pt')} seeds for that gap and "
                      f"{inst.get('max_seeds_for_0.3pt')} for the widest contrast."]
        if regime.get("wall_time"):
            lines += ["", f"Wall time per run on this machine, by the cores a run could use: {regime['wall_time']}. "
                      "The s/run column averages a variant's runs whatever their cores."]
        lines.append("")
    lines += ["## Targets", "", "| target | wanted | met |", "|---|---|---|"]
    for key, wanted in TARGETS.items():
        met = verdict.get(key)
        lines.append(f"| {key} | {wanted} | {'-' if met is None else ('yes' if met else 'no')} |")
    lines += ["", "Gate rankings tried (`paradis_tf.training.GateRanking` arguments): "
              + "; ".join(f"`{k}`: {v}" for k, v in RECIPES.items()), "", f"Command: `{setting['command']}`"]
    if setting.get("merged_from"):
        merged = ", ".join(f"`{c}`" for c in setting["merged_from"])
        lines.append(f"Rows it did not run come from earlier runs: {merged}")
    lines.append("")
    return "\n".join(lines)


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 4.2), squeeze=False)
    for ax, (name, regime) in zip(axes[0], summary.items()):
        for variant, row in regime["variants"].items():
            if variant == "unsplit":  # no traffic at all: a reference line
                ax.axhline(100 * row["top1"], color="gray", linestyle="--", label="unsplit")
                continue
            p = regime["paired_unsplit"].get(variant)
            # The error bar is the paired interval to unsplit, drawn around the mean.
            err = 100 * p["half_width"] if p and p["half_width"] is not None else 0
            marker = "o" if variant.startswith("disco") else "s"
            # One colour per variant in every panel, whichever rows a regime has.
            ax.errorbar(row["comm_ratio"], 100 * row["top1"], yerr=err, fmt=marker, capsize=3, label=variant,
                        color=f"C{VARIANTS.index(variant) % 10}")
        ax.set_xlabel("traffic ratio (bytes / dense tensor parallelism)")
        ax.set_ylabel("top-1 % (bars: paired 95 % interval to unsplit)")
        r = REGIMES[name]
        ax.set_title(f"{name}: {r['devices']} devices, width {r['width']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, from {list(VARIANTS)}")
    parser.add_argument("--merge", action="store_true",
                        help="keep the stored results of the variants this run does not measure "
                             "(same setting, recipes and backend only)")
    args, setting, tag = C.parse_setting(parser, PRESETS, "accuracy_comm.py", regimes="narrow,mid")
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    bad = [r for r in args.regimes.split(",") if r not in REGIMES]
    if bad:
        raise SystemExit(f"--regimes: unknown {bad}; choose from {list(REGIMES)}")
    data = None if args.cached_only else C.load_data(setting["train_limit"], setting["test_limit"])
    records = {}
    # Seed-major order: an interrupted run leaves every variant with the same
    # seeds, so the paired table is complete at any stop.
    for regime in args.regimes.split(","):
        records[regime] = {}
        for seed in range(setting["seeds"][regime]):
            for variant in args.variants.split(","):
                key = f"{tag}/{regime}_{variant}_{seed}"
                if variant.startswith(("disco_", "random_annealed_")):  # the learned-gate schedule
                    key += f"_{C.gate_key(variant)}"
                rec = C.cached_run("accuracy_comm", key, lambda: run_variant(regime, variant, seed, setting, data),
                                   cached_only=args.cached_only)
                if rec is None:
                    continue
                records[regime].setdefault(variant, {})[seed] = dict(rec["result"], seconds=rec["seconds"],
                                                                     cores=rec.get("cores"))
                print(f"[{regime:>6}] seed {seed} {variant:<22}: top-1 {100 * rec['result']['top1']:.2f}%  "
                      f"traffic {rec['result']['comm_ratio'] if rec['result']['comm_ratio'] is not None else 0:.3f}  "
                      f"({rec['seconds']:.0f} s)", flush=True)
        records[regime] = {v: records[regime][v] for v in VARIANTS if v in records[regime]}
    if args.worker:
        return  # one of --workers: the parent writes the results
    records = {r: v for r, v in records.items() if v}
    summary = summarize(records)
    if args.merge:
        summary = merge_stored(summary, setting)
    verdict = verdicts(summary)
    payload = {**summary, "setting": setting, "targets": TARGETS, "recipes": RECIPES, "met": verdict}
    stem = results_stem(setting["preset"])
    C.write_json(stem + ".json", payload)
    md = markdown(summary, setting, verdict)
    C.write_text(stem + ".md", md)
    plot(summary, os.path.join(C.RESULTS, stem + ".png"))
    print(md)


if __name__ == "__main__":
    main()
