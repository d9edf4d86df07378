"""Dense-prediction export: WDSR x2 (weight-normalized split convs, device 0's
skip conv, per-device pixel shuffle), the FCN segmenter and CenterNet
(nearest upsampling in the FPN merge; the segmenter's bilinear upsampling of
its partial logits). Float32 parity with Keras through the reference
executor on learned sparse gates, builtin TFLite ops with the resize flags
of ``keras.ops.image.resize``, and int8 segmentation against the float
model."""

import numpy as np
import pytest
from keras import ops

from paradis_export import ReferenceExecutor, _flatbuffer, export_bundle, read_graph
from paradis_export.partitioner import partition
from paradis_tf.models.presets import build_model
from tests.paradis_export.helpers import sparse

SWITCHES = ("2x0.5", "0.5+0.3+0.2")
MODELS = ("wdsr_x2", "fcn_scenes", "centernet_scenes")
# Tiny instances: 8 or 4/8/16 channels (width 0.25), one block, 16x16 or 32x32.
SMALL = {
    "wdsr_x2": dict(num_blocks=1, filters=8, input_shape=(16, 16, 3)),
    "fcn_scenes": dict(width=0.25, input_shape=(32, 32, 1)),
    "centernet_scenes": dict(width=0.25, input_shape=(32, 32, 1)),
}
KINDS = {"wdsr_x2": "image", "fcn_scenes": "segmentation_logits", "centernet_scenes": "centernet"}


def _input_shape(name):
    return SMALL[name]["input_shape"]


def _real_inputs(name, n):
    """Real model inputs in [0, 1]: low-resolution photo patches for WDSR
    (scikit-image's photos), Fashion-MNIST scenes for the heads."""
    if name == "wdsr_x2":
        pytest.importorskip("skimage")  # the photos ship in scikit-image's wheel (the tasks extra)
        from paradis_tf.data.photos import sr_patches

        return sr_patches(n, hr_size=32, scale=2, seed=3, split="eval")[0]  # (n, 16, 16, 3)
    from paradis_tf.data.scenes import fashion_scenes

    return fashion_scenes(n, "test", 32, item_size=(10, 18), seed=0).images.astype("float32") / 255.0


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(5)  # module fixtures run before the per-test seed
    root = tmp_path_factory.mktemp("dense")
    out = {}
    for name in MODELS:
        model = build_model(name, switches="1x1.0," + ",".join(SWITCHES), **SMALL[name])
        model, ratios = sparse(model, budget=0.3)  # random gate logits, made binary at the budget
        export_bundle(model, ",".join(SWITCHES), root / name, progress=None)
        out[name] = (model, root / name, ratios)
    return out


@pytest.mark.parametrize("name", MODELS)
def test_gates_are_genuinely_sparse(bundles, name):
    model, _, ratios = bundles[name]
    for switch in SWITCHES:
        assert abs(ratios[switch] - 0.3) < 0.05, (switch, ratios[switch])
        remote = np.concatenate([layer.gate_values(switch)[layer.remote_mask(switch) > 0] for layer in model.layers
                                 if hasattr(layer, "remote_mask") and layer.has_learned_gates(switch)])
        assert 0 < remote.mean() < 1, switch  # some remote gates open, some shut


@pytest.mark.parametrize("switch", SWITCHES)
@pytest.mark.parametrize("name", MODELS)
def test_float32_parity_on_random_inputs(bundles, name, switch, rng):
    model, folder, _ = bundles[name]
    x = rng.uniform(size=(3,) + _input_shape(name)).astype("float32")
    ref = ops.convert_to_numpy(model.switch_model(switch)(x))
    got = ReferenceExecutor(folder, switch).predict(x)
    assert got.shape == ref.shape
    error = float(np.abs(got - ref).max() / np.abs(ref).max())
    print(f"{name} {switch}: max|Keras - fused TFLite| / max|Keras| = {error:.2e}")
    assert error <= 1e-4


