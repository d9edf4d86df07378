"""Link: a traffic budget given as a network link (bandwidth and latency).

A byte budget (``budget=0.2``) caps how many bytes a switch sends; it does not
care how many times the devices exchange. On a real link every exchange also
waits for the link's latency: ResNet-50 split over two devices has about 50
exchange points, so at 2 ms each a split that sends a little everywhere spends
100 ms waiting. ``budget=Link(mbps=200, latency_ms=2)`` charges what the
runtime planner charges for a frame (``paradis_runtime.planner.exchange_cost_s``,
restated here because paradis_tf never imports the runtime):

* an **exchange point** is a (split layer, receiving device) pair where the
  device receives at least one remote channel;
* each exchange point costs ``latency_ms / 1000 + 8 * (64 + bytes) / (mbps * 1e6)``
  seconds, ``bytes`` being the channels the device receives there
  (``positions * bytes_per_element`` each) and 64 the frame header
  (FRAME_FORMAT.md);
* a device's **communication time** is the sum over its exchange points. The
  budget is a time per device: every device's time must fit ``target_ms``.

The default target (``target_ms=None``) is ``DEFAULT_TIME_RATIO`` (0.2) of the
device's time under dense tensor parallelism on the same link (every remote
channel received at every exchange point): the byte ratio 0.2 of DISCO,
measured in time. With ``latency_ms=0`` it is a byte budget of 0.2 per device;
with latency it allows about a fifth of the exchange points, so the gates must
gather their traffic in few layers. (The time of a 0.2 byte ratio spread over
*all* exchange points would pay every latency and so never make a split give
up an exchange point: the one thing a latency-aware budget is for.)

How a Link budget trains and finalizes (see ``SplitModel``):

* penalty: the expected time of each device, ``sum over its exchange points of
  seconds_per_channel * sum_c p_c + (latency + header) * u``, with ``p_c`` the
  sigmoid open-probability of each remote gate of the point and ``u`` the soft
  "this exchange point is used" indicator: the softmax-weighted mean
  ``sum_c softmax(p / 0.1)_c * p_c``. It lies between the mean and the max of
  the ``p_c``: the max when one channel dominates, their common value when
  they are tied (as at initialization), where every tied channel gets an
  equal share of the latency's gradient, so the whole point moves down. (The
  noisy-OR ``1 - prod_c (1 - p_c)`` sits at 1 with almost no gradient while a
  point has several likely channels; a hard max pushes one channel at a time
  and, among tied channels, barely moves the point.)
* the cut (which gates are open) is a *price cut*: at a price ``lam`` per
  second, a channel is worth its bytes when ``sigmoid(logit / T) > lam *
  seconds_per_channel`` and an exchange point (in training: a whole layer, the
  gates hold one threshold per layer) opens when its worthy channels together
  are worth more than ``lam * (latency + header)``; ``lam`` is the smallest
  price (bisection) at which every device fits its budget. Inside an open
  point the open channels are therefore the top logits; between points, the
  latency makes a few full points cheaper than many thin ones.
* ``finalize_gates`` makes the same cut per exchange point, then spends the
  time left on the next channels of open points (best value per second
  first), then on new points, and pins the result.

Not modelled: frames queueing behind each other on one link (the planner's
event simulation sees it), several senders into one device (each frame
has its header and its own link; the bytes are charged as if on one link),
and layers that read the same tensor (a block's 3x3 and its projection
shortcut): the export sends that tensor's channels together, the model
charges each layer's exchange, an over-estimate for those blocks.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Optional, Sequence

import numpy as np
import keras
from keras import ops

__all__ = ["DEFAULT_TIME_RATIO", "FRAME_HEADER_BYTES", "Link", "LinkCost", "LinkRatio"]

# The fraction of a device's dense tensor-parallel communication time that a
# Link without target_ms allows (the byte ratio 0.2 of DISCO, in time).
DEFAULT_TIME_RATIO = 0.2
# Bytes of a frame header on the wire (export/FRAME_FORMAT.md; the runtime's
# frames.HEADER_LEN): charged once per exchange point, as exchange_cost_s does.
FRAME_HEADER_BYTES = 64

# Bisection bounds of log(price): a price per second of link time, in units
# of gate value (a sigmoid in (0, 1), clipped to >= sigmoid(-30) ~ 1e-13).
# exp(-40) opens every gate of any link with less than ~1e4 s per channel,
# exp(40) closes every gate that costs more than ~1e-17 s.
_LOG_PRICE_BOUNDS = (-40.0, 40.0)
_BISECTIONS = 40
_LOGIT_CLIP = 30.0
# Temperature of the soft "exchange point used" indicator (on probabilities):
# channels within about 0.1 of a point's likeliest share its latency gradient.
_SOFT_MAX_TEMPERATURE = 0.1


def _number(value, name: str, wanted: str, accept) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or not accept(float(value))
    ):
        raise ValueError(f"Link.{name} must be {wanted}, received {value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package="paradis_tf")
@dataclasses.dataclass(frozen=True)
class Link:
    """A traffic budget in time: what each device may spend on a link per inference.

    Pass it where a byte ratio is accepted: ``SplitModel.compile(budget=...)``
    (alone or as a value of ``{switch: budget}``) and
    ``SplitModel.finalize_gates(budget=...)``. See the module for the cost
    model.

    Args:
        mbps: link bandwidth in megabits per second (10^6 bit/s), finite, > 0.
        latency_ms: one-way latency of every exchange, in milliseconds,
            finite, >= 0.
        target_ms: communication time each device may spend per inference,
            in milliseconds, finite, > 0; None: ``DEFAULT_TIME_RATIO`` of the
            device's time under dense tensor parallelism on this link.
        bytes_per_element: bytes of one tensor element on the wire: 4 for a
            float32 export, 1 for int8.
    """

    mbps: float
    latency_ms: float
    target_ms: Optional[float] = None
    bytes_per_element: int = 4

    def __post_init__(self):
        object.__setattr__(self, "mbps", _number(self.mbps, "mbps", "a finite number > 0", lambda v: v > 0))
        object.__setattr__(
            self, "latency_ms", _number(self.latency_ms, "latency_ms", "a finite number >= 0", lambda v: v >= 0)
        )
        if self.target_ms is not None:
            object.__setattr__(
                self, "target_ms",
                _number(self.target_ms, "target_ms", "None or a finite number > 0", lambda v: v > 0),
            )
        bpe = self.bytes_per_element
        if isinstance(bpe, bool) or not isinstance(bpe, numbers.Integral) or bpe < 1:
            raise ValueError(f"Link.bytes_per_element must be a positive int (4 float32, 1 int8), received {bpe!r}.")
        object.__setattr__(self, "bytes_per_element", int(bpe))

    def transfer_seconds(self, nbytes: float) -> float:
        """Seconds the link is busy with ``nbytes`` (no header, no latency)."""
        return 8.0 * nbytes / (self.mbps * 1e6)

    @property
    def exchange_seconds(self) -> float:
        """The fixed cost of one exchange point: latency plus a frame header."""
        return self.latency_ms / 1e3 + self.transfer_seconds(FRAME_HEADER_BYTES)

    def exchange_cost_seconds(self, nbytes: int) -> float:
        """One exchange point that carries ``nbytes`` of channels (the planner's
        ``exchange_cost_s(nbytes, mbps, latency_ms)``)."""
        return self.exchange_seconds + self.transfer_seconds(nbytes)

    def get_config(self) -> dict:
        return {
            "mbps": self.mbps,
            "latency_ms": self.latency_ms,
            "target_ms": self.target_ms,
            "bytes_per_element": self.bytes_per_element,
        }

    @classmethod
    def from_config(cls, config: dict) -> "Link":
        return cls(**config)


@dataclasses.dataclass(frozen=True)
class LinkCost:
    """The modelled communication of one switch's gates on a Link.

    Tuples hold one entry per device of the switch (as receiver).

    Attributes:
        device_ms: communication time of each device, milliseconds.
        target_ms: each device's budget (the Link's target or its default).
        device_exchange_points: exchange points where each device receives.
        device_bytes: gated bytes each device receives.
    """

    device_ms: tuple
    target_ms: tuple
    device_exchange_points: tuple
    device_bytes: tuple

    @property
    def time_ms(self) -> float:
        """The slowest device's communication time."""
        return max(self.device_ms)

    @property
    def exchange_points(self) -> int:
        """Exchange points of all devices together."""
        return int(sum(self.device_exchange_points))

    @property
    def bytes(self) -> int:
        """Gated bytes of all devices together (the byte budget's numerator)."""
        return int(sum(self.device_bytes))

    def fits(self, rtol: float = 1e-9) -> bool:
        """Every device within its target."""
        return all(t <= g * (1.0 + rtol) for t, g in zip(self.device_ms, self.target_ms))


