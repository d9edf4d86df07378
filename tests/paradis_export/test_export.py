"""TFLite export, proven by the reference executor: float32 parity with the
Keras model, builtin ops only, really sliced files, and clear errors."""

import json
import shutil

import numpy as np
import pytest
from keras import ops

from paradis_export import FusionGraphError, ReferenceExecutor, export_bundle, read_graph
from paradis_export import _flatbuffer
from paradis_runtime.fusion_graph import SCHEMA_PATH, load_schema
from tests.paradis_export.helpers import (SPLIT_SWITCHES, check_local_parts_before_receives,
                                          check_stage_boundaries, mobilenet, real_images, resnet8)

ALL = ("1x1.0",) + SPLIT_SWITCHES


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for name, build, size in (("resnet8", resnet8, 28), ("mobilenet_v1", mobilenet, 32)):
        model = build()
        export_bundle(model, ",".join(ALL), root / name, progress=None)
        out[name] = (model, root / name, size)
    return out


@pytest.mark.parametrize("switch", ALL)
@pytest.mark.parametrize("name", ["resnet8", "mobilenet_v1"])
def test_float32_parity_random_and_real_inputs(bundles, name, switch, rng):
    model, folder, size = bundles[name]
    executor = ReferenceExecutor(folder, switch)
    real, _ = real_images(4, size)
    for x in (rng.uniform(size=(4, size, size, 1)).astype("float32"), real):
        ref = ops.convert_to_numpy(model.switch_model(switch)(x))
        got = executor.predict(x)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_executor_trace_accounts_every_stage_and_byte(bundles):
    _, folder, size = bundles["resnet8"]
    executor = ReferenceExecutor(folder, "4x0.25")
    graph = executor.graph
    _, trace = executor.run(np.zeros((1, size, size, 1), "float32"))
    assert len(trace) == sum(len(d["stages"]) for d in graph["devices"])
    assert all(e["seconds"] > 0 for e in trace)
    assert sum(e["bytes_sent"] for e in trace) == graph["totals"]["bytes_per_inference"]
    for d in graph["devices"]:
        got = sum(e["bytes_received"] for e in trace if e["device"] == d["device"])
        # The fusion device also receives the partial outputs, outside any stage.
        partials = sum(s["bytes"] for s in graph["sends"] if s["to"]["stage"] == "fusion"
                       and s["to"]["device"] == d["device"])
        assert got + partials == d["bytes_received"]


@pytest.mark.parametrize("name", ["resnet8", "mobilenet_v1"])
def test_only_builtin_ops_no_gather_no_flex(bundles, name):
    from ai_edge_litert.interpreter import Interpreter

    _, folder, _ = bundles[name]
    files = sorted(folder.glob("*/*.tflite"))
    assert len(files) == 1 + 2 + 4 + 3
    for f in files:
        # The interpreter's own operator list, independent of the writer's check.
        interpreter = Interpreter(model_path=str(f))
        names = {op["op_name"] for op in interpreter._get_ops_details()}
        assert names, f
        assert not {n for n in names if "GATHER" in n or n.startswith("Flex") or n == "CUSTOM"}, (f, names)
        assert "CONV_2D" in names


@pytest.mark.parametrize("name", ["resnet8", "mobilenet_v1"])
def test_parameters_in_each_file_match_the_graph(bundles, name):
    _, folder, _ = bundles[name]
    for switch in ALL:
        graph = read_graph(folder / switch / "fusion_graph.json")
        unsplit = read_graph(folder / "1x1.0" / "fusion_graph.json")["devices"][0]["params"]
        for d in graph["devices"]:
            data = (folder / switch / d["file"]).read_bytes()
            assert _flatbuffer.count_params(data) == d["params"], (switch, d["device"])
            if switch != "1x1.0":
                assert d["params"] < unsplit


