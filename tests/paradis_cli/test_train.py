import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from paradis_cli import main


def _tiny_train(out, *flags) -> int:
    """``paradis train`` of a width-0.25 ResNet-8 in batches of 32, no fine-tune; ``flags`` add the rest."""
    return main(["train", "--model", "resnet8", "--width", "0.25", "--batch-size", "32", "--finetune-epochs", "0",
                 "--recalibrate-batches", "1", "--out", str(out), "--verbose", "0", *flags])


def test_train_end_to_end_writes_model_and_summary(tmp_path, fake_fashion_mnist, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "resnet8", "--width", "0.25", "--switches", "1x1.0,2x0.5",
                 "--budget", "0.3", "--epochs", "2", "--batch-size", "32", "--finetune-epochs", "1",
                 "--recalibrate-batches", "2", "--out", str(out), "--verbose", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("switch "):]
    row = next(line.split() for line in table.splitlines() if line.startswith("2x0.5"))
    assert float(row[2]) <= 0.3, table  # the traffic column
    report = json.loads((out / "summary.json").read_text())
    rows = {r["switch"]: r for r in report["results"]}
    assert set(rows) == {"1x1.0", "2x0.5"}
    assert rows["2x0.5"]["comm_ratio"] <= 0.3 and rows["1x1.0"]["comm_ratio"] is None
    assert 0.0 <= rows["2x0.5"]["top1"] <= 1.0
    assert rows["2x0.5"]["params_per_device_ratio"] < 1.0
    assert (out / "model.keras").is_file() and (out / "checkpoint.keras").is_file()
    assert not (out / "backup").exists()  # a finished run leaves nothing to resume
    # `import paradis_tf` is all keras.models.load_model needs (the presets register with it).
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import sys, keras, paradis_tf; "
                             "print(type(keras.models.load_model(sys.argv[1])).__name__)", str(out / "model.keras")],
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0 and loaded.stdout.split()[-1] == "CifarResNet", loaded.stderr[-2000:]
    events = list((out / "logs").rglob("*tfevents*"))
    assert events, "TensorBoard wrote no event file"
    import tensorflow as tf

    tags = {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(str(path))
            for value in event.summary.value}
    # Per-switch loss, accuracy and traffic, and the annealed budget, every epoch.
    assert {"epoch_1x1.0_loss", "epoch_1x1.0_accuracy", "epoch_2x0.5_accuracy", "epoch_2x0.5_comm",
            "epoch_2x0.5_budget"} <= tags, sorted(tags)


@pytest.mark.parametrize("flags, message", [
    (["--budget", "1.5"], "expected a traffic ratio in (0, 1], received '1.5'"),
    (["--lr", "-1"], "--lr: expected a number > 0, received '-1'"),
    (["--lr", "nan"], "--lr: expected a number > 0, received 'nan'"),
    (["--width", "0"], "--width: expected a number > 0, received '0'"),
    (["--comm-weight", "-0.5"], "--comm-weight: expected a number >= 0, received '-0.5'"),
    (["--sandwich", "-1"], "--sandwich: expected an integer >= 0, received '-1'"),
])
def test_bad_values_are_usage_errors(tmp_path, flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--model", "resnet20", "--out", str(tmp_path / "o")] + flags)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_link_budget_from_the_command_line(tmp_path, fake_fashion_mnist, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "resnet8", "--width", "0.25", "--switches", "2x0.5", "--link-mbps", "200",
                 "--link-latency-ms", "2", "--epochs", "1", "--batch-size", "32", "--finetune-epochs", "0",
                 "--recalibrate-batches", "1", "--out", str(out), "--verbose", "0"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "summary.json").read_text())
    assert report["budget"]["mbps"] == 200 and report["budget"]["latency_ms"] == 2
    for flags, message in ((["--link-mbps", "200"], "--link-mbps and --link-latency-ms go together"),
                           (["--link-mbps", "200", "--link-latency-ms", "2", "--budget", "0.2"], "exclude each other")):
        assert main(["train", "--model", "resnet20", "--out", str(tmp_path / "o")] + flags) == 2
        assert message in capsys.readouterr().err


