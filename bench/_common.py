"""Shared mechanics of the accuracy benchmarks: data, one training recipe,
evaluation, resumable per-run records, tables and plots.

Runs on the TensorFlow backend (CPU, here) and on the JAX backend without
TensorFlow (GPU machines): data is read with NumPy from the Debian package's
IDX files and fed through a ``keras.utils.PyDataset``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np

# Gate rankings tried at budget 0.2 (paradis_tf.training.GateRanking arguments
# and the fraction of the training steps the budget anneals over): variants
# disco_0.2_<name> of bench/accuracy_comm.py and bench/tasks.py. Each is
# spelled out in full, so a change of the library's defaults leaves their
# stored runs valid (they keep the key NAMED_GATE_RECIPE).
GATE_RECIPES = {
    # The library's default until g2: the current logits, a cut at every step
    # while the budget anneals over half the run and after it.
    "late": {"freeze_after_anneal": False, "anneal_fraction": 0.5},
    "recut50": {"recut_every": 50, "freeze_after_anneal": False, "anneal_fraction": 0.5},
    "hysteresis": {"hysteresis": 0.5, "freeze_after_anneal": False, "anneal_fraction": 0.5},
    "ema": {"score": "ema", "ema_decay": 0.99, "freeze_after_anneal": False, "anneal_fraction": 0.5},
    "freeze": {"freeze_after_anneal": True, "anneal_fraction": 0.5},
    "wnorm": {"score": "weight_norm", "freeze_after_anneal": False, "anneal_fraction": 0.5},
    "count": {"penalty": "count", "freeze_after_anneal": False, "anneal_fraction": 0.5},
    # Decide early, then train long on a fixed structure, as random gates
    # fixed from the first step do, with a ranking: the budget reached after a
    # tenth of the steps, the cut frozen from then on. By logits this is the
    # library's default since g2 (variant disco_0.2); here by kernel norms.
    "early_wnorm": {"score": "weight_norm", "freeze_after_anneal": True, "anneal_fraction": 0.1},
}
# The disco_B variants' schedule: the library's default ranking
# (GateRanking(): frozen once the budget is reached) with the budget reached
# after this fraction of the steps (what the CLI's `paradis train` does too).
DEFAULT_ANNEAL_FRACTION = 0.1


def gate_recipe(name: str) -> tuple:
    """(GateRanking arguments, fraction of the training steps the budget
    anneals over) of ``GATE_RECIPES[name]``."""
    args = dict(GATE_RECIPES[name])
    return args, args.pop("anneal_fraction")


def gate_key(variant: str) -> str:
    """The learned-gate key of a run of ``variant`` (disco_*, random_annealed_*):
    NAMED_GATE_RECIPE for a named ranking (spelled out in full) and for
    random_annealed_B (the g1 schedule with random logits), GATE_RECIPE for
    the library's default ranking."""
    named = variant.startswith("random_annealed_") or variant.count("_") >= 2
    return NAMED_GATE_RECIPE if named else GATE_RECIPE


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, "docs", "results")
# Per-run records (one training run's measured result, a few hundred bytes
# each) are committed: a benchmark that takes several sessions resumes on a
# fresh machine, and `make bench` rebuilds docs/results from them.
RECORDS = os.path.join(ROOT, "bench", "records")
# Scratch that is not committed: saved weights, exported bundles, peer logs.
RUNS = os.path.join(ROOT, "bench", ".runs")
# Bumped when the training recipe changes (records in RECORDS are keyed by
# it). r2: budget-exact gate selection while training. r3: the paired design
# (per seed, every variant starts from the same kernels and sees the same
# batches and augmentation; see paired_init and batches).
RECIPE = "r3"
# Bumped when only the learning of gates changes: it keys the runs with
# learned gates alone, so fixed-gate runs (unsplit, shut, open, random) stay
# valid. g1: the r2 mechanics (dense start, anneal over half the run, pin,
# one epoch of fine-tuning) with GateRanking() cutting at every step. g2: the
# default ranking freezes the cut once the budget is reached, after a tenth
# of the steps (DEFAULT_ANNEAL_FRACTION): accuracy_comm's disco_0.2_early,
# which beat g1's default in the narrow regime (docs/results/accuracy_comm.md).
GATE_RECIPE = "g2"
# The key of the runs of a named ranking (GATE_RECIPES) and of
# random_annealed_B: the g1 mechanics, their ranking spelled out in full.
NAMED_GATE_RECIPE = "g1"