@pytest.mark.parametrize("name", ["resnet8", "mobilenet_v1"])
def test_local_parts_run_before_receives_and_stages_part_only_to_send_or_receive(bundles, name):
    _, folder, _ = bundles[name]
    for switch in SPLIT_SWITCHES:
        graph = read_graph(folder / switch / "fusion_graph.json")
        assert check_local_parts_before_receives(graph) > 0, switch
        assert check_stage_boundaries(graph) > 0, switch


def test_two_device_files_at_budget_0_2_are_at_most_0_6_of_unsplit(tmp_path):
    model = resnet8(width=0.5, switches="1x1.0,2x0.5")
    assert abs(model.traffic_ratio("2x0.5") - 0.2) < 0.01
    export_bundle(model, "1x1.0,2x0.5", tmp_path / "b", progress=None)
    unsplit = read_graph(tmp_path / "b" / "1x1.0" / "fusion_graph.json")["devices"][0]["file_bytes"]
    graph = read_graph(tmp_path / "b" / "2x0.5" / "fusion_graph.json")
    for d in graph["devices"]:
        assert (tmp_path / "b" / "2x0.5" / d["file"]).stat().st_size == d["file_bytes"]
        assert d["file_bytes"] <= 0.6 * unsplit, (d["device"], d["file_bytes"] / unsplit)


