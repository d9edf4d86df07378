"""walk_graph and layer_calls: every layer call, in graph order, nothing computed."""

import keras
import pytest

from paradis_tf.graph_walk import layer_calls, walk_graph
from paradis_tf.layers import SplitConv2D


def test_calls_in_graph_order_with_their_switch_and_input_shape():
    inputs = keras.Input((6, 6, 3))
    conv = SplitConv2D(4, 3, "1x1.0,2x0.5", padding="same", replicated_input=True, name="stem")
    x = conv(inputs, switch="2x0.5")
    out = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, out)
    nodes = len(conv._inbound_nodes)
    calls = layer_calls(model, (6, 6, 3))
    assert [(layer.name, switch, shape) for layer, switch, shape in calls] == [
        ("stem", "2x0.5", (1, 6, 6, 3)),
        ("pool", None, (1, 6, 6, 4)),
    ]
    seen = []
    spec = walk_graph(model, (6, 6, 3), lambda op, args, kwargs, out: seen.append(tuple(out.shape)))
    assert seen == [(1, 6, 6, 4), (1, 4)] and tuple(spec.shape) == (1, 4)
    assert len(conv._inbound_nodes) == nodes  # nothing added to the model


def test_bad_models_are_named():
    with pytest.raises(ValueError, match=r"Expected a functional keras.Model \(built from keras.Input\), received "
                                         r"Sequential"):
        walk_graph(keras.Sequential([keras.layers.Dense(2)]), (3,), print)
    a, b = keras.Input((2,)), keras.Input((2,))
    with pytest.raises(ValueError, match=r"Expected a model with one input, received 2"):
        walk_graph(keras.Model([a, b], keras.layers.Add()([a, b])), (2,), print)
