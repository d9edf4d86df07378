import numpy as np
import pytest
import keras

from paradis_tf.layers import PartialSumFusion


def test_sums_device_axis_and_reports_fixed_traffic(rng):
    fusion = PartialSumFusion("1x1.0,4x0.25")
    x = rng.normal(size=(2, 4, 10)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fusion(x, switch="4x0.25")), x.sum(axis=1), atol=1e-6)
    cost = fusion.switch_cost("4x0.25", (1, 4, 10), bytes_per_element=4)
    # Devices 1-3 each send 10 floats to device 0, which fuses.
    assert cost.fusion_bytes_sent == (0, 40, 40, 40)
    assert cost.fusion_bytes_received == (120, 0, 0, 0)
    assert cost.bytes_sent == (0, 0, 0, 0)


def test_wrong_device_axis_is_an_error(rng):
    fusion = PartialSumFusion("1x1.0,2x0.5,4x0.25")
    with pytest.raises(ValueError, match="switch '4x0.25' has 4 devices but the input's device axis"):
        fusion(np.zeros((2, 2, 10), "float32"), switch="4x0.25")


def test_config_round_trip():
    fusion = PartialSumFusion("1x1.0,2x0.5", name="fuse")
    clone = PartialSumFusion.from_config(fusion.get_config())
    assert clone.get_config() == fusion.get_config()
