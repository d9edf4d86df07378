"""Keras' own layer harness (keras.src.testing.TestCase.run_layer_test) on
every public layer of paradis_tf.layers, and symbolic shape inference.

The harness checks, per layer: get_config/from_config and
serialize/deserialize round trips, build() on the input shape creates the
same weights as an eager call, a symbolic call on a KerasTensor (with the
expected output shape and dtype), an eager call, one compiled fit step, and
under the mixed_float16 policy that ``compute_output_spec`` (called WITHOUT
call arguments) gives the eager output's dtype and that weights stay float32.

One check is disabled for every layer, for one reason: the switch is a
required call argument. The harness's fit step wraps the layer in a model
whose call() is ``self.layer(x, training=training)``, with no way to pass
``call_kwargs``, so the layer can only raise "switch must be given". The same
step (same loss, jit_compile="auto") is run here with the switch instead
(``_keras_training_step``).
"""

import inspect

import numpy as np
import pytest
import keras
from keras.src.testing import TestCase

import paradis_tf.layers
from paradis_tf.layers import (
    FirstDeviceConv2D,
    PartialSumFusion,
    PixelShuffle,
    SplitConv2D,
    SplitDense,
    SplitDepthwiseConv2D,
    SplitLayerNormalization,
    SplitMultiHeadAttention,
    SwitchableBatchNormalization,
    Upsample2D,
    WeightNormSplitConv2D,
)

SWITCHES = "1x1.0,2x0.5,0.5+0.3+0.2,1x0.5"
UNEQUAL = "0.5+0.3+0.2"  # D = 3, channel slices that do not divide evenly


class _Harness(TestCase):
    """Keras' TestCase driven from pytest functions (for parametrize)."""

    __test__ = False  # a helper, not a unittest test case for pytest to collect

    def runTest(self):  # unittest needs a method to name; never run
        pass


@pytest.fixture
def keras_harness():
    filtering = keras.config.is_traceback_filtering_enabled()
    harness = _Harness()
    # keras.backend.clear_session(), as before every keras test; it also turns
    # keras' traceback filtering off, a global put back below for later tests.
    harness.setUp()
    yield harness
    if filtering:
        keras.config.enable_traceback_filtering()


# (layer class, init kwargs, input shape, switch, expected output shape).
# Shapes: B=2, H=W=7, C=6 (6 channels split 3/2/1 in 0.5+0.3+0.2, 3/3 in 2x0.5),
# shared where possible: on JAX every new op shape costs an eager compile.
CASES = {
    "conv_same": (SplitConv2D, dict(filters=4, kernel_size=3, padding="same"), (2, 7, 7, 6), UNEQUAL, (2, 7, 7, 4)),
    "conv_valid_strided": (
        SplitConv2D, dict(filters=4, kernel_size=3, strides=2, gates="shut"), (2, 7, 7, 6), "2x0.5", (2, 3, 3, 4),
    ),
    "conv_dilated_open": (
        SplitConv2D, dict(filters=4, kernel_size=3, dilation_rate=2, padding="same", gates="open", activation="relu"),
        (2, 7, 7, 6), UNEQUAL, (2, 7, 7, 4),
    ),
    "conv_replicated_input": (
        SplitConv2D, dict(filters=4, kernel_size=3, strides=2, padding="same", replicated_input=True),
        (2, 7, 7, 6), "2x0.5", (2, 4, 4, 4),
    ),
    # partial_outputs adds the device axis: D=3 for 0.5+0.3+0.2.
    "conv_partial_outputs": (
        SplitConv2D, dict(filters=4, kernel_size=3, partial_outputs=True), (2, 7, 7, 6), UNEQUAL, (2, 5, 5, 3, 4),
    ),
    "dense": (SplitDense, dict(units=5), (2, 6), UNEQUAL, (2, 5)),
    "dense_tokens_narrow": (SplitDense, dict(units=5, use_bias=False), (2, 3, 6), "1x0.5", (2, 3, 5)),
    "dense_partial_outputs": (SplitDense, dict(units=5, partial_outputs=True), (2, 6), "2x0.5", (2, 2, 5)),
    "depthwise_same": (SplitDepthwiseConv2D, dict(kernel_size=3, padding="same"), (2, 7, 7, 6), UNEQUAL, (2, 7, 7, 6)),
    "depthwise_valid_strided": (
        SplitDepthwiseConv2D, dict(kernel_size=3, strides=2), (2, 7, 7, 6), "1x0.5", (2, 3, 3, 6),
    ),
    "batch_norm": (SwitchableBatchNormalization, dict(), (2, 5, 6), UNEQUAL, (2, 5, 6)),
    "batch_norm_affine_off": (SwitchableBatchNormalization, dict(center=False, scale=False), (2, 6), "2x0.5", (2, 6)),
    "partial_sum_fusion": (PartialSumFusion, dict(), (2, 3, 4), UNEQUAL, (2, 4)),
    # Attention: 4 heads so that each device of 0.5+0.3+0.2 owns whole ones (2/1/1);
    # tokens (B, T, E) = (2, 5, 6).
    "multi_head_attention": (SplitMultiHeadAttention, dict(num_heads=4, key_dim=2), (2, 5, 6), UNEQUAL, (2, 5, 6)),
    "multi_head_attention_grid_open": (
        SplitMultiHeadAttention, dict(num_heads=4, key_dim=2, gates="open"), (2, 3, 3, 6), "2x0.5", (2, 3, 3, 6),
    ),
    "layer_norm": (SplitLayerNormalization, dict(), (2, 5, 6), UNEQUAL, (2, 5, 6)),
    "layer_norm_narrow": (SplitLayerNormalization, dict(center=False), (2, 6), "1x0.5", (2, 6)),
    # Dense heads: weight-normalized split conv, the first-device skip conv in
    # the partial-output layout (B, H, W, D, C), pixel shuffle (C / r^2) and
    # upsampling on plain and partial tensors.
    "weight_norm_conv": (WeightNormSplitConv2D, dict(filters=4, kernel_size=3, padding="same"), (2, 7, 7, 6), UNEQUAL,
                         (2, 7, 7, 4)),
    "first_device_conv": (FirstDeviceConv2D, dict(filters=4, kernel_size=3), (2, 7, 7, 6), UNEQUAL, (2, 7, 7, 3, 4)),
    "first_device_conv_weight_norm": (
        FirstDeviceConv2D, dict(filters=4, kernel_size=3, weight_norm=True), (2, 7, 7, 6), "2x0.5", (2, 7, 7, 2, 4),
    ),
    "pixel_shuffle": (PixelShuffle, dict(scale=2), (2, 3, 3, 8), "1x1.0", (2, 6, 6, 2)),
    "pixel_shuffle_partial": (PixelShuffle, dict(scale=2), (2, 3, 3, 3, 8), UNEQUAL, (2, 6, 6, 3, 2)),
    "upsample_bilinear": (Upsample2D, dict(size=2), (2, 4, 4, 6), UNEQUAL, (2, 8, 8, 6)),
    "upsample_nearest_partial": (
        Upsample2D, dict(size=(2, 3), interpolation="nearest"), (2, 3, 3, 2, 4), "2x0.5", (2, 6, 9, 2, 4),
    ),
}