def test_manifest_orders_fallback_by_devices(bundles):
    _, folder, _ = bundles["resnet8"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["fallback"][0] == "4x0.25" and manifest["fallback"][-1] == "1x1.0"
    assert {e["name"] for e in manifest["switches"]} == set(ALL)
    # Default switch of a bundle: the one with most devices; fewer devices fall back.
    assert ReferenceExecutor(folder).graph["switch"] == "4x0.25"
    assert ReferenceExecutor(folder, max_devices=3).graph["switch"] == "0.5+0.3+0.2"
    assert ReferenceExecutor(folder, max_devices=2).graph["switch"] == "2x0.5"
    assert ReferenceExecutor(folder, max_devices=1).graph["switch"] == "1x1.0"
    with pytest.raises(ValueError, match="max_devices must be a positive int, received 0"):
        ReferenceExecutor(folder, max_devices=0)


def test_schema_is_valid_and_installed_with_the_package():
    import jsonschema
    from pathlib import Path

    jsonschema.Draft202012Validator.check_schema(load_schema())
    repo_schema = Path(__file__).resolve().parents[2] / "export" / "fusion_graph.schema.json"
    assert SCHEMA_PATH.read_bytes() == repo_schema.read_bytes()


# -- bad input -----------------------------------------------------------------


@pytest.fixture
def copy(bundles, tmp_path):
    _, folder, _ = bundles["resnet8"]
    dst = tmp_path / "bundle"
    shutil.copytree(folder, dst)
    return dst


def _edit(path, fn):
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("edit, field", [
    (lambda g: g.update(precision="fp16"), "precision"),
    (lambda g: g["devices"][1].update(sha256="xyz"), "devices[1].sha256"),
    (lambda g: g["sends"][0].update(channels=[0]), "sends[0].channels"),
    (lambda g: g["devices"][0]["stages"][1]["inputs"].append("t9999"), "devices[0].stages[1]"),
    (lambda g: g.pop("fusion"), "(root)"),
])
def test_graph_failing_its_schema_names_file_and_field(copy, edit, field):
    path = copy / "2x0.5" / "fusion_graph.json"
    _edit(path, edit)
    with pytest.raises(FusionGraphError) as e:
        ReferenceExecutor(copy, "2x0.5")
    assert str(path) in str(e.value) and field in str(e.value)


def test_changed_device_file_fails_its_sha256(copy):
    f = copy / "2x0.5" / "device1.tflite"
    f.write_bytes(f.read_bytes() + b"\0")
    with pytest.raises(FusionGraphError, match=r"devices\[1\]\.sha256.*device1\.tflite"):
        ReferenceExecutor(copy, "2x0.5")


def test_missing_device_file(copy):
    (copy / "2x0.5" / "device0.tflite").unlink()
    with pytest.raises(FusionGraphError, match=r"devices\[0\]\.file.*device0\.tflite is missing"):
        ReferenceExecutor(copy, "2x0.5")


def test_unknown_switch_and_bad_manifest(copy):
    with pytest.raises(FusionGraphError, match="no switch '3x1/3'"):
        ReferenceExecutor(copy, "3x1/3")

    def drop_single(m):
        m["switches"] = [e for e in m["switches"] if e["name"] != "1x1.0"]
        m["fallback"].remove("1x1.0")

    _edit(copy / "manifest.json", drop_single)
    with pytest.raises(FusionGraphError, match="no switch runs on max_devices=1.*needs 2 at least"):
        ReferenceExecutor(copy, max_devices=1)
    _edit(copy / "manifest.json", lambda m: m["switches"][0].update(graph="../../etc/passwd"))
    with pytest.raises(FusionGraphError, match=r"switches\[0\]\.graph"):
        ReferenceExecutor(copy, "2x0.5")


def test_input_of_wrong_shape_or_dtype(bundles):
    _, folder, size = bundles["resnet8"]
    executor = ReferenceExecutor(folder, "2x0.5")
    with pytest.raises(ValueError, match=r"fusion_graph\.json: field 'input\.shape'.*\[1, 27, 28, 1\]"):
        executor.run(np.zeros((1, 27, size, 1), "float32"))
    with pytest.raises(ValueError, match=r"field 'input\.dtype'.*uint8"):
        executor.run(np.zeros((1, size, size, 1), "uint8"))
    out, _ = executor.run(np.zeros((size, size, 1), "float32"))  # batch axis optional
    assert out.shape == (1, 10)


def test_failed_export_leaves_no_partial_bundle(tmp_path, monkeypatch):
    import paradis_export.bundle as bundle

    model = resnet8(switches="1x1.0,2x0.5")
    real = bundle.export_switch
    calls = []

    def failing(model, name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("converter crashed")
        return real(model, name, *args, **kwargs)

    monkeypatch.setattr(bundle, "export_switch", failing)
    with pytest.raises(RuntimeError, match="converter crashed"):
        export_bundle(model, "1x1.0,2x0.5", tmp_path / "out", progress=None)
    assert calls == ["1x1.0", "2x0.5"]
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_needs_overwrite(tmp_path):
    model = resnet8(switches="1x1.0,2x0.5")
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_bundle(model, "1x1.0", tmp_path / "out", progress=None)
    export_bundle(model, "1x1.0", tmp_path / "out", overwrite=True, progress=None)  # an empty folder
    export_bundle(model, "2x0.5", tmp_path / "out", overwrite=True, progress=None)  # an earlier bundle
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["2x0.5", "manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_never_replaces_a_folder_that_is_not_a_bundle(tmp_path, monkeypatch):
    # "--out runs/r20" for "--out runs/r20/bundle": the training run must survive.
    model = resnet8(switches="1x1.0,2x0.5")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_text("weights")
    with pytest.raises(ValueError, match=r"out: .*run is not a bundle \(no manifest.json; it holds model.keras\)"):
        export_bundle(model, "1x1.0", run, overwrite=True, progress=None)
    assert sorted(p.name for p in run.iterdir()) == ["model.keras"]
    monkeypatch.chdir(tmp_path / "run")
    (run / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="current folder"):
        export_bundle(model, "1x1.0", ".", overwrite=True, progress=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_model_whose_gates_are_not_finalized_exports_with_a_warning(tmp_path):
    import warnings

    from paradis_tf.models import CifarResNet

    model = CifarResNet(depth=8, width=0.25, num_classes=10, input_shape=(28, 28, 1), switches="1x1.0,2x0.5")
    assert model.unfinalized_switches() == ("2x0.5",)
    with pytest.warns(UserWarning, match=r"switch\(es\) 2x0.5: the learned gates are not finalized"):
        export_bundle(model, "2x0.5", tmp_path / "a", progress=None)
    model.finalize_gates(budget=0.2)
    assert model.unfinalized_switches() == ()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        export_bundle(model, "2x0.5", tmp_path / "b", progress=None)
    with pytest.warns(UserWarning, match="calibration is for int8=True"):
        export_bundle(model, "2x0.5", tmp_path / "c", calibration=np.zeros((4, 28, 28, 1), "float32"),
                      progress=None)


def test_bad_switch_names_the_argument(tmp_path):
    model = resnet8(switches="1x1.0,2x0.5")
    with pytest.raises(ValueError, match="switches: .*4x0.25"):
        export_bundle(model, "4x0.25", tmp_path / "out", progress=None)
    with pytest.raises(ValueError, match="int8=True needs calibration"):
        export_bundle(model, "2x0.5", tmp_path / "out", int8=True, progress=None)
    assert not (tmp_path / "out").exists()


def test_hand_built_model_float32_and_int8(tmp_path, rng):
    from tests.paradis_export.helpers import custom_model

    model = custom_model()
    x = rng.uniform(size=(4, 12, 12, 2)).astype("float32")
    export_bundle(model, "2x0.5,0.5+0.3+0.2", tmp_path / "f", progress=None)
    export_bundle(model, "2x0.5", tmp_path / "q", int8=True, calibration=rng.uniform(size=(64, 12, 12, 2)),
                  progress=None)
    for switch in ("2x0.5", "0.5+0.3+0.2"):
        ref = ops.convert_to_numpy(model.switch_model(switch)(x))
        got = ReferenceExecutor(tmp_path / "f", switch).predict(x)
        np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max())
    ref = ops.convert_to_numpy(model.switch_model("2x0.5")(x))
    got = ReferenceExecutor(tmp_path / "q", "2x0.5").predict(x)
    # int8 of an untrained toy: close in scale, not bit-exact.
    assert np.abs(got - ref).max() <= 0.1 * np.abs(ref).max()


def test_switch_with_a_slash_gets_its_own_folder(tmp_path, rng):
    from tests.paradis_export.helpers import custom_model

    model = custom_model("1x1.0,3x1/3")
    manifest = export_bundle(model, "3x1/3", tmp_path / "b", progress=None)
    assert manifest["switches"][0]["graph"] == "3x1_3/fusion_graph.json"
    x = rng.uniform(size=(2, 12, 12, 2)).astype("float32")
    ref = ops.convert_to_numpy(model.switch_model("3x1/3")(x))
    got = ReferenceExecutor(tmp_path / "b", "3x1/3").predict(x)
    np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max())


def test_output_kind_is_the_models_task(tmp_path):
    import keras

    from paradis_tf.layers import PartialSumFusion, SplitConv2D
    from paradis_tf.training import SplitModel
    from paradis_tf.training.task import Task

    switches = "1x1.0,2x0.5"
    stem = SplitConv2D(4, 3, switches, padding="same", replicated_input=True, name="stem")
    out = SplitConv2D(1, 3, switches, padding="same", partial_outputs=True, name="out")
    fusion = PartialSumFusion(switches, name="fusion")
    inputs = keras.Input((6, 6, 1))
    outputs = {s: fusion(out(keras.layers.ReLU()(stem(inputs, switch=s)), switch=s), switch=s)
               for s in switches.split(",")}
    task = Task("sr", "image", keras.losses.MeanAbsoluteError(), distillation="mse")
    model = SplitModel(inputs, outputs, switches, task=task)
    export_bundle(model, "2x0.5", tmp_path / "b", progress=None)
    graph = read_graph(tmp_path / "b" / "2x0.5" / "fusion_graph.json")
    assert graph["output"]["kind"] == "image"