@pytest.mark.parametrize("switch", SWITCHES)
@pytest.mark.parametrize("name", MODELS)
def test_float32_parity_on_real_inputs(bundles, name, switch):
    model, folder, _ = bundles[name]
    x = _real_inputs(name, 3)
    ref = ops.convert_to_numpy(model.switch_model(switch)(x))
    got = ReferenceExecutor(folder, switch).predict(x)
    print(f"{name} {switch} real: max|Keras - fused TFLite| / max|Keras| = "
          f"{np.abs(got - ref).max() / np.abs(ref).max():.2e}")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_peer_processes_match_keras(bundles, tmp_path):
    """The runtime across real processes: each dense model on 0.5+0.3+0.2,
    device 0 in this process, devices 1 and 2 in two peer processes (dense
    partial outputs cross the wire to the fusion), against Keras and,
    bit for bit, the reference executor."""
    from paradis_runtime import connect
    from tests.paradis_runtime.peers import KEY, peers

    switch = "0.5+0.3+0.2"
    for name in MODELS:
        model, folder, _ = bundles[name]
        x = _real_inputs(name, 2)
        (tmp_path / name).mkdir()
        with peers(folder, 2, tmp_path / name) as (addresses, _):
            with connect(folder, addresses, key=KEY, switches=[switch], in_flight=2) as session:
                out = session.predict(x)
        ref = ops.convert_to_numpy(model.switch_model(switch)(x))
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(ref).max(), err_msg=name)
        assert np.array_equal(out, ReferenceExecutor(folder, switch).predict(x)), name
def _resize_and_shuffle_ops(data: bytes) -> list:
    """(name, options) of every resize and depth-to-space op in a file."""
    model = _flatbuffer.read(data)
    found = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            name = _flatbuffer._op_name(model, op)
            if name.startswith("RESIZE") or name == "DEPTH_TO_SPACE":
                found.append((name, op.builtinOptions))
    return found


@pytest.mark.parametrize("name", MODELS)
def test_builtin_ops_and_the_sampling_of_keras_resize(bundles, name):
    _, folder, _ = bundles[name]
    expected = {"wdsr_x2": {"DEPTH_TO_SPACE"}, "fcn_scenes": {"RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"},
                "centernet_scenes": {"RESIZE_NEAREST_NEIGHBOR"}}[name]
    for switch in SWITCHES:
        graph = read_graph(folder / switch / "fusion_graph.json")
        assert graph["output"]["kind"] == KINDS[name]  # the model's Task.output_kind
        assert graph["fusion"]["op"] == "sum" and len(graph["fusion"]["inputs"]) == len(graph["devices"])
        for d in graph["devices"]:
            data = (folder / switch / d["file"]).read_bytes()
            names = set(_flatbuffer.operator_names(data))
            assert not {n for n in names if "GATHER" in n or n.startswith("Flex") or n.startswith("CUSTOM")}, names
            found = _resize_and_shuffle_ops(data)
            assert {n for n, _ in found} == expected, (switch, d["device"], names)
            for op, options in found:
                if op == "DEPTH_TO_SPACE":
                    assert options.blockSize == 2
                else:  # keras.ops.image.resize's sampling (Upsample2D's docstring)
                    assert options.halfPixelCenters and not options.alignCorners, (op, vars(options))