# The public names of paradis_tf.layers that are abstract bases: no call() of
# their own (SwitchedLayer) or no kernel geometry (SplitLinearLayer), so no
# instance to run a harness on. Their mechanics run in every case above.
ABSTRACT_BASES = {"SwitchedLayer", "SplitLinearLayer"}


def test_every_public_layer_has_a_harness_case():
    public_layers = {
        name
        for name in paradis_tf.layers.__all__
        if inspect.isclass(obj := getattr(paradis_tf.layers, name)) and issubclass(obj, keras.layers.Layer)
    }
    covered = {case[0].__name__ for case in CASES.values()}
    assert public_layers - ABSTRACT_BASES == covered, "add a CASES entry for every new layer"


@pytest.mark.parametrize("case", sorted(CASES))
def test_keras_run_layer_test(case, keras_harness, rng):
    layer_cls, init_kwargs, input_shape, switch, expected_shape = CASES[case]
    keras_harness.run_layer_test(
        layer_cls,
        init_kwargs={"switches": SWITCHES, **init_kwargs},
        # NumPy data rather than input_shape: the harness would draw it with
        # keras.random, which JAX compiles once per shape (about a second).
        input_data=rng.normal(size=input_shape).astype("float32"),
        call_kwargs={"switch": switch},
        expected_output_shape=expected_shape,
        expected_output_dtype="float32",
        # Disabled: the harness's fit-step model calls the layer without
        # call_kwargs, so without the switch it requires (see module docstring;
        # test_keras_training_step_with_the_switch runs the same step).
        run_training_check=False,
    )


def _keras_training_step(layer, x, switch):
    """The fit step of run_layer_test, with the switch passed to the layer."""

    class TestModel(keras.Model):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def call(self, x, training=False):
            return self.layer(x, switch=switch, training=training)

    class SumLoss(keras.losses.Loss):
        def __call__(self, y_true, y_pred, sample_weight=None):
            return keras.ops.sum(y_pred)

    model = TestModel(layer)
    y = layer(x, switch=switch)
    model.compile(optimizer="sgd", loss=SumLoss(), jit_compile="auto")
    before = [np.array(w) for w in layer.trainable_weights]
    history = model.fit(x, y, batch_size=x.shape[0], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    return before


# The loss reads one switch, so the other switches' gates and batch-norm
# affines get no gradient: keras warns, rightly, and that is expected here.
@pytest.mark.filterwarnings("ignore:Gradients do not exist")
@pytest.mark.parametrize("case", ["conv_same", "dense_partial_outputs", "depthwise_same", "batch_norm"])
def test_keras_training_step_with_the_switch(case, rng):
    layer_cls, init_kwargs, input_shape, switch, _ = CASES[case]
    layer = layer_cls(switches=SWITCHES, **init_kwargs)
    x = rng.normal(size=input_shape).astype("float32")
    before = _keras_training_step(layer, x, switch)
    after = [np.array(w) for w in layer.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after)), "the fit step changed no weight"