class LinkRatio(float):
    """What ``finalize_gates`` returns for a switch with a Link budget: the
    traffic ratio (a float, as for a byte budget) with its ``cost``
    (a ``LinkCost``) and, for convenience, ``time_ms``, ``target_ms``
    (the slowest device's target) and ``exchange_points``."""

    def __new__(cls, ratio: float, cost: LinkCost):
        self = super().__new__(cls, ratio)
        self.cost = cost
        self.time_ms = cost.time_ms
        self.target_ms = max(cost.target_ms)
        self.exchange_points = cost.exchange_points
        return self

    def __repr__(self) -> str:
        return (f"LinkRatio({float(self)!r}, time_ms={self.time_ms:.4g}, target_ms={self.target_ms:.4g}, "
                f"exchange_points={self.exchange_points})")


@dataclasses.dataclass(frozen=True)
class LinkTerm:
    """One split layer's traffic in a switch, as the Link model sees it.

    Args:
        positions: elements per channel on the wire (H * W of the input).
        remote: (Cin, D) 1 where device k would receive channel c.
        temperature: the sigmoid temperature of learned gates; None for a
            layer whose gates do not learn in this switch.
        fixed_gate: (Cin, D) the gates of such a layer (open/shut modes).
    """

    positions: int
    remote: np.ndarray
    temperature: Optional[float] = None
    fixed_gate: Optional[np.ndarray] = None