def load_data(train_limit=None, test_limit=None):
    from paradis_tf.data import load_fashion_mnist

    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    if train_limit:
        x, y = x[:train_limit], y[:train_limit]
    if test_limit:
        xt, yt = xt[:test_limit], yt[:test_limit]
    return (x.astype("float32") / 255.0, y), (xt.astype("float32") / 255.0, yt)


def batches(x, y, batch_size, augment, seed):
    """A PyDataset reshuffled (and augmented: flips, 2-pixel shifts) each epoch.

    Stateless per (seed, epoch, batch): the order of epoch e and the
    augmentation of batch i depend on nothing else, so two variants trained
    with the same seed see the same batches in the same order (the paired
    design), however often Keras peeks at a batch or splits ``fit`` in two.
    """
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.order = self._order()

        def _order(self):
            return np.random.default_rng([seed, self.epoch]).permutation(len(x))

        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self._order()

        def __getitem__(self, i):
            idx = self.order[i * batch_size : (i + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            if augment:
                rng = np.random.default_rng([seed, self.epoch, i])
                flip = rng.random(len(idx)) < 0.5
                xb = np.where(flip[:, None, None, None], xb[:, :, ::-1], xb)
                padded = np.pad(xb, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
                dy, dx = rng.integers(0, 5, 2)
                xb = padded[:, dy : dy + x.shape[1], dx : dx + x.shape[2]]
            return xb, yb

    return Batches()


def paired_init(model, reference, leading=False):
    """Copies ``reference``'s kernels (and biases) into ``model``, weight by
    weight path (``stage1_block1_1_conv/kernel``): every variant of a paired
    comparison starts from the same weights, whatever its switch or gate mode
    drew from the seed. Gate variables and batch-norm parameters are left
    alone. With ``leading``, a narrower model takes the leading slice of every
    axis (the first channels: the slimmable sub-network's start). Returns the
    number of weights copied; raises if a weight has no twin that fits."""
    bank = {w.path: w for w in reference.weights}
    copied = 0
    for w in model.weights:
        if not w.path.split("/")[-1].startswith(("kernel", "bias", "depthwise_kernel")):
            continue
        twin = bank.get(w.path)
        shape = tuple(w.shape)
        fits = twin is not None and (tuple(twin.shape) == shape or leading and len(twin.shape) == len(shape)
                                     and all(a <= b for a, b in zip(shape, twin.shape)))
        if not fits:
            raise ValueError(f"paired_init: no weight {w.path} of shape {shape} in the reference model")
        value = np.asarray(twin.numpy() if hasattr(twin, "numpy") else twin.value)
        w.assign(value[tuple(slice(0, n) for n in shape)])  # (..., Cin, Cout) -> leading (..., cin, cout)
        copied += 1
    return copied


# Two-sided 95 % Student t quantiles t(0.975, df) for df = 1..30 (above 30,
# the normal 1.96 is within 2 %).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def paired_difference(values, baseline):
    """Per-seed differences ``values[i] - baseline[i]`` (same seeds, same
    order): their mean, the 95 % t interval of the mean and its half-width,
    and on how many seeds ``values`` is above and below (ties count in neither).
    One seed gives no interval (None)."""
    if len(values) != len(baseline) or not values:
        raise ValueError(f"paired_difference: {len(values)} values against {len(baseline)} baseline values; "
                         "pair the same seeds")
    diffs = [a - b for a, b in zip(values, baseline)]
    mean = statistics.fmean(diffs)
    counts = {"above": sum(d > 0 for d in diffs), "below": sum(d < 0 for d in diffs)}
    if len(diffs) < 2:
        return {"diff_mean": mean, "ci95": None, "half_width": None, "diffs": diffs, **counts}
    df = len(diffs) - 1
    half = _t975(df) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return {"diff_mean": mean, "ci95": [mean - half, mean + half], "half_width": half, "diffs": diffs, **counts}


def _t975(df: int) -> float:
    return _T975[df - 1] if df <= len(_T975) else 1.96


def seeds_for_half_width(diffs, target: float):
    """How many paired seeds a 95 % t interval of half-width <= ``target``
    needs, at the per-seed spread of ``diffs`` (their standard deviation):
    the planning figure for an instrument. None for fewer than 2 diffs."""
    if len(diffs) < 2:
        return None
    if target <= 0:
        raise ValueError(f"seeds_for_half_width: target must be > 0, received {target!r}")
    sd = statistics.stdev(diffs)
    n = 2
    while _t975(n - 1) * sd / math.sqrt(n) > target:
        n += 1
    return n


def randomize_gate_logits(model, seed, trainable):
    """Every gate logit of ``model`` drawn from N(0, 1) with ``seed`` (the
    random-gate variants' draw: the same for every variant of one seed).
    ``trainable=False`` leaves them out of the optimizer; call it before
    ``compile`` builds the optimizer."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        for var in getattr(layer, "_gate_logits", {}).values():
            var.assign(rng.normal(size=var.shape).astype("float32"))
            var.trainable = trainable


def train_and_evaluate(model, data, epochs, batch_size, lr, seed, budget=None, finalize=False,
                       finetune_epochs=0, anneal_fraction=DEFAULT_ANNEAL_FRACTION, pin_random_budget=None,
                       random_ranking=False,
                       gate_ranking=None, sandwich=None, verbose=0):
    """The one recipe every variant follows (Adam, cosine learning rate,
    same epochs in total). Returns per-switch top-1 and the device summary.

    ``random_ranking`` gives the gates random logits that are never trained:
    with a budget, the annealed cut then closes gates in a fixed random order
    (the learned-gate schedule without the learning)."""
    import keras
    from paradis_tf import device_summary
    from paradis_tf.training import BudgetSchedule

    (x, y), (xt, yt) = data
    train = batches(x, y, batch_size, augment=True, seed=seed)
    steps = len(train) * epochs
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps)
    anneal_end = max(1, int(anneal_fraction * len(train) * (epochs - finetune_epochs)))
    jit = "auto" if keras.backend.backend() != "tensorflow" else True
    if pin_random_budget is not None or random_ranking:
        randomize_gate_logits(model, seed, trainable=not random_ranking)
    extra = {} if gate_ranking is None else {"gate_ranking": gate_ranking}
    if sandwich is not None:
        extra["sandwich"] = sandwich
    model.compile(optimizer=keras.optimizers.Adam(schedule), budget=budget,
                  budget_schedule=BudgetSchedule(0, anneal_end), jit_compile=jit, **extra)
    if pin_random_budget is not None:
        # Random fixed selection at the budget: the budget-exact top-k of the
        # random logits, as finalize_gates keeps it.
        model.finalize_gates(budget=pin_random_budget)
    model.fit(train, epochs=epochs - finetune_epochs, verbose=verbose)
    if finalize:
        model.finalize_gates()
    if finetune_epochs:
        model.fit(train, epochs=epochs, initial_epoch=epochs - finetune_epochs, verbose=verbose)
    model.recalibrate_batch_norm(batches(x, y, batch_size, False, seed + 1), num_batches=50, verbose=0)
    results = model.evaluate(xt, yt, batch_size=500, verbose=0, return_dict=True)
    summary = device_summary(model, x.shape[1:], print_fn=None)
    out = {}
    for name in model.switches.names:
        devices = summary["switches"][name]["devices"]
        out[name] = {
            "top1": float(results[f"{name}_accuracy"]),
            "comm_ratio": summary["switches"][name]["comm_ratio"],
            "flops_per_device_ratio": max(d["flops_ratio"] for d in devices),
            "params_per_device_ratio": max(d["params_ratio"] for d in devices),
        }
    return out


def cached_run(bench, key, fn, cached_only=False):
    """Runs ``fn()`` once per key; later invocations reuse the stored record
    in RECORDS (long benchmarks resume where they stopped, also on another
    machine: the records are committed). With ``cached_only`` a run not
    stored yet is not started: returns None."""
    path = record_path(bench, key)
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    if cached_only:
        return None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not _claim(path):
        print(f"[{key}] being run by another process (pid {_claimant(path)}): skipped here", flush=True)
        return None
    try:
        t0 = time.time()
        record = fn()
        backend, device = backend_and_device()
        # cores: the CPU cores this process could use (--workers pins each
        # worker to one), so wall times of 1- and 2-core runs are not mixed up.
        record = {"result": record, "seconds": round(time.time() - t0, 1), "cores": len(os.sched_getaffinity(0)),
                  "date": time.strftime("%Y-%m-%d", time.gmtime()), "backend": f"{backend} on {device}"}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, path)
    finally:
        os.remove(path + ".claim")
    return record


def _claimant(path):
    """The pid in ``path``'s claim file, or None (no file, or unreadable)."""
    try:
        with open(path + ".claim") as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim(path):
    """Claims the run recorded at ``path`` for this process: True, or False
    when a live process already runs it. Two processes of one benchmark (its
    --workers, or two commands started by hand) then split the runs instead of
    doing each twice. A claim left by a dead process (killed, machine
    restarted) is taken over."""
    claim = path + ".claim"
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid = _claimant(path)
            if pid is None:
                # Just created by another process that has not yet written its
                # pid: a live claim.
                time.sleep(0.2)
                pid = _claimant(path)
            if pid is not None and (pid == os.getpid() or _alive(pid)):
                return False
            try:
                os.remove(claim)  # stale: its process is gone
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def record_path(bench, key):
    """Where the record of run ``key`` of ``bench`` is kept."""
    return os.path.join(RECORDS, bench, key + ".json")


def mean_spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (max(values) - min(values))


def wall_by_cores(runs):
    """[(seconds, cores or None)] -> "1 core: 390 s a run (2 runs, 380-400 s);
    2 cores: ...": the measured wall time per run, split by the cores the run
    could use ("cores not recorded": a record that predates that field)."""
    groups = {}
    for seconds, cores in runs:
        groups.setdefault(cores, []).append(seconds)
    parts = []
    for cores in sorted(groups, key=lambda c: (c is None, c or 0)):
        times = groups[cores]
        who = "cores not recorded" if cores is None else f"{cores} core{'s' if cores > 1 else ''}"
        parts.append(f"{who}: {statistics.fmean(times):.0f} s a run ({len(times)} run{'s' if len(times) > 1 else ''}, "
                     f"{min(times):.0f}-{max(times):.0f} s)")
    return "; ".join(parts)


def write_json(name, payload):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, name), "w") as f:
        json.dump(payload, f, indent=2)


# What must match for a stored results file to be merged with a new run's.
MERGE_KEYS = ("train_limit", "test_limit", "epochs", "batch_size", "lr", "recipe", "gate_recipe", "backend")


def stored_results(name, setting):
    """--merge: the stored docs/results/``name``, refused unless it was
    measured in the same setting, recipes and backend as ``setting``. Records the
    commands its rows came from in ``setting["merged_from"]``."""
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        raise SystemExit(f"--merge: there is no stored {path} to merge with; run without --merge")
    with open(path) as f:
        stored = json.load(f)
    differ = [k for k in MERGE_KEYS if stored["setting"].get(k) != setting[k]]
    if differ:
        raise SystemExit(f"--merge: {path} was measured with other {differ} "
                         f"({stored['setting']['description']}); run everything instead of merging")
    earlier = stored["setting"].get("merged_from", []) + [stored["setting"]["command"]]
    setting["merged_from"] = [c for i, c in enumerate(earlier) if c not in earlier[:i] and c != setting["command"]]
    return stored


def write_text(name, text):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, name), "w") as f:
        f.write(text)


