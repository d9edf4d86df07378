import numpy as np
import pytest
import keras

from paradis_tf import SwitchSet, device_summary
from paradis_tf.layers import PartialSumFusion, SplitConv2D, SplitDense, SwitchableBatchNormalization

SWITCHES = "1x1.0,2x0.5"


def _small_model(switches=SWITCHES):
    """stem 3x3 (replicated 8x8x1 -> 4) -> BN -> ReLU -> 1x1 (4 -> 6) -> GAP -> head (6 -> 3) -> fusion."""
    inputs = keras.Input((8, 8, 1))
    stem = SplitConv2D(4, 3, switches, padding="same", replicated_input=True, name="stem")
    bn = SwitchableBatchNormalization(switches, name="bn")
    conv = SplitConv2D(6, 1, switches, name="conv")
    head = SplitDense(3, switches, partial_outputs=True, name="head")
    fusion = PartialSumFusion(switches, name="fusion")
    outputs = []
    for name in SwitchSet(switches).names:
        x = keras.layers.ReLU()(bn(stem(inputs, switch=name), switch=name))
        x = keras.layers.GlobalAveragePooling2D()(conv(x, switch=name))
        outputs.append(fusion(head(x, switch=name), switch=name))
    return keras.Model(inputs, outputs)


def test_small_case_matches_hand_count():
    model = _small_model()
    conv = model.get_layer("conv")
    # Device 0 owns input channels 0-1, device 1 owns 2-3. Open: 0 -> dev 1,
    # 2 -> dev 0, 3 -> dev 0; shut: 1 -> dev 1.
    pins = -np.ones((4, 2))
    pins[0, 1], pins[1, 1], pins[2, 0], pins[3, 0] = 1, 0, 1, 1
    conv.pin_gates("2x0.5", pins)
    lines = []
    s = device_summary(model, (8, 8, 1), print_fn=lines.append)
    d0, d1 = s["switches"]["2x0.5"]["devices"]
    # params: stem 9*1*2+2 = 20 each; bn 4 per channel * 2 = 8 each; conv dev0
    # reads 4 channels, dev1 3, 3 outputs each: 4*3+3 = 15, 3*3+3 = 12; head
    # 3 inputs * 3 + bias on device 0: 12, 9.
    assert (d0["params"], d1["params"]) == (55, 49)
    # FLOPs: stem 2*64*9*1*2 = 2304 each; conv 2*64*4*3 = 1536 and 2*64*3*3 =
    # 1152; head 2*3*3 = 18 each.
    assert (d0["flops"], d1["flops"]) == (3858, 3474)
    # Bytes: dev0 sends channel 0 (8*8*4 = 256 B), dev1 sends 2 and 3 (512 B)
    # plus its 3 partial logits to the fusing device 0 (12 B).
    assert (d0["bytes_sent"], d1["bytes_sent"]) == (256, 524)
    assert (d0["bytes_received"], d1["bytes_received"]) == (524, 256)
    assert (d0["dense_tp_bytes_sent"], d1["dense_tp_bytes_sent"]) == (512, 512)
    sw = s["switches"]["2x0.5"]
    assert (sw["bytes"], sw["dense_tp_bytes"], sw["fusion_bytes"]) == (768, 1024, 12)
    assert sw["comm_ratio"] == pytest.approx(0.75)
    # Unsplit: stem 9*4+4 = 40, bn 16, conv 24+6 = 30, head 18+3 = 21.
    assert s["unsplit"] == {"params": 107, "flops": 4608 + 3072 + 36}
    assert d0["params_ratio"] == pytest.approx(55 / 107)
    one = s["switches"]["1x1.0"]
    assert one["devices"][0]["params"] == 107 and one["comm_ratio"] is None
    table = "\n".join(lines)
    assert "Switch 2x0.5: traffic 768 B of 1.0 KB dense TP (ratio 0.750), fusion 12 B" in table


def test_int8_bytes_and_open_gates():
    model = _small_model()
    s = device_summary(model, (8, 8, 1), bytes_per_element=1, print_fn=None)
    # Fresh learned gates start open: dense tensor parallelism, ratio 1.
    assert s["switches"]["2x0.5"]["comm_ratio"] == 1.0
    assert s["switches"]["2x0.5"]["bytes"] == 2 * 2 * 64


def test_per_switch_plain_model_and_other_input_size():
    model = _small_model()
    conv_model = keras.Model(model.input, model.outputs[1])  # the 2x0.5 branch alone
    s = device_summary(conv_model, (16, 16, 1), print_fn=None)
    assert list(s["switches"]) == ["2x0.5"]
    assert s["switches"]["2x0.5"]["bytes"] == 2 * 2 * 256 * 4


def test_errors():
    inputs = keras.Input((4, 4, 2))
    stock = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    with pytest.raises(ValueError, match=r"Layer '.*' \(Conv2D\) has weights but is not a paradis_tf split layer"):
        device_summary(stock, (4, 4, 2))
    with pytest.raises(ValueError, match="bytes_per_element must be a positive int, received 0"):
        device_summary(_small_model(), (8, 8, 1), bytes_per_element=0)
    plain = keras.Model(inputs, keras.layers.ReLU()(inputs))
    with pytest.raises(ValueError, match="has no paradis_tf split layer"):
        device_summary(plain, (4, 4, 2))


def test_small_model_save_load_round_trip(tmp_path, rng):
    model = _small_model("1x1.0,2x0.5,4x0.25")
    x = rng.normal(size=(8, 8, 8, 1)).astype("float32")
    model.compile(optimizer="adam", loss=["mse"] * 3)
    model.fit(x, [rng.normal(size=(8, 3)).astype("float32")] * 3, epochs=2, verbose=0)
    model.get_layer("conv").pin_gates("4x0.25", (rng.random((4, 4)) < 0.5).astype("float32"))
    model.save(tmp_path / "small.keras")
    loaded = keras.models.load_model(tmp_path / "small.keras")
    for a, b in zip(model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)
    a = device_summary(model, (8, 8, 1), print_fn=None)
    b = device_summary(loaded, (8, 8, 1), print_fn=None)
    assert a == b