@pytest.mark.parametrize("switch", SWITCHES)
def test_wdsr_skip_conv_runs_on_device_0_alone(bundles, switch):
    model, folder, _ = bundles["wdsr_x2"]
    part = partition(model, switch)
    device_ops = [[op for s in prog.stages for op in s.ops] for prog in part.devices]
    skip = [[op for op in ops_ if op.layer == "skip"] for ops_ in device_ops]
    # Device 0: one 5x5 conv of the whole image (1, 16, 16, 3) to 3 r^2 = 12
    # channels, with the weight-normalized layer's effective kernel.
    assert len(skip[0]) == 1 and skip[0][0].kind == "conv" and skip[0][0].inputs == [part.input_name]
    np.testing.assert_allclose(skip[0][0].params["kernel"], ops.convert_to_numpy(model.get_layer("skip").kernel))
    assert all(not s for s in skip[1:])
    # The Add of the tail's and the skip's partials: an add on device 0, the
    # tail's partial alone (an identity) on the others, whose slot is zeros.
    skip_output = next(op.output for op in part.graph.ops if op.name == "skip")
    add = next(op.name for op in part.graph.ops if op.kind == "add" and skip_output in op.inputs)
    kinds = [[op.kind for op in ops_ if op.layer == add] for ops_ in device_ops]
    assert kinds == [["add"]] + [["act"]] * (len(kinds) - 1)
    # No traffic for it: the image is everyone's, and its output stays on device 0.
    graph = read_graph(folder / switch / "fusion_graph.json")
    assert all(not s["tensor"].startswith(skip_output + "_") for s in graph["sends"])


@pytest.mark.parametrize("switch", SWITCHES)
@pytest.mark.parametrize("name", MODELS)
def test_partial_outputs_cross_once_as_accounted(bundles, name, switch):
    """Each device's (upsampled, shuffled) partial output goes to device 0
    once, exactly the fusion bytes training's accounting counts."""
    from paradis_tf import device_summary

    model, folder, _ = bundles[name]
    graph = read_graph(folder / switch / "fusion_graph.json")
    summary = device_summary(model, _input_shape(name), print_fn=None)["switches"][switch]
    fused = [s for s in graph["sends"] if s["to"]["stage"] == "fusion"]
    assert len(fused) == len(graph["devices"]) - 1
    assert all(graph["tensors"][s["tensor"]]["shape"] == graph["output"]["shape"] for s in fused)
    assert sum(s["bytes"] for s in fused) == summary["fusion_bytes"]
    # The gated sends: the accounting counts a slice once per layer that
    # reads it; the export sends it once (the backbone's stage-2 output
    # feeds both stage 3 and the merge's lateral, which may need the same
    # slice of it).
    # A slice that two devices need is one piece sent to each (one Send per receiver).
    part = partition(model, switch)
    sends = [s for s in part.sends if s.receiver_stage is not None]
    readers = {}  # (piece, receiver) -> the receiver's layers that read it
    for prog in part.devices:
        for op in (op for stage in prog.stages for op in stage.ops):
            for t in op.inputs:
                readers.setdefault((t, prog.device), set()).add(op.layer)
    nbytes = {s.tensor: 4 * int(np.prod(part.shapes[s.tensor])) for s in sends}
    assert graph["totals"]["bytes_per_inference"] - summary["fusion_bytes"] == sum(nbytes[s.tensor] for s in sends)
    assert sum(nbytes[s.tensor] * len(readers[(s.tensor, s.receiver)]) for s in sends) == summary["bytes"]


def _tiny(switches, between):
    """A SplitModel: a 3x3 stem (B, 8, 8, 12), ``between(x, switch, head)``,
    which calls the 1x1 partial-output ``head`` (-> (B, 8, 8, D, 3)) before
    or after the layer under test, then the fusion."""
    import keras

    from paradis_tf.layers import PartialSumFusion, SplitConv2D
    from paradis_tf.training import SplitModel

    stem = SplitConv2D(12, 3, switches, padding="same", replicated_input=True, name="stem")
    head = SplitConv2D(3, 1, switches, partial_outputs=True, name="head")
    fusion = PartialSumFusion(switches, name="fusion")
    inputs = keras.Input((8, 8, 3))
    outputs = {}
    for s in switches.split(","):
        x = stem(inputs, switch=s)  # (B, 8, 8, 12)
        outputs[s] = fusion(between(x, s, head), switch=s)
    return SplitModel(inputs, outputs, switches)