def backend_and_device():
    import keras

    backend = keras.backend.backend()
    device = "cpu"
    if backend == "jax":
        import jax

        device = jax.devices()[0].platform
    return backend, device


SETTING_KEYS = ("train_limit", "test_limit", "epochs", "seeds", "batch_size", "lr")


def parse_setting(parser, presets, script, regimes="narrow,full"):
    """Adds --preset and per-key overrides to ``parser``; returns (args, setting, tag)."""
    parser.add_argument("--preset", choices=sorted(presets), default="cpu")
    parser.add_argument("--regimes", default=regimes)
    parser.add_argument("--cached-only", action="store_true",
                        help="report the runs already stored in bench/records; start none")
    parser.add_argument("--workers", type=int, default=1,
                        help="training processes, each pinned to one CPU core, that share the runs "
                             "(a small model's run does not use many cores well); the results are written "
                             "when all are done")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for key in SETTING_KEYS:
        parser.add_argument("--" + key.replace("_", "-"), type={"seeds": str, "lr": float}.get(key, int), default=None,
                            help="N, or per regime: narrow=3,full=1" if key == "seeds" else None)
    args = parser.parse_args()
    if args.workers < 1:
        raise SystemExit(f"--workers: expected at least 1, received {args.workers}")
    if args.workers > 1 and not args.cached_only:
        _fan_out(args.workers)
        args.cached_only = True  # every run is stored now: this process only writes the results
    setting = dict(presets[args.preset])
    for key in SETTING_KEYS:
        if getattr(args, key) is not None:
            setting[key] = getattr(args, key)
    setting["seeds"] = _seeds_per_regime(setting["seeds"], args.regimes.split(","))
    backend, device = backend_and_device()
    setting["preset"], setting["backend"] = args.preset, f"{backend} on {device}"
    setting["description"] = describe(setting)
    setting["command"] = f"python bench/{script} " + " ".join(sys.argv[1:])
    setting["recipe"], setting["gate_recipe"] = RECIPE, GATE_RECIPE
    # RECIPE names the training recipe: a change to it must not reuse old runs.
    tag = (f"{RECIPE}-{args.preset}-{setting['train_limit']}-{setting['epochs']}-{setting['batch_size']}"
           f"-{setting['lr']:g}")
    return args, setting, tag


