"""Dense tasks and ViT: each task's metric against traffic on 2 devices.

Four tasks, five variants each, all on 2 devices (switch 2x0.5) except the
baseline:

  vit           ViT (patch 7, 64 channels, 4 blocks of 4 heads) on Fashion-MNIST: top-1
  wdsr          WDSR x2 (preset ``wdsr_x2``) on the photos of scikit-image's
                wheel: Y-PSNR and SSIM (shave = scale) on the held-out
                photos, against bicubic upsampling
  segmentation  SplitSegmenter (preset ``fcn_scenes``) on Fashion-MNIST scenes: mean IoU
  detection     CenterNet (preset ``centernet_scenes``) on Fashion-MNIST
                scenes: mAP@0.5 of ``decode_centernet`` on the sigmoid heatmaps

Variants (each trained alone with its task's one recipe and the same steps):
  unsplit      one device, full width (switch 1x1.0)
  dense_tp     every gate open (dense tensor parallelism)
  independent  every gate shut (independent per-device branches)
  random_0.2   random gate logits pinned at budget 0.2 (``finalize_gates``) before training
  disco_0.2    learned gates (the library's default ranking), budget 0.2
               reached after a tenth of the run, then ``finalize_gates`` and
               one epoch of fine-tuning
  disco_0.2_<ranking>
               another ranking of ``_common.GATE_RECIPES`` (``late``: the
               default before g2), asked for by name

The recipe is ``bench/accuracy_comm.py``'s: Adam with a cosine learning rate,
the budget schedule and gate handling of ``_common.train_and_evaluate``, and
batch-norm recalibration per switch where the model has batch norm (ViT and
WDSR have none). The paired design: per seed every variant of a task starts
from the same kernels (``_common.paired_init`` from the unsplit model) and
sees the same batches in the same order (``_common.batches``); with two seeds
or more each variant's metric is reported as its per-seed difference to
unsplit (mean and 95 % t interval).

Per run also: traffic ratio, per-device FLOPs and parameters against the
unsplit model (``paradis_tf.device_summary``), and the per-device latency of
the float32 TFLite bundle (``paradis_export``; each device's stages timed by
the ``ReferenceExecutor``, one LiteRT thread, median over runs: compute
only, no network). Where the exporter does not support a model (or
TensorFlow is absent, as on a JAX-only GPU machine) the run records
``latency: null`` with the exporter's message instead of failing.

Presets: ``--preset cpu`` for this 2-core machine (minutes per run; see
PRESETS), ``--preset gpu`` (full-size; run it with KERAS_BACKEND=jax on a
GPU). Per-run records are kept in bench/records/tasks (committed) and each
run's trained weights in bench/.runs/tasks (not committed), so an interrupted
benchmark resumes, also on another machine; ``--cached-only``
reports the stored runs and starts none. Export needs the TensorFlow backend:
after a JAX run, ``KERAS_BACKEND=tensorflow python bench/tasks.py --preset gpu
--cached-only --retime`` times the stored runs from their weights (as it does
for runs made before the exporter supported a model).

Writes docs/results/tasks.json and tasks.md (``--out DIR`` writes elsewhere).

    python bench/tasks.py [--preset cpu|gpu] [--tasks vit,wdsr,...] [--variants unsplit,disco_0.2,...]
                          [--seeds N] [--train-limit N] [--test-limit N] [--epochs N] [--batch-size N]
                          [--lr X] [--latency-runs N] [--cached-only] [--retime] [--out DIR] [--runs-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

TASKS = ("vit", "wdsr", "segmentation", "detection")
DEFAULT_VARIANTS = ("unsplit", "dense_tp", "independent", "random_0.2", "disco_0.2")
# disco_0.2 with another gate ranking (C.GATE_RECIPES): asked for by name.
VARIANTS = DEFAULT_VARIANTS + tuple(f"disco_0.2_{r}" for r in C.GATE_RECIPES)
BUDGET = 0.2
# Each task's headline metric (a fraction for top1/miou/map50, dB for psnr).
METRIC = {"vit": "top1", "wdsr": "psnr", "segmentation": "miou", "detection": "map50"}
# Bumped when this benchmark's recipe changes: it keys the stored runs.
RECIPE = "t1"
SR_SCALE = 2
SR_HR_PATCH = 96  # high-resolution training patch: LR input 48x48, the preset's input
SCENE_CANVAS = 64
DETECTION_STRIDE = 4
LATENCY_WARMUP = 5

# Per task: train_limit (training examples: Fashion-MNIST images, SR patches
# or scenes), test_limit (held-out images, photos or scenes; None = all
# 10,000 test images, all 3 held-out photos, 2,000 test scenes), epochs,
# batch_size, lr. cpu: calibrated on this 2-core machine so one run
# (training, evaluation and the bundle's latency) takes 3-8 minutes.
PRESETS = {
    # Measured here (2 shared cores, TensorFlow, 2x0.5 with learned gates):
    # ViT ~850 images/s, WDSR ~10 patches/s (96x96), segmentation ~160 and
    # detection ~190 scenes/s, plus 30-80 s of XLA compilation per fit;
    # WDSR unsplit at 800 patches x 3 epochs: +0.44 dB over bicubic (258 s),
    # CenterNet unsplit at 4000 scenes x 8 epochs: mAP@0.5 0.58 (181 s).
    "cpu": {
        "seeds": 2,
        "vit": {"train_limit": 30000, "test_limit": None, "epochs": 5, "batch_size": 128, "lr": 2e-3},
        "wdsr": {"train_limit": 1200, "test_limit": None, "epochs": 4, "batch_size": 16, "lr": 1e-3},
        "segmentation": {"train_limit": 4000, "test_limit": 1000, "epochs": 8, "batch_size": 32, "lr": 2e-3},
        "detection": {"train_limit": 4000, "test_limit": 1000, "epochs": 8, "batch_size": 32, "lr": 2e-3},
    },
    "gpu": {
        "seeds": 3,
        "vit": {"train_limit": None, "test_limit": None, "epochs": 30, "batch_size": 128, "lr": 1e-3},
        "wdsr": {"train_limit": 16000, "test_limit": None, "epochs": 30, "batch_size": 16, "lr": 1e-3},
        "segmentation": {"train_limit": 20000, "test_limit": 2000, "epochs": 20, "batch_size": 64, "lr": 1e-3},
        "detection": {"train_limit": 20000, "test_limit": 2000, "epochs": 30, "batch_size": 64, "lr": 1e-3},
    },
}
TASK_KEYS = ("train_limit", "test_limit", "epochs", "batch_size", "lr")
# disco_0.2 against unsplit (paired mean difference over the seeds); WDSR
# must also beat bicubic upsampling.
TARGETS = {
    "vit": {"metric": "top1", "within": 0.005, "wanted": "disco_0.2 top-1 within 0.5 pt of unsplit"},
    "wdsr": {"metric": "psnr", "within": 0.1, "above_bicubic": 1.0,
             "wanted": "disco_0.2 PSNR within 0.1 dB of unsplit and >= 1 dB above bicubic"},
    "segmentation": {"metric": "miou", "within": 0.01, "wanted": "disco_0.2 mIoU within 1 pt of unsplit"},
    "detection": {"metric": "map50", "within": 0.01, "wanted": "disco_0.2 mAP@0.5 within 1 pt of unsplit"},
}


# -- data ------------------------------------------------------------------------------------------------

def load_task_data(task, setting):
    """``{"train": (x, y), "test": ...}``, NumPy. ``test`` is task-specific:
    (x, labels) for vit, [(lr, hr, name), ...] for wdsr, (x, masks) for
    segmentation, (x, boxes) for detection."""
    from paradis_tf.data import centernet_targets, fashion_scenes, sr_eval_images, sr_patches

    n, n_test = setting["train_limit"], setting["test_limit"]
    if task == "vit":
        (x, y), (xt, yt) = C.load_data(n, n_test)
        return {"train": (x, y), "test": (xt, yt)}
    if task == "wdsr":
        # (n, 48, 48, 3) LR and (n, 96, 96, 3) HR patches of the training photos (flips and rotations).
        lr, hr = sr_patches(n or 32000, hr_size=SR_HR_PATCH, scale=SR_SCALE, seed=0)
        images = sr_eval_images(SR_SCALE)
        return {"train": (lr, hr), "test": images[:n_test] if n_test else images}
    scenes = fashion_scenes(n or 20000, "train", canvas=SCENE_CANVAS, seed=0)
    test = fashion_scenes(n_test or 2000, "test", canvas=SCENE_CANVAS, seed=1)
    x, xt = scenes.images.astype("float32") / 255.0, test.images.astype("float32") / 255.0  # (N, 64, 64, 1)
    if task == "segmentation":
        return {"train": (x, scenes.masks), "test": (xt, test.masks)}  # masks (N, 64, 64) int32
    # (N, 16, 16, 10 + 5): heatmap, size, offset, mask at stride 4.
    y = centernet_targets(scenes.boxes, SCENE_CANVAS, DETECTION_STRIDE, 10).packed()
    return {"train": (x, y), "test": (xt, test.boxes)}


# -- models ----------------------------------------------------------------------------------------------

def build(task, switch, gates, input_shape=None):
    from paradis_tf.models import build_model
    from paradis_tf.models.presets import PRESETS as MODEL_PRESETS

    if task == "vit":
        if "vit_tiny" in MODEL_PRESETS:
            return build_model("vit_tiny", input_shape=(28, 28, 1), num_classes=10, switches=switch, gates=gates)
        from paradis_tf.models.vit import ViT

        return ViT(patch_size=7, embed_dim=64, depth=4, num_heads=4, num_classes=10, input_shape=(28, 28, 1),
                   switches=switch, gates=gates)
    if task == "wdsr":
        shape = input_shape or (SR_HR_PATCH // SR_SCALE, SR_HR_PATCH // SR_SCALE, 3)
        return build_model(f"wdsr_x{SR_SCALE}", input_shape=tuple(shape), switches=switch, gates=gates)
    name = {"segmentation": "fcn_scenes", "detection": "centernet_scenes"}[task]
    return build_model(name, switches=switch, gates=gates)


def variant_switch(variant):
    return "1x1.0" if variant == "unsplit" else "2x0.5"


# -- training: accuracy_comm's recipe for any task ---------------------------------------------------------

def train(model, data, setting, seed, variant, augment, xla=True):
    """Adam, cosine learning rate, the same epochs for every variant; the
    gate handling of ``_common.train_and_evaluate`` per variant; batch-norm
    recalibration at the end (a no-op without batch norm). ``xla``: compile
    the TensorFlow train step with XLA (the JAX backend always compiles)."""
    import keras
    from paradis_tf.training import BudgetSchedule

    x, y = data["train"]
    epochs, batch_size = setting["epochs"], setting["batch_size"]
    finetune = 1 if variant.startswith("disco_") and epochs > 1 else 0
    batches = C.batches(x, y, batch_size, augment=augment, seed=seed)
    schedule = keras.optimizers.schedules.CosineDecay(setting["lr"], len(batches) * epochs)
    ranking, anneal_fraction = variant_ranking(variant)
    anneal_end = max(1, int(anneal_fraction * len(batches) * (epochs - finetune)))
    budget = None
    if variant.startswith("random_"):
        # Random logits, never trained, pinned at the budget by finalize_gates below.
        C.randomize_gate_logits(model, seed, trainable=False)
    elif variant.startswith("disco_"):
        budget = float(variant.split("_")[1])
    extra = {}
    if ranking is not None:
        from paradis_tf.training import GateRanking

        extra["gate_ranking"] = GateRanking(**ranking)
    jit = xla if keras.backend.backend() == "tensorflow" else "auto"
    model.compile(optimizer=keras.optimizers.Adam(schedule), budget=budget,
                  budget_schedule=BudgetSchedule(0, anneal_end), jit_compile=jit, **extra)
    if variant.startswith("random_"):
        model.finalize_gates(budget=float(variant.split("_")[1]))
    model.fit(batches, epochs=epochs - finetune, verbose=0)
    if variant.startswith("disco_"):
        model.finalize_gates()
        if finetune:
            model.fit(batches, epochs=epochs, initial_epoch=epochs - finetune, verbose=0)
    model.recalibrate_batch_norm(C.batches(x, y, batch_size, False, seed + 1), num_batches=50, verbose=0)


# -- evaluation ----------------------------------------------------------------------------------------------

def _predict(model, x, batch_size=100):
    """The fused output of the model's only switch on ``x`` (NumPy)."""
    net = model.switch_model(model.switches.names[0])
    return np.concatenate([np.asarray(net(x[i:i + batch_size], training=False))
                           for i in range(0, len(x), batch_size)], axis=0)


