"""``paradis train --task sr|segmentation|detection`` through the CLI entry
point (tiny models, one epoch), the task's metric in summary.json checked
against an independent computation, the task checks, and ``paradis export``
of a dense model (exported with the task's output kind, or refused with the
unsupported layer named)."""

import json
import types

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from paradis_cli import main

TINY = ["--width", "0.25", "--switches", "1x1.0,2x0.5", "--budget", "0.5", "--epochs", "1",
        "--finetune-epochs", "0", "--recalibrate-batches", "1", "--batch-size", "8", "--verbose", "0"]


def _y(rgb):
    """BT.601 luma in [0, 1] of RGB in [0, 1] (the super-resolution convention)."""
    return (16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def _psnr_y(a, b, shave):
    a, b = _y(a)[shave:-shave, shave:-shave], _y(b)[shave:-shave, shave:-shave]
    return 10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))


def _miou(pred, true, n):
    ious = []
    for c in range(n):
        union = np.sum((pred == c) | (true == c))
        if union:
            ious.append(np.sum((pred == c) & (true == c)) / union)
    return float(np.mean(ious))


def _rows(out):
    report = json.loads((out / "summary.json").read_text())
    return report, {r["switch"]: r for r in report["results"]}


def test_sr_reports_y_psnr_ssim_of_held_out_photos_and_the_bicubic_baseline(tmp_path, capsys):
    pytest.importorskip("skimage")
    import keras

    from paradis_tf.data import bicubic_resize, sr_eval_images

    out = tmp_path / "sr"
    code = main(["train", "--model", "wdsr_x2", "--task", "sr", "--limit", "16", "--test-limit", "4",
                 "--image-size", "24", "--out", str(out)] + TINY)
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "PSNR dB" in printed and "bicubic upscaling scores PSNR" in printed
    report, rows = _rows(out)
    assert report["task"] == "sr" and report["dataset"] == "photos"
    assert rows["2x0.5"]["comm_ratio"] <= 0.5
    for r in rows.values():
        assert {"psnr", "ssim"} <= set(r) and "top1" not in r
        assert np.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1
    ev = report["evaluation"]
    photos = sr_eval_images(2)
    assert ev["photos"] == [name for _, _, name in photos] and ev["shave"] == 2
    # The baseline, by hand: bicubic upscaling, Y channel, 2 pixels shaved.
    bicubic = np.mean([_psnr_y(bicubic_resize(lr, hr.shape[:2]), hr, 2) for lr, hr, _ in photos])
    assert ev["bicubic"]["psnr"] == pytest.approx(bicubic, abs=1e-3)
    assert 0 < ev["bicubic"]["ssim"] <= 1
    # Each switch's score is the saved model's on the whole photos (the
    # model at each photo's size, with the trained weights), Y channel.
    import paradis_tf.models  # noqa: F401

    model = keras.saving.load_model(out / "model.keras", compile=False)
    for name in ("1x1.0", "2x0.5"):
        scores = []
        for lr, hr, _ in photos:
            sized = type(model).from_config({**model.get_config(), "input_shape": list(lr.shape)})
            sized.set_weights(model.get_weights())
            sr = np.clip(keras.ops.convert_to_numpy(sized.switch_model(name)(lr[None]))[0], 0, 1)
            assert sr.shape == hr.shape
            scores.append(_psnr_y(sr, hr, 2))
        assert rows[name]["psnr"] == pytest.approx(np.mean(scores), abs=1e-3)


def test_segmentation_reports_mean_iou_and_export_uses_the_task(tmp_path, fake_fashion_mnist, capsys):
    import keras

    from paradis_tf.data import fashion_scenes

    out = tmp_path / "seg"
    code = main(["train", "--model", "fcn_scenes", "--limit", "16", "--test-limit", "8", "--image-size", "32",
                 "--augment", "--out", str(out)] + TINY)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "mIoU" in printed.out
    assert "--augment is ignored: scenes are generated with random placements" in printed.err
    report, rows = _rows(out)
    assert report["task"] == "segmentation" and report["dataset"] == "fashion-scenes"
    assert report["classes"][0] == "background" and len(report["classes"]) == 11
    # Independent: the saved model's argmax on the same test scenes, IoU by hand.
    import paradis_tf.models  # noqa: F401

    model = keras.saving.load_model(out / "model.keras", compile=False)
    # The run's test scenes: items scaled with the canvas (20-36 pixels at 64).
    scenes = fashion_scenes(8, "test", 32, item_size=(10, 18), seed=0)
    x = scenes.images.astype("float32") / 255.0
    for name in ("1x1.0", "2x0.5"):
        pred = np.argmax(keras.ops.convert_to_numpy(model.switch_model(name)(x)), axis=-1)
        assert rows[name]["miou"] == pytest.approx(_miou(pred, scenes.masks, 11), abs=1e-6)

    # Export: the fusion graph's output kind is the task's, or the CLI names
    # the layer the exporter cannot split yet (a usage error, no traceback).
    bundle = tmp_path / "bundle"
    code = main(["export", "--checkpoint", str(out / "model.keras"), "--switches", "2x0.5", "--out", str(bundle)])
    captured = capsys.readouterr()
    if code == 0:
        graph = json.loads(next(bundle.rglob("fusion_graph.json")).read_text())
        assert graph["output"]["kind"] == "segmentation_logits"
        assert "output: segmentation_logits" in captured.out
    else:
        assert code == 2, captured.err
        assert "cannot be exported yet: Cannot export layer '" in captured.err and "Traceback" not in captured.err
        assert not bundle.exists()


