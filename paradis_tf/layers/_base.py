"""Mechanics shared by every split layer: switch resolution, channel
partitions, communication gates, per-switch masks and accounting.

Notation used in the shape comments: ``Cin``/``Cout`` full-width input/output
channels, ``D`` devices of the switch, ``B`` batch.

For switch s, input channel c (owned by device d(c)) reaches output channel o
(owned by d(o)) when d(c) == d(o) or when the gate g_s[c -> d(o)] is open. A
layer therefore computes the ordinary layer with ``kernel * mask_s`` where

    mask_s (Cin, Cout) = G_s (Cin, D) @ A_s (D, Cout)
    G_s[c, k] = 1 if d(c) == k, else g_s[c -> k]      (0 for inactive c)
    A_s[k, o] = 1 if d(o) == k                         (0 for inactive o)

Inactive channels (past the switch's last slice) are exactly zero at the
output of every split layer, so narrower switches compute the slimmable
sub-network and nothing else.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from paradis_tf.layers._cost import LayerCost
from paradis_tf.layers.gate_config import GateConfig
from paradis_tf.layers.gate_variables import GateVariables
from paradis_tf.switches import SwitchSet


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, received {value!r}.")
    return int(value)


class SwitchedLayer(keras.layers.Layer):
    """A layer that is told its switch at call time (never global state).

    Args:
        switches: the SwitchSet (or its written form) the model serves.
    """

    def __init__(self, switches, **kwargs):
        super().__init__(**kwargs)
        try:
            self.switches = SwitchSet(switches)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__} '{self.name}': {e}") from None

    def switch_index(self, switch) -> int:
        """Index of ``switch`` (index, name or Switch) in this layer's set."""
        try:
            return self.switches.index(switch)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__} '{self.name}': {e}") from None

    def channel_ranges(self, channels: int, index: int) -> tuple:
        """Each device's channel range for switch ``index`` of a ``channels``-wide tensor."""
        try:
            return self.switches[index].partition(channels)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__} '{self.name}': {e}") from None

    def active_mask(self, channels: int, index: int) -> np.ndarray | None:
        """(channels,) 1/0 of active channels, or None when all are active."""
        active = self.switches[index].active_channels(channels)
        if active == channels:
            return None
        mask = np.zeros((channels,), dtype="float32")
        mask[:active] = 1.0
        return mask

    def _check_switch(self, switch) -> None:
        """Raises for a switch not in the set; None (not given) passes."""
        if switch is not None:
            self.switch_index(switch)

    def output_devices(self, switch=None) -> int | None:
        """D of a device axis in an output: that of ``switch`` when given;
        without one, the D every switch of the set shares, else None (unknown
        until the switch is known, as Keras writes an unknown dimension)."""
        if switch is not None:
            return self.switches[self.switch_index(switch)].num_devices
        counts = {s.num_devices for s in self.switches}
        return counts.pop() if len(counts) == 1 else None

    # -- shape inference ------------------------------------------------------
    # Subclasses implement ``compute_output_shape(input_shape, switch=None)``;
    # only a device axis (partial outputs) may depend on the switch.
    def compute_output_spec(self, inputs, switch=None, training=None):
        # keras' Layer.compute_output_spec drops the call arguments before
        # compute_output_shape; the switch is forwarded so a device axis gets
        # its D. Shape inference needs no switch otherwise (a direct call of
        # compute_output_spec or compute_output_shape may omit it).
        if type(self).compute_output_shape is keras.layers.Layer.compute_output_shape:
            # No shape rule: trace call() symbolically, as keras does.
            return super().compute_output_spec(inputs, switch=switch, training=training)
        shape = self.compute_output_shape(tuple(inputs.shape), switch=switch)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def symbolic_call(self, *args, **kwargs):
        # A call on a KerasTensor records a node whose call() runs later with
        # these arguments: without a switch (or with one not in the set) it
        # could only fail then, so fail now with the switch's own message.
        switch = kwargs["switch"] if "switch" in kwargs else (args[1] if len(args) > 1 else None)
        self.switch_index(switch)
        return super().symbolic_call(*args, **kwargs)

    def switch_cost(self, switch, input_shape, bytes_per_element: int = 4) -> LayerCost:
        """Per-device params, FLOPs and bytes of this layer in ``switch``.

        ``input_shape`` includes the batch axis (ignored: costs are per sample).
        """
        raise NotImplementedError(f"{type(self).__name__} has no accounting.")

    def unsplit_cost(self, input_shape) -> tuple[int, int]:
        """(params, FLOPs) of the same layer at full width on one device."""
        raise NotImplementedError(f"{type(self).__name__} has no accounting.")

    def get_config(self):
        config = super().get_config()
        config["switches"] = self.switches.get_config()
        return config