def sr_quality(task_model_fn, images):
    """Mean Y-PSNR and SSIM (shave = scale) over whole photos; ``task_model_fn(lr)``
    returns the (H, W, 3) super-resolved image of an (h, w, 3) input."""
    from paradis_tf.metrics import psnr, ssim

    p, s = [], []
    for lr, hr, _ in images:
        sr = np.clip(task_model_fn(lr), 0.0, 1.0)  # (H, W, 3)
        p.append(psnr(sr, hr, shave=SR_SCALE))
        s.append(ssim(sr, hr, shave=SR_SCALE))
    return {"psnr": statistics.fmean(p), "ssim": statistics.fmean(s)}


def bicubic_baseline(images):
    from paradis_tf.data import bicubic_resize

    return sr_quality(lambda lr: bicubic_resize(lr, (lr.shape[0] * SR_SCALE, lr.shape[1] * SR_SCALE)), images)


def evaluate(task, model, data):
    """The task's metric(s) on its held-out data."""
    test = data["test"]
    if task == "vit":
        xt, yt = test
        return {"top1": float(np.mean(np.argmax(_predict(model, xt, 500), axis=-1) == yt))}
    if task == "wdsr":
        def upscale(lr):
            # WDSR is fully convolutional but built for one input size: a twin
            # built for this photo's (h, w, 3), holding the trained weights
            # (gate pins included; weight shapes do not depend on the size).
            twin = build(task, model.switches.names[0], model.architecture["gates"], lr.shape)
            for mine, theirs in zip(twin.weights, model.weights, strict=True):  # same construction, same order
                if mine.path != theirs.path or tuple(mine.shape) != tuple(theirs.shape):
                    raise RuntimeError(f"WDSR twin: weight {mine.path} {tuple(mine.shape)} does not match "
                                       f"{theirs.path} {tuple(theirs.shape)}")
                mine.assign(theirs.value)
            return _predict(twin, lr[None].astype("float32"), 1)[0]  # (1, h, w, 3) -> (H, W, 3)

        return sr_quality(upscale, test)
    if task == "segmentation":
        from paradis_tf.metrics import mean_iou

        xt, masks = test
        pred = np.argmax(_predict(model, xt), axis=-1)  # (N, 64, 64, 11) -> (N, 64, 64)
        return {"miou": mean_iou(pred, masks, 11)}
    from paradis_tf.data import decode_centernet
    from paradis_tf.metrics import map50

    xt, boxes = test
    out = _predict(model, xt)  # (N, 16, 16, C + 4): heatmap logits, size (w, h), offset (dx, dy)
    c = model.num_classes
    heat = 1.0 / (1.0 + np.exp(-out[..., :c]))  # (N, 16, 16, C), sigmoid
    dets = decode_centernet(heat, out[..., c:c + 2], out[..., c + 2:c + 4], stride=model.output_stride)
    return {"map50": map50(dets, boxes, c)}