def test_detection_reports_map50(tmp_path, fake_fashion_mnist, capsys):
    out = tmp_path / "det"
    code = main(["train", "--model", "centernet_scenes", "--task", "detection", "--limit", "16", "--test-limit",
                 "8", "--image-size", "32", "--out", str(out)] + TINY)
    assert code == 0, capsys.readouterr().err
    assert "mAP@0.5" in capsys.readouterr().out
    report, rows = _rows(out)
    assert report["task"] == "detection" and len(report["classes"]) == 10
    for r in rows.values():
        assert set(r) >= {"map50", "comm_ratio", "flops_per_device"} and 0.0 <= r["map50"] <= 1.0


class _Oracle:
    """A stand-in model whose every switch outputs ``fn(batch indices)``."""

    def __init__(self, fn):
        self.switches = types.SimpleNamespace(names=("1x1.0", "2x0.5"))
        self.fn, self.seen = fn, 0

    def __call__(self, batch, training=False):
        start, self.seen = self.seen, self.seen + len(batch)
        out = self.fn(start, self.seen)
        return {"1x1.0": out, "2x0.5": np.zeros_like(out)}


def test_detection_and_segmentation_metrics_of_perfect_and_empty_outputs(fake_fashion_mnist):
    """Hand-made outputs: the ground truth scores 1, nothing scores 0 (the
    decoding's sigmoid, slicing and stride are those of the targets)."""
    from paradis_cli._tasks import Preset, TaskRun, get_task
    from paradis_tf.data import centernet_targets, fashion_scenes

    scenes = fashion_scenes(6, "test", 32, item_size=(10, 18), seed=0)
    x = scenes.images.astype("float32") / 255.0
    args = types.SimpleNamespace(batch_size=4)
    info = Preset("centernet_scenes", "detection", (32, 32, 1), (8, 8, 14), frozenset())
    target = centernet_targets(scenes.boxes, 32, 4, 10)
    # Logits: +20 at the peaks, -20 elsewhere; size and offset exact.
    perfect = np.concatenate([np.where(target.heatmap >= 1, 20.0, -20.0), target.size, target.offset], -1)
    run = TaskRun(None, None, (x, scenes), (32, 32, 1), {}, None, "")
    rows, _ = get_task("detection").evaluate(_Oracle(lambda a, b: perfect[a:b]), run, args)
    assert rows["1x1.0"]["map50"] == pytest.approx(1.0) and rows["2x0.5"]["map50"] == 0.0
    assert get_task("detection").targets(scenes, info, 32).shape == (6, 8, 8, 15)

    onehot = np.eye(11, dtype="float32")[scenes.masks] * 10  # (N, 32, 32, 11) logits
    rows, _ = get_task("segmentation").evaluate(_Oracle(lambda a, b: onehot[a:b]), run, args)
    assert rows["1x1.0"]["miou"] == pytest.approx(1.0)
    # All background: IoU of class 0 only, every item class 0.
    background = np.mean(scenes.masks == 0)
    present = len(np.unique(scenes.masks))
    assert rows["2x0.5"]["miou"] == pytest.approx(background / present)


@pytest.mark.parametrize("flags, message", [
    (["--model", "resnet20", "--task", "sr"],
     "--task sr does not fit --model resnet20, whose task is classification: leave --task out or pick a sr "
     "model: wdsr_x2, wdsr_x3"),
    (["--model", "fcn_scenes", "--task", "detection"], "pick a detection model: centernet_scenes"),
    (["--model", "wdsr_x2", "--dataset", "fashion-mnist"], "--dataset 'fashion-mnist' does not fit task 'sr': "
                                                           "use 'photos'"),
    (["--model", "resnet20", "--dataset", "fashion-scenes"],
     "use 'fashion-mnist' or 'folder:TRAIN_DIR[,TEST_DIR]'"),
    (["--model", "fcn_scenes", "--image-size", "60"], "--image-size 60 (the side of a scene) must be a multiple of 8"),
    (["--model", "wdsr_x3", "--image-size", "32"], "must be a multiple of 3"),
    (["--model", "fcn_scenes", "--image-size", "8"], "--image-size 8 (the side of a scene) is too small to place "
                                                     "the scene's items: use at least 16"),
    (["--model", "wdsr_x2", "--image-size", "302"], "--image-size 302 (the side of a high-resolution patch): "
                                                    "hr_size 302 is larger than the smallest"),
])
def test_task_mismatches_are_usage_errors(tmp_path, flags, message, capsys):
    out = tmp_path / "o"
    assert main(["train", "--out", str(out)] + flags) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