def test_layers_that_would_mix_devices_are_refused_naming_them(tmp_path):
    import keras

    from paradis_tf.layers import PixelShuffle, SwitchableBatchNormalization

    switches = "1x1.0,2x0.5"
    shuffle = PixelShuffle(2, switches, name="shuffle")
    # A pixel's 12 channels are on two devices: a shuffle would mix them.
    model = _tiny(switches, lambda x, s, head: head(shuffle(x, switch=s), switch=s))
    with pytest.raises(ValueError, match=r"Cannot export layer 'shuffle' \(PixelShuffle\): input t1 of shape "
                                         r"\(1, 8, 8, 12\) is channel-partitioned.*partial_outputs=True"):
        export_bundle(model, "2x0.5", tmp_path / "a", progress=None)
    assert not (tmp_path / "a").exists()
    # Batch norm of partial outputs: its offset would be added once per device's slot.
    bn = SwitchableBatchNormalization(switches, name="bn")
    model = _tiny(switches, lambda x, s, head: bn(head(x, switch=s), switch=s))
    with pytest.raises(ValueError, match=r"Cannot export layer 'bn' .*its input t2 of shape \(1, 8, 8, 2, 3\) is "
                                         r"per-device partial outputs.*before the split layer with partial_outputs"):
        export_bundle(model, "2x0.5", tmp_path / "b", progress=None)
    # A leaky ReLU of the partials.
    leaky = keras.layers.ReLU(negative_slope=0.1, name="leaky")
    model = _tiny(switches, lambda x, s, head: leaky(head(x, switch=s)))
    with pytest.raises(ValueError, match=r"'leaky' \(ReLU\): ReLU\(max_value=None, negative_slope=0.1, "
                                         r"threshold=0.0\) on partial outputs: use ReLU, ReLU6, GELU or linear"):
        export_bundle(model, "2x0.5", tmp_path / "c", progress=None)


@pytest.fixture(scope="module")
def segmenter_int8(tmp_path_factory):
    import keras
    import tensorflow as tf

    from paradis_tf.data.scenes import fashion_scenes

    keras.utils.set_random_seed(3)
    # One switch keeps training short (2x0.5 is its own teacher); learned
    # sparse gates fixed first, then a few epochs so that the logits mean
    # something (argmax agreement of an untrained model is mostly noise).
    model = build_model("fcn_scenes", switches="2x0.5", **SMALL["fcn_scenes"])
    model, _ = sparse(model, budget=0.3)
    train = fashion_scenes(512, "train", 32, item_size=(10, 18), seed=1)
    x = train.images.astype("float32") / 255.0
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(x, train.masks, batch_size=32, epochs=3, verbose=0)
    model.recalibrate_batch_norm(tf.data.Dataset.from_tensor_slices((x[:256], train.masks[:256])).batch(64),
                                 verbose=0)
    out = tmp_path_factory.mktemp("dense_int8") / "bundle"
    # Calibration: training scenes the test never scores.
    export_bundle(model, "2x0.5", out, int8=True, calibration=x[-64:], progress=None)
    return model, out


def test_int8_segmentation_agrees_with_keras_float(segmenter_int8):
    from paradis_tf.data.scenes import fashion_scenes

    model, out = segmenter_int8
    test = fashion_scenes(64, "test", 32, item_size=(10, 18), seed=0)
    x = test.images.astype("float32") / 255.0
    ref = ops.convert_to_numpy(model.switch_model("2x0.5")(x))  # (64, 32, 32, 11)
    executor = ReferenceExecutor(out, "2x0.5")
    assert executor.precision == "int8"
    assert {s["bytes"] for s in executor.graph["sends"] if s["to"]["stage"] == "fusion"} == {32 * 32 * 11}  # int8
    got = executor.predict(x)
    agreement = float(np.mean(got.argmax(-1) == ref.argmax(-1)))  # over 64 x 32 x 32 pixels
    float_acc, int8_acc = float(np.mean(ref.argmax(-1) == test.masks)), float(np.mean(got.argmax(-1) == test.masks))
    print(f"int8 pixel agreement {agreement:.4f}; pixel accuracy float {float_acc:.4f} int8 {int8_acc:.4f}")
    assert agreement >= 0.97
    assert abs(int8_acc - float_acc) <= 0.01