def accounting(model, input_shape):
    from paradis_tf import device_summary

    summary = device_summary(model, input_shape, print_fn=None)
    sw = summary["switches"][model.switches.names[0]]
    return {"comm_ratio": sw["comm_ratio"] or 0.0,
            "flops_per_device_ratio": max(d["flops_ratio"] for d in sw["devices"]),
            "params_per_device_ratio": max(d["params_ratio"] for d in sw["devices"])}


def tflite_latency(model, sample, runs):
    """Per-device median ms of the float32 bundle's stages (compute only, no
    network), or ``(None, reason)`` where the model cannot be exported."""
    switch = model.switches.names[0]
    try:
        from paradis_export import ReferenceExecutor, export_bundle

        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, "bundle")
            export_bundle(model, switch, folder, progress=None)
            executor = ReferenceExecutor(folder, switch, num_threads=1)
            per_device = [[] for _ in executor.graph["devices"]]
            for r in range(LATENCY_WARMUP + runs):
                _, trace = executor.run(sample)
                if r < LATENCY_WARMUP:
                    continue
                seconds = [0.0] * len(per_device)
                for entry in trace:  # one entry per stage run
                    seconds[entry["device"]] += entry["seconds"]
                for d, s in enumerate(seconds):
                    per_device[d].append(s)
            return [round(1e3 * statistics.median(v), 4) for v in per_device], None
    except Exception as e:  # noqa: BLE001 - any exporter refusal is recorded, not fatal
        reason = f"{type(e).__name__}: {e}".strip().splitlines()[0]
        return None, reason[:300]