def test_an_interrupted_run_resumes_only_with_its_own_flags(tmp_path, fake_fashion_mnist, capsys, monkeypatch):
    import keras

    out = tmp_path / "run"
    flags = ["train", "--model", "resnet8", "--switches", "1x1.0,2x0.5", "--budget", "0.3", "--epochs", "2",
             "--batch-size", "32", "--finetune-epochs", "0", "--recalibrate-batches", "1", "--out", str(out),
             "--verbose", "0"]
    saved = keras.callbacks.BackupAndRestore.on_epoch_end

    def interrupted(self, epoch, logs=None):  # Ctrl-C right after the first epoch's backup
        saved(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.callbacks.BackupAndRestore, "on_epoch_end", interrupted)
    assert main(flags + ["--width", "0.25"]) == 130
    monkeypatch.setattr(keras.callbacks.BackupAndRestore, "on_epoch_end", saved)
    capsys.readouterr()
    assert (out / "backup" / "config.json").is_file()
    # Other flags: refused before anything loads, the interrupted run kept.
    assert main(flags + ["--width", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "holds an interrupted run of another configuration (--width 0.25 there, 0.5 now)" in err, err
    assert (out / "backup" / "config.json").is_file()
    # The same flags resume it; a finished run leaves nothing to resume.
    assert main(flags + ["--width", "0.25"]) == 0, capsys.readouterr().err
    assert (out / "model.keras").is_file() and not (out / "backup").exists()


@pytest.mark.parametrize("mangled", ["swallowed", "system-error"])
def test_ctrl_c_that_tensorflow_mangles_while_tracing_still_interrupts(tmp_path, fake_fashion_mnist, capsys,
                                                                       monkeypatch, mangled):
    # A SIGINT landing while TensorFlow traces the train step raises
    # KeyboardInterrupt inside its C++, which may swallow it (training went on
    # to write model.keras) or hand back another exception (seen in CI:
    # SystemError, a traceback and exit 1). Either way: exit 130, nothing left.
    import signal

    from paradis_tf.training import SplitModel

    traced = SplitModel.train_step

    def train_step(self, *args, **kwargs):
        try:
            signal.raise_signal(signal.SIGINT)  # the user's Ctrl-C, delivered here
        except KeyboardInterrupt:
            if mangled == "system-error":
                raise SystemError("Objects/listobject.c:338: bad argument to internal function") from None
        return traced(self, *args, **kwargs)

    monkeypatch.setattr(SplitModel, "train_step", train_step)
    out = tmp_path / "run"
    # SIGINT as in a terminal: pytest-xdist's workers ignore it, and a process
    # that ignores SIGINT never sees a Ctrl-C (paradis then leaves it alone).
    outside = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = _tiny_train(out, "--switches", "1x1.0,2x0.5", "--budget", "0.3", "--epochs", "2")
        # The handler is put back: a later Ctrl-C is Python's KeyboardInterrupt again.
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outside)
    err = capsys.readouterr().err
    assert code == 130 and "paradis train: interrupted" in err, err
    assert not out.exists()


def test_a_budget_no_switch_can_use_is_ignored_with_the_reason(tmp_path, fake_fashion_mnist, capsys):
    code = main(["train", "--model", "resnet8", "--width", "0.25", "--switches", "1x1.0", "--budget", "0.2",
                 "--epochs", "1", "--batch-size", "32", "--finetune-epochs", "0", "--recalibrate-batches", "1",
                 "--out", str(tmp_path / "run"), "--verbose", "0"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "the budget is ignored: no switch of 1x1.0 has devices that exchange" in err, err


def test_sandwich_from_the_command_line(tmp_path, fake_fashion_mnist, capsys):
    import zipfile

    out = tmp_path / "run"
    code = main(["train", "--model", "resnet8", "--width", "0.25", "--switches", "1x1.0,2x0.5,4x0.25,1x0.5",
                 "--gates", "shut", "--sandwich", "1", "--seed", "3", "--epochs", "1", "--batch-size", "32",
                 "--finetune-epochs", "0", "--recalibrate-batches", "1", "--out", str(out), "--verbose", "0"])
    assert code == 0, capsys.readouterr().err
    with zipfile.ZipFile(out / "checkpoint.keras") as z:
        config = json.loads(z.read("config.json"))
    assert config["compile_config"]["sandwich"] == {"middle": 1, "seed": 3}


def test_bad_arguments_exit_2_with_a_message(tmp_path, fake_fashion_mnist, capsys):
    out = str(tmp_path / "o")
    assert main(["train", "--model", "resnet20", "--switches", "1x0.5", "--out", out]) == 2
    assert "--switches: " in capsys.readouterr().err
    assert main(["train", "--model", "resnet20", "--switches", "1x1.0,,2x0.5", "--out", out]) == 2
    assert "empty entry at position 1" in capsys.readouterr().err
    assert main(["train", "--model", "resnet20", "--dataset", "folder:/nonexistent", "--out", out]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _folder(root, classes, per_class, rng, size=8):
    """One sub-folder per class; class k is a noisy image of colour k (learnable at a glance)."""
    import tensorflow as tf

    colours = {"red": (0,), "green": (1,), "blue": (2,), "grey": (0, 1, 2)}
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            img[..., list(colours[name])] += 180
            (root / name / f"{i}.png").write_bytes(tf.io.encode_png(img).numpy())
    return root


def test_folder_dataset_of_odd_size_labels_test_by_training_classes(tmp_path, rng):
    """1,437 training images in batches of 64 leave a last batch of 29, which
    crashed TensorFlow's oneDNN kernels (paradis_tf/training/_odd_batch.py;
    at 16x16, not at 8x8); and a
    TEST_DIR without 'blue' was labelled by its own folders, so every label
    shifted and a good model scored 0 %. Run in a subprocess: the crash
    kills the process."""
    import subprocess
    import sys
    from pathlib import Path

    train = _folder(tmp_path / "train", ["blue", "green", "red"], 479, rng, size=16)
    test = _folder(tmp_path / "test", ["green", "red"], 20, rng, size=16)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "paradis_cli", "train", "--model", "resnet8", "--width", "0.25",
         "--dataset", f"folder:{train},{test}", "--image-size", "16", "--switches", "1x1.0,2x0.5",
         "--gates", "shut", "--epochs", "2", "--batch-size", "64", "--lr", "0.01", "--recalibrate-batches", "4",
         "--verbose", "0", "--out", str(out)],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "KERAS_BACKEND": "tensorflow"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "has no image of class(es) ['blue']" in proc.stderr
    report = json.loads((out / "summary.json").read_text())
    assert report["classes"] == ["blue", "green", "red"]
    top1 = {r["switch"]: r["top1"] for r in report["results"]}
    assert top1["1x1.0"] >= 0.9, (top1, proc.stdout[-2000:])


def test_folder_errors_name_the_folder_and_leave_no_output(tmp_path, rng, capsys):
    one = _folder(tmp_path / "one", ["red"], 3, rng)
    out = tmp_path / "run"
    code = main(["train", "--model", "resnet20", "--dataset", f"folder:{one}", "--image-size", "8",
                 "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"training folder '{one}' has only one class sub-folder with images ('red')" in err
    train = _folder(tmp_path / "train", ["green", "red"], 3, rng)
    test = _folder(tmp_path / "test", ["grey", "red"], 2, rng)
    code = main(["train", "--model", "resnet20", "--dataset", f"folder:{train},{test}", "--image-size", "8",
                 "--out", str(out)])
    assert code == 1
    assert "images of class(es) ['grey'] that class_names does not know" in capsys.readouterr().err
    assert not out.exists()
    # Folder images default to 32x32, which no 7-pixel patch divides: the flag to pass is named.
    code = main(["train", "--model", "vit_tiny", "--dataset", f"folder:{train}", "--out", str(out)])
    assert code == 2
    assert "not divisible by patch_size=7" in (err := capsys.readouterr().err) and "try --image-size 28" in err, err
    assert not out.exists()


def test_image_size_with_fashion_mnist_is_ignored_with_a_warning(tmp_path, fake_fashion_mnist, capsys):
    code = _tiny_train(tmp_path / "run", "--switches", "1x1.0", "--image-size", "14", "--epochs", "1")
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--image-size 14 is ignored: Fashion-MNIST images are 28x28" in err, err


def test_help_does_not_load_keras():
    import subprocess
    import sys

    script = ("import sys\nfrom paradis_cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
              "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout
