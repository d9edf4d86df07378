"""A Sandwich window's train step on JAX: the optimizer skips what the loss never reached.

A Sandwich window runs some switches only; the switch-private weights of
the others (their batch-norm scale and offset, the gate logits of a switch
without a byte budget) take no part in that step's loss. On TensorFlow
their gradient is ``None`` and Keras' optimizer leaves them and their
moments alone. JAX differentiates every trainable variable and hands those
weights a zero gradient, which an optimizer with moments (Adam) still turns
into a step: a middle switch run one step in three drifted by its stale
moments in the two steps between. Before this module, a step of the second
window moved all four switches' batch-norm weights on JAX, the left-out
middle switch's too (tests/paradis_tf/training/test_sandwich.py); on
TensorFlow only the window's three.

Which inputs reach the loss is read once per window from the jaxpr of the
loss (a backward reachability walk over its equations: an equation's
outputs depend on all its inputs, which over-approximates through control
flow and never under-approximates), then those variables get a ``None``
gradient, as on TensorFlow.
"""

from __future__ import annotations

import keras

__all__ = ["unreached_inputs", "window_train_step"]


def unreached_inputs(fn, args) -> frozenset:
    """Indices of the arrays in ``args`` (a flat list) that ``fn(args)``'s outputs do not depend on."""
    import jax
    from jax.extend import core

    jaxpr = jax.make_jaxpr(fn)(args).jaxpr
    needed = {v for v in jaxpr.outvars if isinstance(v, core.Var)}
    for eqn in reversed(jaxpr.eqns):
        if any(v in needed for v in eqn.outvars):
            needed.update(v for v in eqn.invars if isinstance(v, core.Var))
    return frozenset(i for i, v in enumerate(jaxpr.invars) if v not in needed)


def window_train_step(model, train_step, cache: dict, state, data):
    """Keras' JAX ``train_step(state, data)`` for ``model``'s active window,
    with a ``None`` gradient for each trainable variable its loss does not
    reach. ``cache`` maps a window (tuple of switch names) to those indices."""
    window = model._plan.active
    if window not in cache:
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)

        def loss(values):
            return model.compute_loss_and_updates(
                values, non_trainable, metrics_variables, x, y, sample_weight,
                training=True, optimizer_variables=optimizer_variables,
            )[0]

        cache[window] = unreached_inputs(loss, list(trainable))
    skip = cache[window]
    if not skip:
        return train_step(state, data)
    optimizer = model.optimizer
    apply = optimizer.stateless_apply

    def stateless_apply(optimizer_variables, grads, trainable_variables):
        # Keras' optimizer drops a None gradient's variable (and its moments) from the update.
        grads = [None if i in skip else g for i, g in enumerate(grads)]
        return apply(optimizer_variables, grads, trainable_variables)

    optimizer.stateless_apply = stateless_apply  # the instance attribute shadows the method for this step
    try:
        return train_step(state, data)
    finally:
        del optimizer.stateless_apply