def variant_ranking(variant):
    """(GateRanking arguments, anneal fraction) of ``disco_<budget>_<ranking>``;
    (None, C.DEFAULT_ANNEAL_FRACTION) for the library's default ranking and
    for variants without learned gates."""
    if not variant.startswith("disco_") or variant.count("_") < 2:
        return None, C.DEFAULT_ANNEAL_FRACTION
    return C.gate_recipe(variant.split("_", 2)[2])


def variant_gates(variant):
    return {"dense_tp": "open", "independent": "shut"}.get(variant, "learned")


def latency_sample(model):
    """One input for timing, (1, ...) in [0, 1]: float32 latency does not
    depend on the values, and a re-timing needs no data set."""
    shape = (1,) + tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def run_variant(task, variant, seed, setting, data, latency_runs, weights_path):
    """Trains and measures one variant; keeps its weights at ``weights_path``
    (``--retime`` times them again once the exporter supports the model)."""
    import keras

    # The paired start: kernels drawn once per seed (the unsplit model's),
    # copied into whichever variant this is.
    keras.utils.set_random_seed(seed)
    reference = build(task, "1x1.0", "learned")
    keras.utils.set_random_seed(seed)
    model = build(task, variant_switch(variant), variant_gates(variant))
    C.paired_init(model, reference)
    del reference
    # TensorFlow's XLA has no gradient of nearest resizing (the dense heads' FPN merge).
    train(model, data, setting, seed, variant, augment=task == "vit", xla=task in ("vit", "wdsr"))
    os.makedirs(os.path.dirname(weights_path), exist_ok=True)
    model.save_weights(weights_path)
    result = evaluate(task, model, data)
    input_shape = tuple(model.inputs[0].shape[1:])
    result.update(accounting(model, input_shape))
    result["latency_ms_per_device"], result["latency_error"] = tflite_latency(
        model, latency_sample(model), latency_runs)
    return result


