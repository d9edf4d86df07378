"""ViT export: attention with per-device heads and layer norm with its
statistics exchange, float32 parity with Keras through the reference
executor and real peer processes, builtin TFLite ops only."""

import numpy as np
import pytest
from keras import ops

from paradis_export import ReferenceExecutor, export_bundle, read_graph
from paradis_export import _flatbuffer
from paradis_tf.models.vit import ViT
from tests.paradis_export.helpers import check_local_parts_before_receives, check_stage_boundaries, real_images, sparse

SWITCHES = ("2x0.5", "0.5+0.3+0.2")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(11)  # module fixtures run before the per-test seed
    # 4x4 tokens of 12 channels, 4 heads of 3: 0.5+0.3+0.2 owns heads 2/1/1.
    model = ViT(patch_size=7, embed_dim=12, depth=1, num_heads=4, mlp_ratio=2.0, num_classes=10,
                input_shape=(28, 28, 1), switches="1x1.0," + ",".join(SWITCHES))
    model, ratios = sparse(model, budget=0.3)  # random logits, made binary at the budget
    folder = tmp_path_factory.mktemp("vit") / "bundle"
    export_bundle(model, ",".join(SWITCHES), folder, progress=None)
    return model, folder, ratios


def test_gates_are_genuinely_sparse(bundle):
    model, _, ratios = bundle
    layer = model.get_layer("block1_attention")
    for switch in SWITCHES:
        assert abs(ratios[switch] - 0.3) < 0.05
        open_ = layer.gate_values(switch)[layer.remote_mask(switch) > 0]
        assert 0 < open_.mean() < 1, switch  # some embedding/head channels sent, some not


@pytest.mark.parametrize("switch", SWITCHES)
def test_float32_parity_random_and_real_inputs(bundle, switch, rng):
    model, folder, _ = bundle
    executor = ReferenceExecutor(folder, switch)
    real, _ = real_images(4)
    for x in (rng.uniform(size=(4, 28, 28, 1)).astype("float32"), real):
        ref = ops.convert_to_numpy(model.switch_model(switch)(x))
        got = executor.predict(x)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("switch", SWITCHES)
def test_builtin_ops_only_and_attention_runs_in_the_files(bundle, switch):
    _, folder, _ = bundle
    graph = read_graph(folder / switch / "fusion_graph.json")
    for d in graph["devices"]:
        names = set(_flatbuffer.operator_names((folder / switch / d["file"]).read_bytes()))
        assert not {n for n in names if "GATHER" in n or n.startswith("Flex") or n.startswith("CUSTOM")}, names
        assert {"BATCH_MATMUL", "SOFTMAX", "RSQRT"} <= names, names
    assert graph["output"]["kind"] == "logits"  # the model's Task.output_kind
    assert check_stage_boundaries(graph) > 0
    assert check_local_parts_before_receives(graph) > 0


def test_each_device_computes_only_its_heads(bundle):
    model, folder, _ = bundle
    graph = read_graph(folder / "0.5+0.3+0.2" / "fusion_graph.json")
    layer = model.get_layer("block1_attention")
    heads = {name: t["shape"] for name, t in graph["tensors"].items() if "_heads_d" in name and "_to" not in name}
    # Heads 2/1/1 of 3 channels each, on the 4x4 token grid.
    assert sorted(heads.values()) == [[1, 4, 4, 3], [1, 4, 4, 3], [1, 4, 4, 6]]
    assert [len(r) for r in layer.head_ranges("0.5+0.3+0.2")] == [6, 3, 3]


@pytest.mark.parametrize("switch", SWITCHES)
def test_layer_norm_statistics_go_to_every_other_device(bundle, switch):
    _, folder, _ = bundle
    graph = read_graph(folder / switch / "fusion_graph.json")
    d = len(graph["devices"])
    stats = [s for s in graph["sends"] if "_stats_" in s["tensor"]]
    # 3 layer norms (block norm1, norm2, final), each: D x (D - 1) sends of
    # (1, 4, 4, 2) float32 (two numbers per token).
    assert len(stats) == 3 * d * (d - 1)
    assert all(graph["tensors"][s["tensor"]]["shape"] == [1, 4, 4, 2] and s["bytes"] == 16 * 2 * 4 for s in stats)
    pairs = {(s["from"]["device"], s["to"]["device"]) for s in stats}
    assert pairs == {(j, k) for j in range(d) for k in range(d) if j != k}


@pytest.mark.parametrize("switch", SWITCHES)
def test_exported_bytes_are_the_accounted_bytes(bundle, switch):
    # Training's accounting (per token: gated channels, layer-norm
    # statistics, the partial logits) and the export's sends agree exactly.
    from paradis_tf import device_summary

    model, folder, _ = bundle
    graph = read_graph(folder / switch / "fusion_graph.json")
    summary = device_summary(model, (28, 28, 1), print_fn=None)["switches"][switch]
    assert graph["totals"]["bytes_per_inference"] == summary["bytes"] + summary["fusion_bytes"]
    for d, accounted in zip(graph["devices"], summary["devices"]):
        assert d["bytes_sent"] == accounted["bytes_sent"]


def test_peer_processes_match_keras(bundle, tmp_path):
    from paradis_runtime import connect
    from tests.paradis_runtime.peers import KEY, peers

    model, folder, _ = bundle
    x, _ = real_images(8)
    with peers(folder, 2, tmp_path) as (addresses, _):
        with connect(folder, addresses, key=KEY, switches=["0.5+0.3+0.2"], in_flight=2) as session:
            out = session.predict(x)
    ref = ops.convert_to_numpy(model.switch_model("0.5+0.3+0.2")(x))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    assert np.array_equal(out, ReferenceExecutor(folder, "0.5+0.3+0.2").predict(x))


def test_int8_is_refused_with_what_to_do(bundle, tmp_path):
    model, _, _ = bundle
    message = r"int8=True: switch 2x0.5 has layers of kinds \['attention', 'layernorm'\] \(block1_norm1.*int8=False"
    with pytest.raises(ValueError, match=message):
        export_bundle(model, "2x0.5", tmp_path / "q", int8=True, calibration=real_images(4)[0], progress=None)
    assert not (tmp_path / "q").exists()
