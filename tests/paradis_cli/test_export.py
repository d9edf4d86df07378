"""`paradis export` and `paradis inspect` end to end on a saved checkpoint."""

import json

import numpy as np
import pytest
from keras import ops

from paradis_export import ReferenceExecutor
from paradis_cli import main
from tests.paradis_export.helpers import real_images, resnet8


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = resnet8(switches="1x1.0,2x0.5")
    path = tmp_path_factory.mktemp("ckpt") / "model.keras"
    model.save(path)
    return model, path


def test_export_then_inspect(checkpoint, tmp_path, capsys):
    model, path = checkpoint
    out = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(path), "--switches", "2x0.5,1x1.0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fallback"] == ["2x0.5", "1x1.0"]
    graph = json.loads((out / "2x0.5" / "fusion_graph.json").read_text())
    for d in graph["devices"]:
        # Per device: file size, FLOPs and bytes on the wire, as in the graph.
        row = next(line for line in printed.splitlines() if line.split()[:2] == [str(d["device"]), "0.5"])
        assert f"{d['file_bytes']:,}" in row and f"{d['flops'] / 1e6:.3f}" in row
        assert f"{d['bytes_sent']:,}" in row and f"{d['bytes_received']:,}" in row
    x, _ = real_images(2)
    got = ReferenceExecutor(out, "2x0.5").predict(x)
    ref = ops.convert_to_numpy(model.switch_model("2x0.5")(x))
    np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max())

    assert main(["inspect", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fallback order 2x0.5 -> 1x1.0" in printed
    assert "switch 2x0.5: 2 device(s), float32" in printed
    assert graph["sends"][0]["tensor"] in printed  # the send table
    assert main(["inspect", str(out / "2x0.5" / "fusion_graph.json")]) == 0


def test_export_int8_with_calibration(checkpoint, tmp_path, capsys):
    _, path = checkpoint
    out = tmp_path / "q"
    assert main(["export", "--checkpoint", str(path), "--switches", "2x0.5", "--int8", "--calibration", "16",
                 "--out", str(out)]) == 0
    graph = json.loads((out / "2x0.5" / "fusion_graph.json").read_text())
    assert graph["precision"] == "int8"
    assert "calibration: 16 images" in capsys.readouterr().out


def test_usage_errors_exit_2_with_the_argument(checkpoint, tmp_path, capsys):
    _, path = checkpoint
    assert main(["export", "--checkpoint", str(tmp_path / "nope.keras"), "--switches", "2x0.5",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(path), "--switches", "4x0.25", "--out", str(tmp_path / "o")]) == 2
    assert "--switches: " in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(path), "--switches", "2x0.5,", "--out", str(tmp_path / "o")]) == 2
    assert "empty entry" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    assert main(["export", "--checkpoint", str(path), "--switches", "2x0.5", "--out", str(tmp_path / "exists")]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite to replace it" in err and "overwrite=True" not in err
    (tmp_path / "exists" / "model.keras").write_text("a training run's checkpoint")
    assert main(["export", "--checkpoint", str(path), "--switches", "2x0.5", "--out", str(tmp_path / "exists"),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "--out: " in err and "is not a bundle" in err and "overwrite=True" not in err
    assert (tmp_path / "exists" / "model.keras").exists()
    assert main(["inspect", str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_int8_calibration_of_the_wrong_shape_names_the_default(tmp_path, capsys):
    # The user never passed --dataset: say which data was used and what to pass.
    from paradis_tf.models import CifarResNet

    path = tmp_path / "rgb.keras"
    CifarResNet(depth=8, width=0.25, num_classes=3, input_shape=(16, 16, 3), switches="1x1.0,2x0.5").save(path)
    code = main(["export", "--checkpoint", str(path), "--switches", "2x0.5", "--int8", "--calibration", "4",
                 "--out", str(tmp_path / "q")])
    assert code == 2
    err = capsys.readouterr().err
    assert "the default calibration data ('fashion-mnist')" in err and "(16, 16, 3)" in err
    assert "--dataset folder:TRAIN_DIR" in err


def test_int8_of_a_model_with_float_only_layers_is_refused_before_calibrating(tmp_path, capsys, monkeypatch):
    from paradis_tf.models.vit import ViT

    import paradis_cli._tasks as tasks

    path = tmp_path / "vit.keras"
    ViT(patch_size=7, embed_dim=12, depth=1, num_heads=4, mlp_ratio=2.0, num_classes=10, input_shape=(28, 28, 1),
        switches="1x1.0,2x0.5").save(path)

    def calibration_images(*args):
        raise AssertionError("calibration images loaded for an export that is refused anyway")

    monkeypatch.setattr(tasks, "calibration_images", calibration_images)
    code = main(["export", "--checkpoint", str(path), "--switches", "2x0.5", "--int8", "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--int8: switch 2x0.5 has layers of kinds ['attention', 'layernorm']" in err, err
    assert "leave out --int8 to export this model in float32" in err and "int8=False" not in err, err
    assert not (tmp_path / "q").exists()


def test_a_corrupt_checkpoint_is_a_failure_that_says_so(tmp_path, capsys):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert main(["export", "--checkpoint", str(bad), "--switches", "2x0.5", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "exists but cannot be read as a Keras model" in err and "File not found" not in err.split("(")[0]


def test_inspect_of_a_one_device_switch(checkpoint, tmp_path, capsys):
    _, path = checkpoint
    assert main(["export", "--checkpoint", str(path), "--switches", "1x1.0", "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert "one device: nothing crosses a network" in printed and "each other device" not in printed
    assert "batch norm folded" in printed


def test_checkpoint_trained_on_jax_exports_on_tensorflow(tmp_path):
    """The GPU route: save on the JAX backend, export on TensorFlow, same output."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    script = (
        "import sys, numpy as np, keras\n"
        "from tests.paradis_export.helpers import resnet8\n"
        "m = resnet8(switches='1x1.0,2x0.5')\n"
        "x = np.random.default_rng(0).uniform(size=(2, 28, 28, 1)).astype('float32')\n"
        "np.save(sys.argv[1] + '/x.npy', x)\n"
        "np.save(sys.argv[1] + '/ref.npy', keras.ops.convert_to_numpy(m.switch_model('2x0.5')(x)))\n"
        "m.save(sys.argv[1] + '/model.keras')\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=repo, env=env, check=True,
                   capture_output=True)
    assert main(["export", "--checkpoint", str(tmp_path / "model.keras"), "--switches", "2x0.5",
                 "--out", str(tmp_path / "bundle")]) == 0
    got = ReferenceExecutor(tmp_path / "bundle").predict(np.load(tmp_path / "x.npy"))
    ref = np.load(tmp_path / "ref.npy")
    np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max())
