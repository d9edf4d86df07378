import numpy as np
import pytest
import keras

from paradis_tf import device_summary
from paradis_tf.models.vit import ViT
from paradis_tf.training import GateRanking

SWITCHES = "1x1.0,2x0.5,0.5+0.3+0.2,1x0.5"
SMALL = dict(patch_size=2, embed_dim=12, depth=2, num_heads=4, mlp_ratio=2.0, num_classes=5, input_shape=(8, 8, 1))


def test_builds_on_several_switches_and_accounts_them(rng):
    model = ViT(switches=SWITCHES, gates="shut", **SMALL)
    x = rng.random((2, 8, 8, 1)).astype("float32")
    out = model.predict(x, verbose=0)
    assert set(out) == set(SWITCHES.split(","))
    assert all(v.shape == (2, 5) and np.isfinite(v).all() for v in out.values())
    s = device_summary(model, (8, 8, 1), print_fn=None)
    two = s["switches"]["2x0.5"]
    assert two["bytes"] == 0  # gates shut: independent branches
    # Only fixed traffic is left: 5 layer norms x 16 tokens x 2 statistics x
    # 4 B to the other device, and the 5 partial logits of device 1 (4 B each).
    assert two["fusion_bytes"] == 2 * 5 * 16 * 2 * 4 + 5 * 4
    assert 0.2 < two["devices"][0]["params_ratio"] < 0.4


def test_open_gates_compute_the_unsplit_model(rng):
    # All gates open is dense tensor parallelism: every multi-device switch
    # computes exactly what one device does at full width.
    model = ViT(switches="1x1.0,2x0.5,0.5+0.3+0.2", gates="open", **SMALL)
    x = rng.random((3, 8, 8, 1)).astype("float32")
    out = model.predict(x, verbose=0)
    for name in ("2x0.5", "0.5+0.3+0.2"):
        np.testing.assert_allclose(out[name], out["1x1.0"], atol=1e-4)


# The weight-norm ranking reads the attention's own kernel layout (no `kernel`).
@pytest.mark.parametrize("ranking", [GateRanking(), GateRanking(score="weight_norm")], ids=["default", "weight_norm"])
def test_one_fit_step_under_a_budget_then_finalized_gates(rng, ranking):
    model = ViT(switches="1x1.0,2x0.5", **SMALL)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), budget=0.3, gate_ranking=ranking)
    x = rng.random((8, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 5, size=(8,))
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # The attention's gates are among the switch's traffic terms.
    assert any(t.layer.name == "block1_attention" for t in model._plan.traffic["2x0.5"])
    ratio = model.finalize_gates()["2x0.5"]
    assert 0.25 <= ratio <= 0.3 + 1e-6


def test_config_round_trip_and_save_load(tmp_path, rng):
    model = ViT(switches="1x1.0,2x0.5", mlp_activation="relu", **SMALL)
    config = model.get_config()
    assert ViT.from_config(config).get_config() == config
    model.save(tmp_path / "vit.keras")
    loaded = keras.models.load_model(tmp_path / "vit.keras")
    assert isinstance(loaded, ViT)
    x = rng.random((2, 8, 8, 1)).astype("float32")
    for name, value in model.predict(x, verbose=0).items():
        np.testing.assert_array_equal(loaded.predict(x, verbose=0)[name], value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(28, 28, 1), patch_size=5), r"image size 28x28 is not divisible by patch_size=5"),
    (dict(embed_dim=14), r"embed_dim=14 is not divisible by num_heads=4"),
    (dict(num_heads=2, embed_dim=12, switches="1x1.0,4x0.25"),
     r"num_heads=2 cannot be divided among the 4 devices of switch '4x0.25'"),
    (dict(depth=0), r"depth must be a positive int, received 0"),
    (dict(mlp_activation="tanh"), r"mlp_activation must be one of \('gelu', 'relu'\), received 'tanh'"),
])
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViT(**{**SMALL, **kwargs})


def test_width_scales_whole_heads():
    # 12 channels in 4 heads of 3; width 2/3 gives heads of 2: E = 8.
    model = ViT(switches="1x1.0,2x0.5", width=2 / 3, **SMALL)
    attention = model.get_layer("block1_attention")
    assert (attention.num_heads, attention.key_dim, attention.embed_dim) == (4, 2, 8)
    assert model.get_layer("block1_mlp1").units == 16
    assert model.get_config()["width"] == 2 / 3