# -- symbolic shape inference --------------------------------------------------

SHAPE_SWITCHES = ["1x1.0", "2x0.5", UNEQUAL, "1x0.5"]
GEOMETRIES = [
    dict(strides=1, padding="same"),
    dict(strides=2, padding="same"),
    dict(strides=2, padding="valid"),
    dict(strides=1, padding="valid", dilation_rate=2),
]


def _shape_cases():
    # Gates never change a shape; shut gates are static masks, which keeps
    # JAX's eager compiles few (learned gates run in the harness cases above).
    # Kernels are (3, 3, 6, 4) as in CASES: JAX compiles a random initializer
    # once per kernel shape (seconds for a 4D one on CPU).
    for geometry in GEOMETRIES:
        yield SplitConv2D, dict(filters=4, kernel_size=3, gates="shut", **geometry), (9, 8, 6)
        yield SplitDepthwiseConv2D, dict(kernel_size=3, **geometry), (9, 8, 6)
    yield (
        SplitConv2D,
        dict(filters=4, kernel_size=3, strides=(2, 1), padding="same", gates="shut", partial_outputs=True),
        (9, 8, 6),
    )
    yield SplitDense, dict(units=5, gates="shut"), (6,)
    yield SplitDense, dict(units=5, gates="shut"), (4, 6)
    yield SplitDense, dict(units=5, partial_outputs=True), (4, 6)
    yield SwitchableBatchNormalization, dict(), (9, 8, 6)


SHAPE_CASES = list(_shape_cases())


@pytest.mark.parametrize(
    "layer_cls, init_kwargs, input_shape",
    SHAPE_CASES,
    ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(SHAPE_CASES)],
)
def test_symbolic_shape_equals_eager_shape(layer_cls, init_kwargs, input_shape, rng):
    layer = layer_cls(switches=SWITCHES, **init_kwargs)
    x = rng.normal(size=(2,) + input_shape).astype("float32")
    inputs = keras.Input(input_shape)
    for switch in SHAPE_SWITCHES:
        eager = tuple(layer(x, switch=switch).shape)
        symbolic = layer(inputs, switch=switch)  # keras.Input through the layer
        assert tuple(symbolic.shape) == (None,) + eager[1:], switch
        assert tuple(layer.compute_output_shape(x.shape, switch=switch)) == eager, switch
        spec = layer.compute_output_spec(keras.KerasTensor(x.shape), switch=switch)
        assert tuple(spec.shape) == eager and spec.dtype == "float32", switch
    if not init_kwargs.get("partial_outputs"):
        # Without a switch too: the shape does not depend on it.
        assert tuple(layer.compute_output_shape(x.shape)) == eager


def test_unknown_spatial_axes_stay_unknown():
    conv = SplitConv2D(4, 3, SWITCHES, strides=2, padding="same")
    assert conv(keras.Input((None, None, 6)), switch=UNEQUAL).shape == (None, None, None, 4)
    depthwise = SplitDepthwiseConv2D(3, SWITCHES, padding="valid")
    assert depthwise.compute_output_shape((None, None, 9, 6)) == (None, None, 7, 6)


def test_partial_outputs_device_axis_without_a_switch():
    # D is known when every switch of the set has the same device count ...
    same_d = SplitDense(5, "2x0.5,0.7+0.3", partial_outputs=True)
    assert same_d.compute_output_shape((2, 6)) == (2, 2, 5)
    # ... and unknown (None) when they differ, until the switch is given.
    dense = SplitDense(5, SWITCHES, partial_outputs=True)
    assert dense.compute_output_shape((2, 6)) == (2, None, 5)
    assert dense.compute_output_spec(keras.KerasTensor((2, 6))).shape == (2, None, 5)
    assert dense.compute_output_shape((2, 6), switch=UNEQUAL) == (2, 3, 5)
    fusion = PartialSumFusion(SWITCHES)
    assert fusion.compute_output_shape((2, None, 5)) == (2, 5)
    assert fusion.compute_output_shape((2, 3, 5), switch=UNEQUAL) == (2, 5)


def test_shape_inference_errors_name_what_to_fix():
    conv = SplitConv2D(5, 3, SWITCHES)
    with pytest.raises(ValueError, match=r"input shape \(2, 2, 9, 6\) is smaller than the window"):
        conv.compute_output_shape((2, 2, 9, 6))
    with pytest.raises(ValueError, match=r"expects inputs \(B, H, W, C\), received input shape \(2, 9, 6\)"):
        conv.compute_output_shape((2, 9, 6))
    with pytest.raises(ValueError, match="Unknown switch '3x0.3'"):
        conv.compute_output_shape((2, 9, 9, 6), switch="3x0.3")
    with pytest.raises(ValueError, match=r"switch '2x0.5' has 2 devices but the input's device axis \(-2\) has 3"):
        PartialSumFusion(SWITCHES).compute_output_shape((2, 3, 5), switch="2x0.5")
    # A symbolic call records a node that will run call() later: without a
    # switch it fails now, with the switch's own message.
    with pytest.raises(ValueError, match="switch must be given explicitly"):
        SplitDense(5, SWITCHES)(keras.Input((6,)))