class SplitLinearLayer(SwitchedLayer):
    """Base of the layers that mix channels (SplitConv2D, SplitDense).

    Subclasses supply ``_kernel_window`` (kernel shape before the channel
    axes), ``_linear(x, kernel)``, ``_output_positions(input_shape)`` and
    ``_leading_output_shape(input_shape)``.

    Args:
        switches: the SwitchSet the model serves.
        gates: GateConfig, a mode (``"learned"``, ``"open"``, ``"shut"``) or
            ``{switch name: mode}``.
        replicated_input: the input is present in full on every device (the
            image into the stem): every device reads every input channel and
            nothing is sent.
        partial_outputs: every device computes all ``Cout`` outputs from its own
            input channels only; the output gains a device axis before the last
            one, ``(..., D, Cout)``, to be summed by ``PartialSumFusion``. Used for
            the last layer (logits, super-resolution residuals). The bias is
            added once, on device 0.
    """

    def __init__(
        self,
        switches,
        gates="learned",
        replicated_input=False,
        partial_outputs=False,
        use_bias=True,
        activation=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(switches, **kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.gates = GateConfig.coerce(gates)
        self.gates.check_switches(self.switches, owner)
        self.replicated_input = bool(replicated_input)
        self.partial_outputs = bool(partial_outputs)
        if self.replicated_input and self.partial_outputs:
            raise ValueError(
                f"{owner}: replicated_input=True and partial_outputs=True together would "
                "count the replicated input once per device in the fused sum; use one."
            )
        self.use_bias = bool(use_bias)
        self.activation = None if activation is None else keras.activations.get(activation)
        if self.partial_outputs and activation is not None:
            raise ValueError(
                f"{owner}: partial_outputs=True cannot take activation={activation!r}: "
                "an activation of partial sums is not the activation of their sum. "
                "Apply it after PartialSumFusion."
            )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    # -- subclass hooks -------------------------------------------------------
    @property
    def _out_channels(self) -> int:
        raise NotImplementedError

    @property
    def _kernel_window(self) -> tuple:
        raise NotImplementedError

    def _linear(self, x, kernel):
        raise NotImplementedError

    def _output_positions(self, input_shape) -> int:
        """Output positions per sample (spatial size or tokens)."""
        raise NotImplementedError

    def _leading_output_shape(self, input_shape) -> tuple:
        """Output shape before the channel axis: ``(B, ...)`` (None where unknown)."""
        raise NotImplementedError

    # -- build ----------------------------------------------------------------
    def build(self, input_shape):
        cin = input_shape[-1]
        if cin is None:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': the channel axis of the input must "
                f"be known, received input shape {tuple(input_shape)}."
            )
        self.in_channels = int(cin)
        cout = self._out_channels
        window = self._kernel_window
        self.kernel = self.add_weight(
            name="kernel",
            shape=window + (self.in_channels, cout),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = (
            self.add_weight(
                name="bias",
                shape=(cout,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
            if self.use_bias
            else None
        )
        # Static per-switch structure (numpy, one entry per switch).
        self._plans = [self._plan(i) for i in range(len(self.switches))]
        self._build_gates()

    def _build_gates(self):
        """The gate variables of every learned switch (after ``self._plans``
        and ``self.in_channels`` are set): rows are the layer's gated channels."""
        self._gate_logits = {}
        self._gate_pins = {}
        self._gate_thresholds = {}
        self._gate_states = {}
        self._gate_emas = {}
        for i, plan in enumerate(self._plans):
            if plan["learned"]:
                d = plan["num_devices"]
                self._gate_logits[i] = self.add_weight(
                    name=f"gate_logits_{i}",
                    shape=(self.in_channels, d),
                    # Read in float32 under a mixed policy too: bfloat16's 8
                    # bits would make logits a budget cut tells apart equal to
                    # its threshold, and open other gates than the cut chose.
                    autocast=False,
                    # Holds logit / logit_scale (see GateConfig.logit_scale).
                    # A spread of +-0.01 around init_logit breaks ties, so a
                    # budget cut (logit >= threshold) can fall between any two.
                    initializer=keras.initializers.RandomUniform(
                        (self.gates.init_logit - 0.01) / self.gates.logit_scale,
                        (self.gates.init_logit + 0.01) / self.gates.logit_scale,
                    ),
                )
                # -1: free (learned), 0: pinned shut, 1: pinned open.
                self._gate_pins[i] = self.add_weight(
                    name=f"gate_pins_{i}",
                    shape=(self.in_channels, d),
                    initializer=keras.initializers.Constant(-1.0),
                    trainable=False,
                )
                # A free gate is open when its logit >= this threshold: 0 for a
                # layer on its own; a SplitModel training under a budget sets it
                # every step to the switch's budget-exact cut (see
                # training.budget_cut.cut_threshold), so the gates in use always meet
                # the annealed budget. Every replica computes the same value.
                self._gate_thresholds[i] = self.add_weight(
                    name=f"gate_threshold_{i}",
                    shape=(),
                    autocast=False,
                    initializer="zeros",
                    trainable=False,
                    aggregation="only_first_replica",
                )
                # The cut's decision held between cuts (GateRanking other than
                # the default): 1 open, 0 shut; -1 (the default) means the
                # gate follows ``logit >= threshold`` at every step.
                self._gate_states[i] = self.add_weight(
                    name=f"gate_state_{i}",
                    shape=(self.in_channels, d),
                    initializer=keras.initializers.Constant(-1.0),
                    trainable=False,
                    aggregation="only_first_replica",
                )
                # Moving average of the scaled logits (GateRanking(score="ema")).
                self._gate_emas[i] = self.add_weight(
                    name=f"gate_ema_{i}",
                    shape=(self.in_channels, d),
                    initializer=keras.initializers.Constant(self.gates.init_logit),
                    trainable=False,
                    aggregation="only_first_replica",
                )

    def _plan(self, index: int) -> dict:
        """Static masks of switch ``index``: which channel lives where."""
        switch = self.switches[index]
        d = switch.num_devices
        cin, cout = self.in_channels, self._out_channels
        out_ranges = self.channel_ranges(cout, index) if not self.partial_outputs else None
        local = np.zeros((cin, d), dtype="float32")
        if self.replicated_input:
            # Every device holds the whole input: all of it is local everywhere.
            local[:, :] = 1.0
            in_ranges = None
        else:
            in_ranges = self.channel_ranges(cin, index)
            for k, r in enumerate(in_ranges):
                local[r.start : r.stop, k] = 1.0
        active_in = local.max(axis=1, keepdims=True)  # (Cin, 1)
        # (Cin, D): active channel c, device k != d(c). Partial outputs read
        # only local channels: nothing remote to gate.
        remote = active_in - local if not self.partial_outputs else np.zeros_like(local)
        assign = np.zeros((d, cout), dtype="float32")  # A_s (D, Cout)
        if out_ranges is not None:
            for k, r in enumerate(out_ranges):
                assign[k, r.start : r.stop] = 1.0
        mode = self.gates.mode_for(switch)
        has_remote = bool(remote.any())
        plan = {
            "num_devices": d,
            "in_ranges": in_ranges,
            "out_ranges": out_ranges,
            "local": local,
            "remote": remote,
            "assign": assign,
            "mode": mode if has_remote else "shut",
            "learned": has_remote and mode == "learned",
            "out_active": self.active_mask(cout, index) if out_ranges is not None else None,
        }
        if not plan["learned"]:
            gate = local + (remote if plan["mode"] == "open" else 0.0)
            mask = gate @ assign  # (Cin, D) @ (D, Cout) -> (Cin, Cout)
            plan["static_gate"] = gate
            plan["static_mask"] = None if mask.min() == 1.0 else mask
        if self.partial_outputs:
            plan["device_inputs"] = local.T  # (D, Cin): device k's own input channels
        return plan

    # -- gates ----------------------------------------------------------------
    def _relaxed(self, index: int, training: bool, expected: bool = False):
        """Gates g_s (Cin, D) of a learned switch, pins obeyed, differentiable.

        ``expected`` gives the sigmoid probabilities (for traffic penalties);
        otherwise the gate as the forward pass uses it.
        """
        logits = self._gate_logits[index] * self.gates.logit_scale  # (Cin, D)
        if expected:
            # Probability of being sent, centred on 0 (not on the threshold):
            # a penalty on it pulls the logits down, costlier gates harder.
            gate = ops.sigmoid(ops.divide(logits, self.gates.temperature))
        else:
            # Relaxation centred on the threshold, so its gradient is largest
            # for the gates about to flip.
            threshold = ops.cast(self._gate_thresholds[index], logits.dtype)
            soft = ops.sigmoid(ops.divide(logits - threshold, self.gates.temperature))
            if training and self.gates.relaxation == "sigmoid":
                gate = soft
            else:
                hard = ops.cast(ops.greater_equal(logits, threshold), soft.dtype)
                # A held decision of the budget cut overrides the threshold.
                if index in self._gate_states:
                    state = ops.cast(self._gate_states[index], soft.dtype)
                    hard = ops.where(ops.less(state, 0.0), hard, state)
                # Straight-through: binary forward value, sigmoid gradient.
                gate = soft + ops.stop_gradient(hard - soft) if training else hard
        pins = ops.cast(self._gate_pins[index], gate.dtype)
        return ops.where(ops.less(pins, 0.0), gate, pins)

    def _gate_matrix(self, index: int, training: bool, expected: bool = False):
        """G_s (Cin, D): 1 for a device's own channels, the gate for remote ones."""
        plan = self._plans[index]
        if not plan["learned"]:
            return plan["static_gate"]
        g = self._relaxed(index, training, expected)
        local = ops.cast(plan["local"], g.dtype)
        remote = ops.cast(plan["remote"], g.dtype)
        return ops.add(local, ops.multiply(remote, g))  # (Cin, D)

    def _gate_index(self, switch) -> int:
        """``switch_index`` for the gate methods, which read what ``build`` makes."""
        if not hasattr(self, "_plans"):
            raise ValueError(f"{type(self).__name__} '{self.name}' is not built yet: call it on an input (or "
                             "build(input_shape)) before reading or pinning its gates.")
        return self.switch_index(switch)

    def gate_matrix(self, switch, training: bool = False):
        """G_s (Cin, D) as the forward pass uses it: a tensor for learned gates
        (straight-through or soft while training), a numpy constant otherwise."""
        return self._gate_matrix(self._gate_index(switch), training)

    def remote_mask(self, switch) -> np.ndarray:
        """(Cin, D) 1 where channel c is active and device k does not own it:
        the entries that cost traffic when open (all 0 for partial outputs or a
        replicated input)."""
        index = self._gate_index(switch)  # first: it says when there are no plans yet
        return self._plans[index]["remote"]

    def has_learned_gates(self, switch) -> bool:
        index = self._gate_index(switch)
        return self._plans[index]["learned"]

    def gate_logits(self, switch) -> np.ndarray:
        """(Cin, D) numpy gate logits of a learned switch (before pins)."""
        index = self._gate_index(switch)
        if index not in self._gate_logits:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': switch '{self.switches[index]}' has no "
                "learned gates."
            )
        return ops.convert_to_numpy(self._gate_logits[index]) * self.gates.logit_scale

    def gate_variables(self, switch) -> GateVariables:
        """The variables of a learned switch's gates (logits, pins, threshold,
        held state, EMA): what a budget cut reads and writes."""
        index = self._gate_index(switch)
        if index not in self._gate_logits:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': switch '{self.switches[index]}' has no "
                "learned gates."
            )
        return GateVariables(
            logits=self._gate_logits[index],
            pins=self._gate_pins[index],
            threshold=self._gate_thresholds[index],
            state=self._gate_states[index],
            ema=self._gate_emas[index],
            logit_scale=self.gates.logit_scale,
        )

    def gate_weight_norms(self, switch):
        """(Cin, D) L2 norm of the kernel entries each gate carries: input
        channel c's rows into device k's output channels (over the kernel
        window too). Differentiable; a weight-based importance of the gate."""
        index = self._gate_index(switch)
        plan = self._plans[index]
        squares = ops.square(ops.cast(self.kernel, "float32"))  # (*window, Cin, Cout)
        for _ in self._kernel_window:
            squares = ops.sum(squares, axis=0)  # -> (Cin, Cout)
        per_device = ops.matmul(squares, ops.transpose(ops.cast(plan["assign"], "float32")))  # (Cin, D)
        return ops.sqrt(per_device)

    def gate_probabilities(self, switch):
        """G_s (Cin, D) with the probability that each remote channel is sent.

        Differentiable in the gate logits (pins obeyed; local entries 1): the
        expected traffic of the layer in a switch, for a budget penalty.
        """
        return ops.convert_to_tensor(self._gate_matrix(self._gate_index(switch), False, True))

    def gate_values(self, switch) -> np.ndarray:
        """G_s (Cin, D) as a binary numpy array, as used at inference."""
        gate = self._gate_matrix(self._gate_index(switch), training=False)
        return np.asarray(ops.convert_to_numpy(gate), dtype="float32")

    def pin_gates(self, switch, pins) -> None:
        """Pins learned gates of ``switch``: (Cin, D) array of -1 (free), 0 (shut), 1 (open).

        Entries of local or inactive channels are ignored.
        """
        index = self._gate_index(switch)
        if index not in self._gate_pins:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': switch '{self.switches[index]}' has "
                f"no learned gates (mode '{self._plans[index]['mode']}'); only learned "
                "gates can be pinned."
            )
        pins = np.asarray(pins, dtype="float32")
        expected = (self.in_channels, self._plans[index]["num_devices"])
        if pins.shape != expected or not np.isin(pins, (-1.0, 0.0, 1.0)).all():
            raise ValueError(
                f"{type(self).__name__} '{self.name}': pins must be an array of shape "
                f"{expected} holding -1, 0 or 1, received shape {pins.shape} with values "
                f"{np.unique(pins)[:5].tolist()}."
            )
        self._gate_pins[index].assign(pins)

    def kernel_mask(self, switch, training: bool = False):
        """mask_s (Cin, Cout) applied to the kernel, or None when it is all ones."""
        return self._mask(self._gate_index(switch), training)

    def _mask(self, index: int, training: bool):
        plan = self._plans[index]
        if not plan["learned"]:
            return plan["static_mask"]
        gate = self._gate_matrix(index, training)  # (Cin, D), float32: the logits are not autocast
        assign = ops.cast(plan["assign"], gate.dtype)
        # Decided in float32, applied in the compute dtype, as the kernel is.
        return ops.cast(ops.matmul(gate, assign), self.compute_dtype)  # (Cin, D) @ (D, Cout) -> (Cin, Cout)

    # -- forward --------------------------------------------------------------
    def compute_output_shape(self, input_shape, switch=None):
        """``(B, ..., Cin)`` -> ``(B, ..., Cout)``, whatever the switch.

        With ``partial_outputs=True`` the output is ``(B, ..., D, Cout)`` and D
        is the switch's device count: pass ``switch`` to know it. Without
        one, D is the device count shared by every switch of the set, or None
        (unknown) when they differ.
        """
        leading = tuple(self._leading_output_shape(tuple(input_shape)))  # (B, ...)
        if self.partial_outputs:
            return leading + (self.output_devices(switch), self._out_channels)
        self._check_switch(switch)  # an unknown switch is an error here too
        return leading + (self._out_channels,)

    def call(self, inputs, switch=None, training=None):
        index = self.switch_index(switch)
        plan = self._plans[index]
        kernel = self.kernel
        if self.partial_outputs:
            # Device k's partial output uses only its own input channels:
            # (..., Cin) * (Cin,) -> linear -> (..., Cout), stacked -> (..., D, Cout).
            partials = [
                self._linear(inputs * ops.cast(m, inputs.dtype), kernel)
                for m in plan["device_inputs"]
            ]
            outputs = ops.stack(partials, axis=-2)
            if self.bias is not None:
                # The bias belongs to the sum, so device 0 alone adds it: (D, 1) * (Cout,).
                first = np.zeros((plan["num_devices"], 1), dtype="float32")
                first[0, 0] = 1.0
                outputs = outputs + ops.cast(first, outputs.dtype) * self.bias
            return outputs
        mask = self._mask(index, bool(training))
        if mask is not None:
            # (kh, kw, Cin, Cout) * (Cin, Cout): broadcast over the window.
            kernel = kernel * ops.cast(mask, kernel.dtype)
        outputs = self._linear(inputs, kernel)
        if self.bias is not None:
            bias = self.bias
            if plan["out_active"] is not None:
                bias = bias * ops.cast(plan["out_active"], bias.dtype)
            outputs = outputs + bias
        if self.activation is not None:
            outputs = self.activation(outputs)
            if plan["out_active"] is not None:
                # activation(0) may be nonzero (sigmoid): keep inactive channels 0.
                outputs = outputs * ops.cast(plan["out_active"], outputs.dtype)
        return outputs

    # -- accounting -----------------------------------------------------------
    def _positions_per_channel(self, input_shape) -> int:
        return int(np.prod([int(s) for s in input_shape[1:-1]], dtype=np.int64))

    def switch_cost(self, switch, input_shape, bytes_per_element: int = 4) -> LayerCost:
        index = self.switch_index(switch)
        plan = self._plans[index]
        d = plan["num_devices"]
        g = self.gate_values(index)  # (Cin, D) binary
        window = int(np.prod(self._kernel_window, dtype=np.int64))
        positions_out = self._output_positions(input_shape)
        elems = self._positions_per_channel(input_shape) * bytes_per_element
        n_in = g.sum(axis=0).astype(np.int64)  # (D,) channels each device reads
        if self.partial_outputs:
            n_out = np.full((d,), self._out_channels, dtype=np.int64)
            biases = np.zeros((d,), dtype=np.int64)
            biases[0] = self._out_channels if self.use_bias else 0
        else:
            n_out = np.array([len(r) for r in plan["out_ranges"]], dtype=np.int64)
            biases = n_out if self.use_bias else np.zeros((d,), dtype=np.int64)
        params = window * n_in * n_out + biases
        flops = 2 * positions_out * window * n_in * n_out
        remote_g = g * plan["remote"]  # only remote, open gates
        # Channel c is sent by its owner: rows grouped by owner via local (Cin, D).
        sent = (plan["local"].T @ remote_g).sum(axis=1) if not self.replicated_input else np.zeros(d)
        received = remote_g.sum(axis=0)
        dense_sent = (
            (plan["local"].T @ plan["remote"]).sum(axis=1)
            if not self.replicated_input
            else np.zeros(d)
        )
        to_int = lambda a: tuple(int(round(v)) for v in np.asarray(a).tolist())
        zeros = (0,) * d
        return LayerCost(
            params=to_int(params),
            flops=to_int(flops),
            bytes_sent=to_int(np.asarray(sent) * elems),
            bytes_received=to_int(np.asarray(received) * elems),
            dense_bytes_sent=to_int(np.asarray(dense_sent) * elems),
            fusion_bytes_sent=zeros,
            fusion_bytes_received=zeros,
        )

    def unsplit_cost(self, input_shape) -> tuple[int, int]:
        window = int(np.prod(self._kernel_window, dtype=np.int64))
        cin, cout = self.in_channels, self._out_channels
        params = window * cin * cout + (cout if self.use_bias else 0)
        flops = 2 * self._output_positions(input_shape) * window * cin * cout
        return int(params), int(flops)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "gates": self.gates.get_config(),
                "replicated_input": self.replicated_input,
                "partial_outputs": self.partial_outputs,
                "use_bias": self.use_bias,
                "activation": keras.activations.serialize(self.activation)
                if self.activation is not None
                else None,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
