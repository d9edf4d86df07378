import numpy as np
import pytest
import keras

from paradis_tf import device_summary
from paradis_tf.models import PRESETS, CifarResNet, MobileNetV1, ResNet, build_model

SMALL = {
    "resnet20": dict(input_shape=(16, 16, 1), width=0.5),
    "resnet56": dict(input_shape=(8, 8, 1), width=0.25),
    "resnet18": dict(input_shape=(32, 32, 3), width=0.125),
    "resnet50": dict(input_shape=(32, 32, 3), width=0.0625),
    "mobilenet_v1": dict(input_shape=(32, 32, 3), width=0.125),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_families_build_run_and_split_their_cost(name, rng):
    model = build_model(name, num_classes=5, switches="1x1.0,2x0.5,4x0.25", gates="shut", **SMALL[name])
    x = rng.random((2,) + SMALL[name]["input_shape"]).astype("float32")
    out = model.predict(x, verbose=0)
    assert set(out) == {"1x1.0", "2x0.5", "4x0.25"}
    assert all(v.shape == (2, 5) and np.isfinite(v).all() for v in out.values())
    summary = device_summary(model, SMALL[name]["input_shape"], print_fn=None)
    # Independent branches at 2x0.5: each device holds a quarter of every
    # channel-mixing kernel (half the inputs x half the outputs); the replicated
    # stem, depthwise layers and the head's partial logits add a little.
    for d in summary["switches"]["2x0.5"]["devices"]:
        assert 0.2 < d["params_ratio"] <= 0.4 and 0.2 < d["flops_ratio"] <= 0.4
    assert summary["switches"]["2x0.5"]["bytes"] == 0


def test_mobilenet_traffic_is_in_the_pointwise_convolutions():
    model = MobileNetV1(width=0.125, num_classes=4, input_shape=(32, 32, 3), switches="1x1.0,2x0.5")
    terms = model._plan.traffic["2x0.5"]
    assert terms and all(t.layer.name.endswith("_pw_conv") for t in terms)
    assert len(terms) == 13


def test_preset_config_round_trip_and_save_load(tmp_path, rng):
    model = build_model("resnet20", input_shape=(12, 12, 1), width=0.25, num_classes=3,
                        switches="1x1.0,0.5+0.5,1x0.5", gates={"mode": "learned", "init_logit": 1.0})
    config = model.get_config()
    clone = CifarResNet.from_config(config)
    assert clone.get_config() == config
    assert config["switches"] == ["1x1.0", "2x0.5", "1x0.5"]
    x = rng.random((3, 12, 12, 1)).astype("float32")
    model.save(tmp_path / "r20.keras")
    loaded = keras.models.load_model(tmp_path / "r20.keras")
    assert isinstance(loaded, CifarResNet)
    for name, value in model.predict(x, verbose=0).items():
        np.testing.assert_array_equal(loaded.predict(x, verbose=0)[name], value)


def test_narrow_single_device_switch_uses_fewer_channels():
    model = build_model("resnet20", input_shape=(8, 8, 1), width=0.5, switches="1x1.0,1x0.5")
    s = device_summary(model, (8, 8, 1), print_fn=None)
    half = s["switches"]["1x0.5"]["devices"][0]
    assert 0.2 < half["flops_ratio"] < 0.35  # about a quarter of the MACs


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth must be 6n \\+ 2 .* received 21"):
        CifarResNet(depth=21)
    with pytest.raises(ValueError, match=r"depth must be one of \[18, 34, 50, 101\], received 19"):
        ResNet(depth=19)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2, received 1"):
        CifarResNet(num_classes=1)
    with pytest.raises(ValueError, match="input_shape must be \\(height, width, channels\\)"):
        CifarResNet(input_shape=(32, 32))
    with pytest.raises(ValueError, match="width must be a positive number, received 0"):
        MobileNetV1(width=0)
    with pytest.raises(ValueError, match="Unknown model 'vgg16'; presets:"):
        build_model("vgg16")
    with pytest.raises(ValueError, match="too narrow for switch '4x0.25'"):
        CifarResNet(width=0.125, input_shape=(8, 8, 1), switches="1x1.0,4x0.25")  # 2 channels
    assert set(PRESETS) >= {"resnet20", "resnet56", "resnet18", "resnet50", "mobilenet_v1"}