def _fan_out(workers):
    """Runs this benchmark's command as ``workers`` child processes (each
    with ``--worker``, pinned to one core; they split the runs through the
    records' claims) and waits for all. Exits if one fails."""
    import subprocess

    cores = sorted(os.sched_getaffinity(0))
    argv, rest = [sys.executable, sys.argv[0]], iter(sys.argv[1:])
    for arg in rest:  # the same command without --workers N / --workers=N
        if arg == "--workers":
            next(rest, None)
        elif not arg.startswith("--workers="):
            argv.append(arg)
    print(f"{workers} workers on cores {[cores[i % len(cores)] for i in range(workers)]}", flush=True)
    children = []
    for i in range(workers):
        core = cores[i % len(cores)]
        children.append(subprocess.Popen(argv + ["--worker"],
                                         preexec_fn=lambda core=core: os.sched_setaffinity(0, {core})))
        time.sleep(1)  # staggered, so the first claims do not race
    codes = [child.wait() for child in children]
    failed = [c for c in codes if c != 0]
    if failed:
        raise SystemExit(f"--workers: {len(failed)} of {workers} workers failed (exit {failed[0]}); "
                         "the runs they finished are stored, run the same command again to resume")


def describe(setting):
    """One line naming the setting (results files and their markdown)."""
    return (f"preset {setting['preset']}; {setting['train_limit'] or 60000} training / "
            f"{setting['test_limit'] or 10000} test images, {setting['epochs']} epochs, batch {setting['batch_size']}, "
            f"Adam {setting['lr']:g} cosine, flips + shifts, seeds {setting['seeds']}; backend {setting['backend']}")


