"""walk_graph: every layer call of a functional model, walked with symbolic
specs (nothing computed). Training's traffic plan, the accounting and the
exporter's trace all read a model through it."""

from __future__ import annotations

from typing import Callable, Sequence

import keras

__all__ = ["layer_calls", "walk_graph"]


def walk_graph(model: keras.Model, input_shape: Sequence[int], visit: Callable) -> object:
    """Walks a functional model's graph with symbolic specs, batch 1.

    ``visit(layer, args, kwargs, output_spec)`` sees every layer call (nested
    functional models are walked through); returns the model's output spec.
    Nothing is computed and the model gains no new nodes.

    Args:
        model: a functional ``keras.Model`` with one input.
        input_shape: the input's shape without the batch axis, fully known.
        visit: called once per layer call, in graph order.
    """
    if not hasattr(model, "_run_through_graph"):
        raise ValueError(
            f"Expected a functional keras.Model (built from keras.Input), "
            f"received {type(model).__name__}."
        )
    if len(model.inputs) != 1:
        raise ValueError(
            f"Expected a model with one input, received {len(model.inputs)}."
        )

    def operation_fn(op):
        def run(*args, **kwargs):
            if hasattr(op, "_run_through_graph") and isinstance(op, keras.Model):
                return op._run_through_graph(args[0], operation_fn=operation_fn)
            out = op.compute_output_spec(*args, **kwargs)
            visit(op, args, kwargs, out)
            return out

        return run

    spec = keras.KerasTensor((1,) + tuple(int(s) for s in input_shape), dtype=model.inputs[0].dtype)
    return model._run_through_graph([spec], operation_fn=operation_fn)


def layer_calls(model: keras.Model, input_shape: Sequence[int]) -> list:
    """``(layer, switch, input shape)`` of every layer call, for a batch-1
    input; ``switch`` is the call's ``switch=`` argument (None if it has none)."""
    records = []

    def visit(op, args, kwargs, out):
        if isinstance(op, keras.layers.Layer) and args:
            first = keras.tree.flatten(args[0])[0]
            records.append((op, kwargs.get("switch"), tuple(first.shape)))

    walk_graph(model, input_shape, visit)
    return records