def retime(task, variant, key, latency_runs):
    """--retime: the latency of a stored run that has none, from its saved
    weights (e.g. trained on JAX, or before the exporter supported the
    model). Rewrites the run's record; returns it, or None without weights."""
    import json

    weights, path = os.path.join(C.RUNS, "tasks", key + ".weights.h5"), C.record_path("tasks", key)
    if not os.path.exists(weights):
        return None
    with open(path) as f:
        record = json.load(f)
    model = build(task, variant_switch(variant), variant_gates(variant))
    model.load_weights(weights)
    latency, error = tflite_latency(model, latency_sample(model), latency_runs)
    record["result"].update(latency_ms_per_device=latency, latency_error=error)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(path + ".tmp", path)
    return record


# -- summary -------------------------------------------------------------------------------------------------

ROW_KEYS = ("comm_ratio", "flops_per_device_ratio", "params_per_device_ratio")


def _metric_keys(task):
    return ("psnr", "ssim") if task == "wdsr" else (METRIC[task],)


def summarize(records, bicubic=None):
    """records: {task: {variant: {seed: run}}} -> {task: {"variants", "paired_unsplit"}};
    ``bicubic``: wdsr's {"psnr", "ssim"} baseline, or None."""
    out = {}
    for task, variants in records.items():
        rows = {}
        base = variants.get("unsplit", {})
        for variant, runs in variants.items():
            seeds = sorted(runs)
            row = {"seeds": seeds}
            for key in _metric_keys(task):
                row[key] = statistics.fmean(runs[s][key] for s in seeds)
                row[key + "_seeds"] = [runs[s][key] for s in seeds]
            for key in ROW_KEYS:
                row[key] = statistics.fmean(runs[s][key] for s in seeds)
            row["seconds"] = statistics.fmean(runs[s].get("seconds") or 0.0 for s in seeds)
            timed = [s for s in seeds if runs[s].get("latency_ms_per_device")]
            if timed:
                # Per device: the mean over seeds of each run's median.
                lat = [runs[s]["latency_ms_per_device"] for s in timed]
                row["latency_ms_per_device"] = [statistics.fmean(col) for col in zip(*lat)]
                row["latency_error"] = None
                # The slowest device against the unsplit model, per seed, where unsplit was timed too.
                ratios = [max(runs[s]["latency_ms_per_device"]) / base[s]["latency_ms_per_device"][0]
                          for s in timed if base.get(s, {}).get("latency_ms_per_device")]
                row["latency_vs_unsplit"] = statistics.fmean(ratios) if ratios else None
            else:
                row["latency_ms_per_device"] = None
                row["latency_vs_unsplit"] = None
                row["latency_error"] = next((runs[s].get("latency_error") for s in seeds
                                             if runs[s].get("latency_error")), None)
            rows[variant] = row
        task_out = {"variants": rows, "paired_unsplit": {}}
        metric = METRIC[task]
        for variant, row in rows.items():
            if variant == "unsplit" or "unsplit" not in rows:
                continue
            common = [s for s in row["seeds"] if s in rows["unsplit"]["seeds"]]
            if not common:
                continue
            pick = lambda r: [r[metric + "_seeds"][r["seeds"].index(s)] for s in common]  # noqa: E731
            task_out["paired_unsplit"][variant] = {"metric": metric, "n": len(common),
                                                   **C.paired_difference(pick(row), pick(rows["unsplit"]))}
        if task == "wdsr" and bicubic is not None:
            task_out["bicubic"] = dict(bicubic)
        out[task] = task_out
    return out


