"""Full-int8 export of a trained model: top-1 agreement with the Keras float
model on 1,000 Fashion-MNIST test images, and int8 bytes that cross stages
and devices with unchanged quantization."""

import numpy as np
import pytest
from keras import ops

from paradis_export import ReferenceExecutor, export_bundle, read_graph
from tests.paradis_export.helpers import check_local_parts_before_receives, check_stage_boundaries


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import keras

    from paradis_tf.data import load_fashion_mnist
    from paradis_tf.models import CifarResNet
    from paradis_tf.training import BudgetSchedule

    keras.utils.set_random_seed(0)
    x, y = load_fashion_mnist("train")
    x, y = x[:16000].astype("float32") / 255.0, y[:16000]
    # One switch keeps training short on CI's CPU; 2x0.5 is its own teacher.
    model = CifarResNet(depth=8, width=1.0, num_classes=10, input_shape=(28, 28, 1), switches="2x0.5")
    # The budget anneals over the first epoch; 2 epochs reach ~86 % top-1.
    model.compile(optimizer=keras.optimizers.Adam(3e-3), budget=0.2, budget_schedule=BudgetSchedule(0, 124))
    model.fit(x, y, batch_size=128, epochs=2, verbose=0)
    model.finalize_gates()
    model.fit(x[:4000], y[:4000], batch_size=128, epochs=1, verbose=0)
    import tensorflow as tf

    model.recalibrate_batch_norm(tf.data.Dataset.from_tensor_slices((x[:2000], y[:2000])).batch(250), verbose=0)
    out = tmp_path_factory.mktemp("int8") / "bundle"
    # Calibration: real training images the test never scores.
    export_bundle(model, "2x0.5", out, int8=True, calibration=x[-500:], progress=None)
    return model, out


def test_int8_agrees_with_keras_float_on_1000_test_images(trained):
    from paradis_tf.data import load_fashion_mnist

    model, out = trained
    x, y = load_fashion_mnist("test")
    x, y = x[:1000].astype("float32") / 255.0, y[:1000]
    ref = ops.convert_to_numpy(model.switch_model("2x0.5").predict(x, verbose=0))
    executor = ReferenceExecutor(out, "2x0.5")
    assert executor.precision == "int8"
    got = executor.predict(x)
    agreement = float(np.mean(got.argmax(1) == ref.argmax(1)))
    float_acc, int8_acc = float(np.mean(ref.argmax(1) == y)), float(np.mean(got.argmax(1) == y))
    print(f"int8 agreement {agreement:.4f}, accuracy float {float_acc:.4f} int8 {int8_acc:.4f}")
    assert float_acc > 0.75  # a trained model, or agreement means little
    # 98.5 % on one 2-core machine of this kind (AVX-512), >= 99 % on CI's at the
    # same commit: TensorFlow's CPU kernels make the trained model (so its near
    # ties) machine-dependent; 3 or 4 epochs gave 99.0 % on the former.
    assert agreement >= 0.98
    assert int8_acc >= float_acc - 0.005


def test_int8_tensors_keep_their_quantization_across_stages_and_devices(trained):
    from ai_edge_litert.interpreter import Interpreter

    _, out = trained
    executor = ReferenceExecutor(out, "2x0.5")
    graph = executor.graph
    folder = executor.graph_path.parent
    # Read each file's own signature details (the interpreter, not the graph).
    details = {}
    for d in graph["devices"]:
        interpreter = Interpreter(model_path=str(folder / d["file"]))
        for stage in d["stages"]:
            runner = interpreter.get_signature_runner(stage["signature"])
            details[(d["device"], stage["name"])] = (runner.get_input_details(), runner.get_output_details())
    produced = {}
    for (device, stage), (_, outputs) in details.items():
        for name, info in outputs.items():
            assert info["dtype"] == np.int8, name
            produced[name] = info["quantization"]
            assert graph["tensors"][name]["quantization"] == pytest.approx(
                {"scale": info["quantization"][0], "zero_point": info["quantization"][1]})
    image = graph["input"]["tensor"]
    produced[image] = (graph["tensors"][image]["quantization"]["scale"],
                       graph["tensors"][image]["quantization"]["zero_point"])
    checked = 0
    for (device, stage), (inputs, _) in details.items():
        for name, info in inputs.items():
            assert info["dtype"] == np.int8, name
            assert info["quantization"] == pytest.approx(produced[name]), (device, stage, name)
            checked += 1
    received = [s for s in graph["sends"] if s["to"]["stage"] != "fusion"]
    assert received and checked > len(received)
    # Among them the local parts, computed a stage before the receive.
    assert any(name.endswith("_local") for inputs, _ in details.values() for name in inputs)
    for s in graph["sends"]:
        assert s["bytes"] == int(np.prod(graph["tensors"][s["tensor"]]["shape"]))  # one byte per value


@pytest.fixture(scope="module")
def resnet20_int8(tmp_path_factory):
    import keras

    from paradis_tf.models import CifarResNet
    from tests.paradis_export.helpers import SWITCHES, real_images, sparse

    keras.utils.set_random_seed(0)
    # ResNet-20 (not the helpers' ResNet-8): the weights this regression was found with.
    model = sparse(CifarResNet(depth=20, width=0.25, num_classes=10, input_shape=(28, 28, 1), switches=SWITCHES))[0]
    out = tmp_path_factory.mktemp("int8_stages") / "bundle"
    # With these weights and images some received channels are zero on every
    # calibration image (the 3-device switch's files failed XNNPACK's prepare).
    export_bundle(model, "2x0.5,0.5+0.3+0.2", out, int8=True, calibration=real_images(32)[0], progress=None)
    return model, out


@pytest.mark.parametrize("switch", ["2x0.5", "0.5+0.3+0.2"])
def test_int8_local_parts_run_before_receives_with_their_own_scale(resnet20_int8, switch):
    from tests.paradis_export.helpers import real_images

    model, out = resnet20_int8
    graph = read_graph(out / switch / "fusion_graph.json")
    assert check_local_parts_before_receives(graph) > 0
    assert check_stage_boundaries(graph) > 0
    local = [t for t in graph["tensors"] if t.endswith("_local")]
    assert local
    for t in local:  # a stage output like any other: int8 on its calibrated scale
        assert graph["tensors"][t]["dtype"] == "int8" and graph["tensors"][t]["quantization"]["scale"] > 0, t
    x, _ = real_images(16, seed=2)
    ref = ops.convert_to_numpy(model.switch_model(switch)(x))
    got = ReferenceExecutor(out, switch).predict(x)  # every stage loads (XNNPACK) and runs
    # int8 of an untrained model: close in scale, not bit-exact.
    assert np.abs(got - ref).max() <= 0.1 * np.abs(ref).max()