def _seeds_per_regime(value, regimes):
    """``3`` or ``"narrow=3,full=1"`` -> {regime: seeds}."""
    if isinstance(value, int) or str(value).isdigit():
        return {r: int(value) for r in regimes}
    out = {}
    for part in str(value).split(","):
        regime, _, n = part.partition("=")
        if regime not in regimes or not n.isdigit() or int(n) < 1:
            raise SystemExit(f"--seeds: expected N or regime=N pairs for {regimes}, received {value!r}")
        out[regime] = int(n)
    missing = [r for r in regimes if r not in out]
    if missing:
        raise SystemExit(f"--seeds: no seed count for regimes {missing} in {value!r}")
    return out


def per_backend_main(parser, script, measure, forward):
    """The parent/child pattern of the per-backend benchmarks.

    Adds ``--backends`` and the hidden ``--child`` flag and parses. A child
    (one backend, set by its parent) prints ``measure(args)`` as JSON and
    gets ``(args, None)``; the parent runs one child per backend, forwarding
    the options named in ``forward``, and gets ``(args, rows)``.
    """
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return args, None
    child_args = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in forward]
    return args, run_per_backend(script, args.backends.split(","), child_args)


def run_per_backend(script, backends, child_args):
    """Runs ``script --child child_args`` once per Keras backend, each in its
    own process; returns the JSON each child prints last."""
    import subprocess

    rows = []
    for backend in backends:
        print(f"[{backend}] measuring ...", flush=True)
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        cmd = [sys.executable, os.path.abspath(script), "--child"] + list(child_args)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.stderr.write(out.stderr[-3000:])
            raise SystemExit(f"{os.path.basename(script)}: the {backend} run failed")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def warm_up(model, x, y, steps=3):
    """Traces and compiles the train step (and fills caches) before timing."""
    for _ in range(steps):
        model.train_on_batch(x, y)


def seconds_per_step(model, x, y, steps):
    """Mean wall time of ``steps`` train steps on one batch."""
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - t0) / steps