def verdicts(summary):
    """{task: {"disco_0.2_vs_unsplit": bool, ["disco_0.2_above_bicubic": bool]}} for the tasks
    whose rows are there. A target compares the mean paired difference over the seeds."""
    met = {}
    for task, block in summary.items():
        target = TARGETS[task]
        p = block["paired_unsplit"].get("disco_0.2")
        v = {}
        if p is not None:
            v["disco_0.2_vs_unsplit"] = bool(p["diff_mean"] >= -target["within"])
        if "above_bicubic" in target and "disco_0.2" in block["variants"] and block.get("bicubic"):
            gain = block["variants"]["disco_0.2"]["psnr"] - block["bicubic"]["psnr"]
            v["disco_0.2_above_bicubic"] = bool(gain >= target["above_bicubic"])
        if v:
            v["all"] = all(v.values())
        met[task] = v
    return met


def to_payload(summary, met, setting):
    """The results file: keyed by task, then variant (each row with its
    ``paired_unsplit`` difference); per task also its ``targets`` and ``met``
    blocks, and for wdsr the ``bicubic`` row."""
    payload = {}
    for task, block in summary.items():
        rows = {v: dict(row, paired_unsplit=block["paired_unsplit"].get(v)) for v, row in block["variants"].items()}
        payload[task] = {**rows, "targets": TARGETS[task], "met": met.get(task, {})}
        if "bicubic" in block:
            payload[task]["bicubic"] = block["bicubic"]
    payload["setting"] = setting
    return payload


# -- markdown --------------------------------------------------------------------------------------------------

