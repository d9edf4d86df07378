"""The per-device programs in float Keras: parity, contiguous sends, sliced
weights, and traffic that matches the training-side accounting."""

import numpy as np
import pytest
from keras import ops

from paradis_export import partition
from paradis_export._keras_stages import run_keras, stage_models
from paradis_tf.accounting import device_summary
from tests.paradis_export.helpers import SPLIT_SWITCHES, mobilenet, resnet8


@pytest.fixture(scope="module")
def models():
    return {"resnet8": resnet8(), "mobilenet_v1": mobilenet()}


@pytest.mark.parametrize("receive", ["concat", "sum"])
@pytest.mark.parametrize("switch", SPLIT_SWITCHES)
@pytest.mark.parametrize("name", ["resnet8", "mobilenet_v1"])
def test_keras_programs_equal_model(models, name, switch, receive, rng):
    model = models[name]
    part = partition(model, switch, receive=receive)
    x = rng.uniform(size=(2,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    ref = ops.convert_to_numpy(model.switch_model(switch)(x))
    got = run_keras(part, stage_models(part, batch_size=None), x)
    np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("switch", SPLIT_SWITCHES)
def test_sends_are_contiguous_slices_of_permuted_channels(models, switch):
    model = models["resnet8"]
    part = partition(model, switch)
    for t, perms in part.permutations.items():
        c = part.graph.shapes[t][-1]
        for k, (perm, r) in enumerate(zip(perms, part.switch.partition(c))):
            assert sorted(perm.tolist()) == list(r), f"{t} device {k} is not a permutation of its channels"
    assert part.sends
    for s in part.sends:
        a, b = s.channels
        assert 0 <= a < b <= part.shapes[s.source][-1]
        assert part.shapes[s.tensor][-1] == b - a
        if s.receiver_stage is not None:  # a gated send: the slice op in the sender's stage
            stage = next(st for st in part.devices[s.sender].stages if st.name == s.sender_stage)
            op = next(o for o in stage.ops if o.output == s.tensor)
            assert op.kind == "slice" and (op.params["start"], op.params["stop"]) == (a, b)


def test_permutation_makes_two_device_sends_single_slices(models):
    # With 2 devices each layer sends one set per direction: one slice per (layer, direction).
    part = partition(models["mobilenet_v1"], "2x0.5")
    gated = [s for s in part.sends if s.receiver_stage is not None]
    per_layer = {}
    for s in gated:
        key = (s.source, s.sender, s.receiver)
        per_layer[key] = per_layer.get(key, 0) + 1
    assert per_layer and max(per_layer.values()) == 1


@pytest.mark.parametrize("switch", SPLIT_SWITCHES)
@pytest.mark.parametrize("name", ["resnet8", "mobilenet_v1"])
def test_traffic_and_flops_match_accounting(models, name, switch):
    model = models[name]
    part = partition(model, switch)
    summary = device_summary(model, tuple(model.inputs[0].shape[1:]), print_fn=None)["switches"][switch]
    for prog, dev in zip(part.devices, summary["devices"]):
        sent = sum(int(np.prod(part.shapes[s.tensor])) * 4 for s in part.sends if s.sender == prog.device)
        # A piece read by two layers (a block's 3x3 and its projection) is sent once.
        assert sent <= dev["bytes_sent"]
        if name == "mobilenet_v1":
            assert sent == dev["bytes_sent"]
        assert prog.flops == dev["flops"]
        assert prog.params < dev["params"] or switch == "1x1.0"


def test_stages_cut_where_a_device_receives(models):
    part = partition(models["resnet8"], "2x0.5")
    for prog in part.devices:
        for i, stage in enumerate(prog.stages):
            received = [t for t in stage.inputs if "_to" in t]
            if i == 0:
                assert stage.inputs == [part.input_name]
            for op in stage.ops[1:]:
                assert not op.params.get("receives"), f"{stage.name} receives in its middle"
            assert all(stage.ops[0].params.get("receives") for _ in received[:1])


@pytest.mark.parametrize("receive", ["concat", "sum"])
@pytest.mark.parametrize("switch", ["2x0.5", "0.5+0.3+0.2"])
def test_local_part_of_a_receiving_layer_runs_in_the_stage_before(models, switch, receive):
    # The device multiplies its own channels while the pieces travel: the
    # receiving stage only adds the pieces' product to a partial that the
    # previous stage computed from the device's own channels.
    part = partition(models["resnet8"], switch, receive=receive)
    checked = 0
    for prog in part.devices:
        waits_in = {s.tensor: s.receiver_stage for s in part.sends if s.receiver == prog.device}
        for i, stage in enumerate(prog.stages):
            fresh = {t for t in stage.inputs if waits_in.get(t) == stage.name}
            if not fresh:
                continue
            where = f"{switch} device {prog.device} {stage.name}"
            assert i > 0, f"{where}: receives in the device's first stage"
            before = {op.output: op for op in prog.stages[i - 1].ops}
            # The remote part: linear ops on pieces (or on their concat). Follow what
            # is computed from them to the first add of it and something else: that
            # something is the local partial.
            pieces = {t: part.shapes[t][-1] for t in waits_in}  # piece -> channels
            from_pieces, remote, local = set(fresh), [], []
            for op in stage.ops:
                if op.kind == "concat" and set(op.inputs) <= set(pieces):
                    pieces[op.output] = sum(pieces[t] for t in op.inputs)
                if op.kind in ("conv", "dense") and op.inputs[0] in pieces:
                    remote.append(op)
                if not from_pieces & set(op.inputs):
                    continue
                from_pieces.add(op.output)
                if op.kind == "add" and not set(op.inputs) <= from_pieces:
                    local = [before[t] for t in op.inputs
                             if t in stage.inputs and t in before and before[t].kind in ("conv", "dense")]
                    break
            assert len(local) == 1, f"{where}: no partial from the previous stage is added to the pieces' product"
            local = local[0]
            assert remote and {op.layer for op in remote} == {local.layer}, where
            assert not set(local.inputs) & set(waits_in), f"{where}: the local part reads a piece"
            own = local.inputs[0]
            layer = next(o for o in part.graph.ops if o.name == local.layer)
            assert own == f"{layer.inputs[0]}_d{prog.device}", f"{where}: the local part reads {own}"
            rows = lambda op: op.params["kernel"].shape[-2]  # (kh, kw, rows, cols) or (rows, cols)
            assert rows(local) == part.shapes[own][-1]  # exactly its own channels
            assert all(rows(op) == pieces[op.inputs[0]] for op in remote)  # exactly the received channels
            checked += 1
    assert checked >= len(part.devices)


def test_rejects_non_split_model():
    import keras

    inputs = keras.Input((8, 8, 1))
    plain = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    with pytest.raises(ValueError, match="SplitModel"):
        partition(plain, "1x1.0")


def test_rejects_unknown_switch(models):
    with pytest.raises(ValueError, match="3x1/3"):
        partition(models["resnet8"], "3x1/3")


@pytest.mark.parametrize("receive", ["concat", "sum"])
def test_hand_built_model_with_unfolded_batch_norm_pooling_and_dense(receive, rng):
    from tests.paradis_export.helpers import custom_model

    model = custom_model()
    x = rng.uniform(size=(3, 12, 12, 2)).astype("float32")
    for switch in ("2x0.5", "0.5+0.3+0.2"):
        part = partition(model, switch, receive=receive)
        kinds = {op.kind for p in part.devices for s in p.stages for op in s.ops}
        assert {"affine", "pool", "dense", "depthwise"} <= kinds
        ref = ops.convert_to_numpy(model.switch_model(switch)(x))
        got = run_keras(part, stage_models(part, batch_size=None), x)
        np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max())


def test_unsupported_layer_is_named():
    import keras

    from paradis_tf.layers import PartialSumFusion, SplitConv2D, SplitDense
    from paradis_tf.training import SplitModel

    inputs = keras.Input((8, 8, 1))
    stem = SplitConv2D(4, 3, "2x0.5", replicated_input=True)
    head = SplitDense(3, "2x0.5", partial_outputs=True)
    x = keras.layers.LeakyReLU(name="leaky")(stem(inputs, switch="2x0.5"))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = SplitModel(inputs, {"2x0.5": PartialSumFusion("2x0.5")(head(x, switch="2x0.5"), switch="2x0.5")},
                       "2x0.5")
    with pytest.raises(ValueError, match="'leaky' \\(LeakyReLU\\)"):
        partition(model, "2x0.5")