def _segment_sum(data, ids, count):
    return ops.segment_sum(data, ids, num_segments=count, sorted=False)


class SwitchLink:
    """A switch's exchange points on one Link: static costs, the modelled
    time of given gates, and the price cut. Internal to SplitModel.

    Flat layout of the learned gates (``N``: every remote (channel, device)
    entry of every learned layer, layer by layer, row-major over (Cin, D));
    ``P`` exchange points (learned layer, device) that can exist.
    """

    def __init__(self, link: Link, terms: Sequence[LinkTerm], num_devices: int):
        self.link = link
        # float64 remote masks: the modelled times are sums of small numbers.
        self.terms = [dataclasses.replace(t, remote=np.asarray(t.remote, "float64")) for t in terms]
        self.num_devices = d = int(num_devices)
        f = link.exchange_seconds
        self.channel_seconds = [link.transfer_seconds(t.positions * link.bytes_per_element) for t in self.terms]
        dense = np.zeros((d,))
        for t, b in zip(self.terms, self.channel_seconds):
            dense += b * t.remote.sum(axis=0) + f * t.remote.any(axis=0)
        self.dense_seconds = dense  # (D,) every remote channel received
        if link.target_ms is None:
            self.target_seconds = DEFAULT_TIME_RATIO * dense
        else:
            self.target_seconds = np.where(dense > 0, link.target_ms / 1e3, 0.0)
        # Layers whose gates do not learn cost the same whatever the cut.
        self.fixed_seconds = np.zeros((d,))
        for t, b in zip(self.terms, self.channel_seconds):
            if t.temperature is None:
                self.fixed_seconds += self._seconds_np(t, b, t.fixed_gate)

        self.learned = [i for i, t in enumerate(self.terms) if t.temperature is not None]
        flat, seconds, temps, point_ids, term_ids = [], [], [], [], []
        point_device, point_term = [], []
        for n, i in enumerate(self.learned):
            t = self.terms[i]
            entries = np.flatnonzero(t.remote.reshape(-1) > 0)  # row-major: entry = c * D + k
            devices = entries % d
            first = len(point_device)
            used = sorted(set(devices.tolist()))
            where = {k: first + j for j, k in enumerate(used)}
            point_device += used
            point_term += [n] * len(used)
            flat.append(entries)
            seconds.append(np.full(len(entries), self.channel_seconds[i]))
            temps.append(np.full(len(entries), t.temperature))
            point_ids.append(np.array([where[k] for k in devices.tolist()], dtype="int32"))
            term_ids.append(np.full(len(entries), n, dtype="int32"))
        self.flat = flat  # per learned term: its entries in reshape(gate, (-1,))
        cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros((0,), dtype)
        self.gate_seconds = cat(seconds, "float64")  # (N,) link seconds of each gate's channel
        self.temperatures = cat(temps, "float64")  # (N,)
        self.point_ids = cat(point_ids, "int32")  # (N,) exchange point of each gate
        self.term_ids = cat(term_ids, "int32")  # (N,) learned term of each gate
        self.point_device = np.array(point_device, dtype="int32")  # (P,) receiving device
        self.point_term = np.array(point_term, dtype="int32")  # (P,) learned term

    # -- modelled time -----------------------------------------------------------
    def _seconds_np(self, term, b, gate):
        rg = term.remote * np.asarray(gate, dtype="float64")  # (Cin, D) received
        return b * rg.sum(axis=0) + self.link.exchange_seconds * rg.max(axis=0, initial=0.0)

    def seconds(self, gates, soft: bool = False):
        """(D,) modelled time of each device for ``gates``, one (Cin, D)
        matrix per term (learned or not, tensors or numpy).

        ``soft=False``: a point is used when any of its gates is open (the
        exact time of binary gates). ``soft=True``: for open-probabilities,
        the expected bytes plus the latency times the softmax-weighted mean
        of each point's probabilities (differentiable, see the module).
        """
        total = ops.zeros((self.num_devices,), "float32")
        f = self.link.exchange_seconds
        for t, b, gate in zip(self.terms, self.channel_seconds, gates):
            remote = ops.cast(t.remote, "float32")
            rg = ops.multiply(remote, ops.cast(gate, "float32"))  # (Cin, D) received
            if soft:
                # Weights over each device's remote channels (axis 0); others
                # get none. A device without remote channels has rg = 0.
                scores = ops.where(remote > 0, rg / _SOFT_MAX_TEMPERATURE, -1e9)  # (Cin, D)
                used = ops.sum(ops.softmax(scores, axis=0) * rg, axis=0)  # (D,)
            else:
                used = ops.max(rg, axis=0)  # (D,)
            total = total + b * ops.sum(rg, axis=0) + f * used
        return total

    def cost(self, gates) -> LinkCost:
        """The LinkCost of binary numpy ``gates`` (one (Cin, D) per term)."""
        d = self.num_devices
        secs, points, nbytes = np.zeros((d,)), np.zeros((d,), "int64"), np.zeros((d,), "int64")
        for t, b, gate in zip(self.terms, self.channel_seconds, gates):
            secs += self._seconds_np(t, b, gate)
            rg = t.remote * (np.asarray(gate) > 0.5)
            points += rg.any(axis=0)
            nbytes += (rg.sum(axis=0) * t.positions * self.link.bytes_per_element).astype("int64")
        return LinkCost(
            device_ms=tuple(float(s * 1e3) for s in secs),
            target_ms=tuple(float(s * 1e3) for s in self.target_seconds),
            device_exchange_points=tuple(int(p) for p in points),
            device_bytes=tuple(int(n) for n in nbytes),
        )

    def budget_seconds(self, schedule, step):
        """(D,) each device's budget at ``step``: its dense time annealed to
        its target with the switch's BudgetSchedule (as a time ratio)."""
        dense = np.maximum(self.dense_seconds, 1e-30)
        ratio = np.minimum(self.target_seconds / dense, 1.0)  # (D,)
        return schedule(step, ops.convert_to_tensor(ratio, "float32")) * ops.cast(self.dense_seconds, "float32")

    def penalty(self, expected_seconds, budget_seconds):
        """Mean over devices of the expected time above budget, in units of
        each device's dense time (a byte penalty's scale)."""
        mask = (self.dense_seconds > 0).astype("float32")
        dense = np.maximum(self.dense_seconds, 1e-30).astype("float32")
        over = ops.relu(expected_seconds - budget_seconds) / dense * mask
        return ops.sum(over) / max(float(mask.sum()), 1.0)

    # -- the cut -----------------------------------------------------------------
    def _flatten(self, matrices):
        """(N,) the learned terms' remote entries of ``matrices`` (one (Cin, D) each)."""
        parts = [ops.take(ops.reshape(ops.cast(m, "float32"), (-1,)), e) for m, e in zip(matrices, self.flat)]
        return ops.concatenate(parts) if parts else ops.zeros((0,), "float32")

    def price_cut(self, logits, pins, budget_seconds, per_layer: bool):
        """The price cut of the learned gates (see the module).

        Args:
            logits: (Cin, D) gate logits of each learned term.
            pins: (Cin, D) pins of each learned term (-1 free, 0 shut, 1 open).
            budget_seconds: (D,) each device's time budget.
            per_layer: one decision per layer (training: a layer holds one
                threshold) instead of one per exchange point.

        Returns:
            ``(x, free, selected)``: (N,) logits, free-gate mask and the free
            gates the cut opens.
        """
        p, d = len(self.point_device), self.num_devices
        groups = len(self.learned) if per_layer else p
        point_group = self.point_term if per_layer else np.arange(p, dtype="int32")
        x = self._flatten(logits)  # (N,)
        pin = self._flatten(pins)  # (N,)
        free = ops.less(pin, 0.0)
        pinned = ops.equal(pin, 1.0)
        seconds = ops.convert_to_tensor(self.gate_seconds, "float32")
        f = self.link.exchange_seconds
        # Value of a free gate: its open-probability; 0 never opens.
        z = ops.clip(x / ops.convert_to_tensor(self.temperatures, "float32"), -_LOGIT_CLIP, _LOGIT_CLIP)
        value = ops.where(free, ops.sigmoid(z), 0.0)
        # Gates pinned open: their bytes are spent and their point's latency paid.
        paid = _segment_sum(ops.cast(pinned, "float32"), self.point_ids, p) > 0  # (P,)
        pinned_secs = _segment_sum(ops.where(pinned, seconds, 0.0), self.point_ids, p) + ops.where(paid, f, 0.0)
        fixed = ops.cast(self.fixed_seconds, "float32") + _segment_sum(pinned_secs, self.point_device, d)  # (D,)
        available = ops.cast(budget_seconds, "float32") - fixed  # (D,)
        point_fixed = ops.where(paid, 0.0, f)  # (P,) latency still to pay

        def evaluate(log_price):
            price = ops.exp(log_price)
            worth = value - price * seconds  # (N,)
            sel = ops.greater(worth, 0.0)
            net = _segment_sum(ops.where(sel, worth, 0.0), self.point_ids, p)  # (P,)
            used = _segment_sum(ops.cast(sel, "float32"), self.point_ids, p) > 0  # (P,)
            charge = ops.where(used, point_fixed, 0.0)  # (P,)
            utility = _segment_sum(net - price * charge, point_group, groups)  # (G,)
            opened = ops.take(ops.greater(utility, 0.0), point_group)  # (P,)
            secs = _segment_sum(ops.where(sel, seconds, 0.0), self.point_ids, p) + charge  # (P,)
            device = _segment_sum(ops.where(opened, secs, 0.0), self.point_device, d)  # (D,)
            fits = ops.all(ops.less_equal(device, available * (1.0 + 1e-6) + 1e-12))
            return ops.logical_and(sel, ops.take(opened, self.point_ids)), fits

        def bisect(i, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            fits = evaluate(mid)[1]
            # Invariant: hi fits (at exp(40) nothing opens), lo does not.
            return ops.where(fits, lo, mid), ops.where(fits, mid, hi)

        lo, hi = _LOG_PRICE_BOUNDS
        bounds = (ops.convert_to_tensor(lo, "float32"), ops.convert_to_tensor(hi, "float32"))
        _, hi = ops.fori_loop(0, _BISECTIONS, bisect, bounds)
        return x, free, evaluate(hi)[0]

    def layer_thresholds(self, logits, pins, budget_seconds):
        """Training's cut as one threshold per learned term (layer): the
        lowest logit it opens; a closed layer gets its top free logit plus a
        margin, so its best gates stay just below the cut, where the
        straight-through gradient is largest. Returns (T,) thresholds."""
        t = len(self.learned)
        x, free, sel = self.price_cut(logits, pins, budget_seconds, per_layer=True)
        big = 1e9  # no free gate: the threshold decides nothing
        lowest_open = -ops.segment_max(ops.where(sel, -x, -big), self.term_ids, num_segments=t)  # (T,)
        top_free = ops.segment_max(ops.where(free, x, -big), self.term_ids, num_segments=t)  # (T,)
        any_open = _segment_sum(ops.cast(sel, "float32"), self.term_ids, t) > 0
        any_free = _segment_sum(ops.cast(free, "float32"), self.term_ids, t) > 0
        closed = ops.where(any_free, top_free + 1e-3 * ops.maximum(1.0, ops.abs(top_free)), big)
        return ops.where(any_open, lowest_open, closed)

    def finalize(self, logits) -> list:
        """The finalized cut of all learned gates (none pinned): the price cut
        per exchange point, then the time left spent on open points' next
        channels and then on new points. Returns one (Cin, D) 0/1 numpy
        array per learned term."""
        logits = [np.asarray(v, dtype="float32") for v in logits]
        pins = [np.full(v.shape, -1.0, "float32") for v in logits]
        # A hair of the budget is kept back so float32 rounding in the cut
        # cannot overrun the target; the fill below (float64) spends it.
        budget = self.target_seconds * (1.0 - 1e-5)
        _, _, sel = self.price_cut(logits, pins, budget, per_layer=False)
        sel = np.asarray(ops.convert_to_numpy(sel), dtype=bool).copy()
        x = np.concatenate([v.reshape(-1)[e] for v, e in zip(logits, self.flat)]) if self.flat else np.zeros((0,))
        value = 1.0 / (1.0 + np.exp(-np.clip(x / self.temperatures, -_LOGIT_CLIP, _LOGIT_CLIP)))
        f, p = self.link.exchange_seconds, len(self.point_device)
        # Each point's gates, top logit first (its channels open in that order).
        point_gates = [g[np.argsort(-x[g], kind="stable")] for g in (np.flatnonzero(self.point_ids == q)
                                                                     for q in range(p))]
        opened = np.zeros((p,), bool)
        opened[self.point_ids[sel]] = True
        for k in range(self.num_devices):
            mine = self.point_device[self.point_ids] == k  # (N,) gates into device k
            used = (self.fixed_seconds[k] + self.gate_seconds[sel & mine].sum()
                    + f * opened[self.point_device == k].sum())
            slack = self.target_seconds[k] - used
            # Open points: their next channels cost no latency (best value per second first).
            cand = np.flatnonzero(mine & ~sel & opened[self.point_ids])
            for i in cand[np.argsort(-value[cand] / self.gate_seconds[cand], kind="stable")]:
                if self.gate_seconds[i] <= slack:
                    sel[i] = True
                    slack -= self.gate_seconds[i]
            # New points, while one fits: the one whose top channels that fit
            # are worth most per second of its time.
            while slack > f:
                best = None
                for q in np.flatnonzero((self.point_device == k) & ~opened):
                    gates = point_gates[q]
                    b = self.gate_seconds[gates[0]]
                    n = min(len(gates), int((slack - f) // b))
                    while n >= 1 and f + n * b > slack:  # floor division may round up
                        n -= 1
                    if n >= 1:
                        density = value[gates[:n]].sum() / (f + n * b)
                        if best is None or density > best[0]:
                            best = (density, q, gates[:n], f + n * b)
                if best is None:
                    break
                _, q, top, cost = best
                sel[top] = True
                opened[q] = True
                slack -= cost
        out = []
        for n, i in enumerate(self.learned):
            gate = np.zeros(self.terms[i].remote.size, "float32")
            gate[self.flat[n]] = sel[self.term_ids == n]
            out.append(gate.reshape(self.terms[i].remote.shape))
        return out