def _fmt_metric(key, value):
    if value is None:
        return "-"
    if key == "psnr":
        return f"{value:.2f} dB"
    if key == "ssim":
        return f"{value:.4f}"
    return f"{100 * value:.2f} %"


def _fmt_diff(key, p):
    if not p:
        return "-", "-"
    unit, k = (" dB", 1.0) if key == "psnr" else (" pt", 100.0)
    ci = "-" if p["ci95"] is None else f"[{k * p['ci95'][0]:+.2f}, {k * p['ci95'][1]:+.2f}]{unit}"
    return f"{k * p['diff_mean']:+.2f}{unit}", ci


def markdown(summary, setting, met):
    lines = ["# Dense tasks and ViT: task metric against traffic on 2 devices", "",
             f"Setting: {setting['description']}", "",
             "Paired design: per seed, every variant of a task starts from the same kernels and sees the same "
             "batches; differences to unsplit are per seed (mean, 95 % t interval from 2 seeds on). Latency: "
             "float32 TFLite, each device's stages on one LiteRT thread, median per inference (compute only, "
             "no network); `vs unsplit` is the slowest device over the unsplit model.", ""]
    for task, block in summary.items():
        keys = _metric_keys(task)
        s = setting["tasks"][task]
        lines += [f"## {task}", "",
                  f"{s['train_limit'] or 'all'} training / {s['test_limit'] or 'all'} test examples, "
                  f"{s['epochs']} epochs, batch {s['batch_size']}, Adam {s['lr']:g} cosine.", "",
                  "| variant | " + " | ".join(keys) + " | diff to unsplit | 95 % interval | comm ratio | "
                  "FLOPs/device | params/device | latency ms per device | latency vs unsplit | s/run |",
                  "|---|" + "---|" * (len(keys) + 8)]
        for variant, row in block["variants"].items():
            d, ci = _fmt_diff(keys[0], block["paired_unsplit"].get(variant))
            lat = ("n/a" if row["latency_ms_per_device"] is None
                   else ", ".join(f"{v:.3f}" for v in row["latency_ms_per_device"]))
            vs = "-" if row["latency_vs_unsplit"] is None else f"{row['latency_vs_unsplit']:.3f}"
            lines.append(f"| {variant} | " + " | ".join(_fmt_metric(k, row[k]) for k in keys)
                         + f" | {d} | {ci} | {row['comm_ratio']:.3f} | {row['flops_per_device_ratio']:.3f} | "
                         f"{row['params_per_device_ratio']:.3f} | {lat} | {vs} | {row['seconds']:.0f} |")
        if block.get("bicubic"):
            lines.append("| bicubic | " + " | ".join(_fmt_metric(k, block["bicubic"][k]) for k in keys)
                         + " | - | - | - | - | - | - | - | - |")
        errors = sorted({row["latency_error"] for row in block["variants"].values() if row.get("latency_error")})
        if errors:
            lines += ["", "No latency (export refused): " + "; ".join(f"`{e}`" for e in errors)]
        lines.append("")
    lines += ["## Targets", "", "| task | target | met |", "|---|---|---|"]
    for task, target in TARGETS.items():
        v = met.get(task, {}).get("all")
        lines.append(f"| {task} | {target['wanted']} | {'-' if v is None else ('yes' if v else 'no')} |")
    lines += ["", f"Command: `{setting['command']}`", ""]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from {list(TASKS)}")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, from {list(VARIANTS)}")
    parser.add_argument("--seeds", type=int, default=None)
    for key in TASK_KEYS:
        parser.add_argument("--" + key.replace("_", "-"), type=float if key == "lr" else int, default=None,
                            help="overrides the preset's value for every task")
    parser.add_argument("--latency-runs", type=int, default=50, help="timed inferences per bundle")
    parser.add_argument("--cached-only", action="store_true",
                        help="report the runs already stored; start none")
    parser.add_argument("--retime", action="store_true",
                        help="time again the stored runs that have no latency (trained on JAX, or exported "
                             "before the exporter supported the model), from their saved weights")
    parser.add_argument("--out", default=None, help="results folder (default docs/results)")
    parser.add_argument("--runs-dir", default=None,
                        help="per-run records and saved weights folder (default bench/records and bench/.runs)")
    args = parser.parse_args(argv)
    for flag, chosen, known in (("--tasks", args.tasks, TASKS), ("--variants", args.variants, VARIANTS)):
        unknown = [v for v in chosen.split(",") if v not in known]
        if unknown:
            raise SystemExit(f"{flag}: unknown {unknown}; choose from {list(known)}")
    if args.seeds is not None and args.seeds < 1:
        raise SystemExit(f"--seeds: expected a positive count, received {args.seeds}")
    return args


def task_setting(preset, task, args):
    setting = dict(PRESETS[preset][task])
    for key in TASK_KEYS:
        if getattr(args, key) is not None:
            setting[key] = getattr(args, key)
    return setting


def run_key(preset, task, s, variant, seed):
    """The stored run's name: everything that changes its result."""
    key = (f"{RECIPE}-{C.RECIPE}-{preset}/{task}-{s['train_limit']}-{s['test_limit']}-{s['epochs']}"
           f"-{s['batch_size']}-{s['lr']:g}/{variant}_{seed}")
    return key + f"_{C.gate_key(variant)}" if variant.startswith("disco_") else key


def main(argv=None):
    args = parse_args(argv)
    if args.out:
        C.RESULTS = os.path.abspath(args.out)
    if args.runs_dir:
        C.RECORDS = C.RUNS = os.path.abspath(args.runs_dir)
    tasks, variants = args.tasks.split(","), args.variants.split(",")
    seeds = args.seeds or PRESETS[args.preset]["seeds"]
    backend, device = C.backend_and_device()
    settings = {t: task_setting(args.preset, t, args) for t in tasks}
    setting = {"preset": args.preset, "seeds": seeds, "tasks": settings, "backend": f"{backend} on {device}",
               "recipe": RECIPE, "common_recipe": C.RECIPE, "gate_recipe": C.GATE_RECIPE,
               "latency_runs": args.latency_runs,
               "command": "python bench/tasks.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    setting["description"] = (f"preset {args.preset}; {seeds} seed(s); 2 devices (switch 2x0.5); budget {BUDGET}; "
                              f"backend {setting['backend']}")
    records, bicubic = {}, None
    for task in tasks:
        s = settings[task]
        data = None
        records[task] = {}
        # Seed-major: an interrupted run leaves every variant with the same seeds.
        for seed in range(seeds):
            for variant in variants:
                key = run_key(args.preset, task, s, variant, seed)

                def fn(task=task, variant=variant, seed=seed):
                    nonlocal data
                    if data is None:
                        data = load_task_data(task, s)
                    return run_variant(task, variant, seed, s, data, args.latency_runs,
                                       os.path.join(C.RUNS, "tasks", key + ".weights.h5"))

                rec = C.cached_run("tasks", key, fn, cached_only=args.cached_only)
                if rec is None:
                    continue
                if args.retime and rec["result"]["latency_ms_per_device"] is None:
                    rec = retime(task, variant, key, args.latency_runs) or rec
                records[task].setdefault(variant, {})[seed] = dict(rec["result"], seconds=rec["seconds"])
                r = rec["result"]
                print(f"[{task:>12}] seed {seed} {variant:<12}: {METRIC[task]} {r[METRIC[task]]:.4f}  "
                      f"traffic {r['comm_ratio']:.3f}  latency {r['latency_ms_per_device']}  "
                      f"({rec['seconds']:.0f} s)", flush=True)
        if task == "wdsr" and records[task]:
            from paradis_tf.data import sr_eval_images

            images = sr_eval_images(SR_SCALE)
            bicubic = bicubic_baseline(images[:s["test_limit"]] if s["test_limit"] else images)
        records[task] = {v: records[task][v] for v in VARIANTS if v in records[task]}
    records = {t: v for t, v in records.items() if v}
    summary = summarize(records, bicubic)
    met = verdicts(summary)
    C.write_json("tasks.json", to_payload(summary, met, setting))
    md = markdown(summary, setting, met)
    C.write_text("tasks.md", md)
    print(md)


if __name__ == "__main__":
    main()
