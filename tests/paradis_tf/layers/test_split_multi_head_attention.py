import numpy as np
import pytest
import keras

from paradis_tf import Switch
from paradis_tf.layers.split_multi_head_attention import SplitMultiHeadAttention
from tests.paradis_tf.layers.harness import run_layer_test

SWITCHES = "1x1.0,2x0.5,0.5+0.3+0.2,1x0.5"
MULTI = ["2x0.5", "0.5+0.3+0.2"]
H, DH, E = 4, 3, 10


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _layer(shape, rng, gates="learned", switches=SWITCHES):
    layer = SplitMultiHeadAttention(H, DH, switches, gates=gates)
    layer.build(shape)
    for w in layer.weights[:8]:  # kernels and nonzero biases
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.5)
    return layer


def _stock(split, shape):
    stock = keras.layers.MultiHeadAttention(H, DH)
    x = np.zeros(shape, "float32")
    stock(x, x)  # builds
    stock.set_weights(split.get_weights()[:8])
    return stock


def _softmax(s):
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    return p / p.sum(axis=-1, keepdims=True)


def reference(x, weights, switch, gates):
    """Per-device formula, in float64, without masks: device k owns heads
    head_ranges[k] and embedding channels emb_ranges[k]; it reads its own
    embedding channels plus the remote ones whose gate to k is open (rows
    [0, E) of ``gates``), runs attention on its heads, then computes its
    output channels from its own head outputs plus the remote head channels
    whose gate to k is open (rows [E, E + H*dh))."""
    wq, bq, wk, bk, wv, bv, wo, bo = [np.asarray(w, np.float64) for w in weights]
    sw = Switch.parse(switch)
    b = x.shape[0]
    x = x.reshape(b, -1, E).astype(np.float64)  # (B, T, E)
    emb = sw.partition(E)
    heads = sw.partition(H * DH, group=DH)
    reads = lambda k, ranges, offset: sorted(
        [c for c in ranges[k]] + [c for j, r in enumerate(ranges) if j != k for c in r if gates[offset + c, k]])
    head_out = np.zeros((b, x.shape[1], H * DH))
    for k in range(sw.num_devices):
        rows = reads(k, emb, 0)
        for head in range(heads[k].start // DH, heads[k].stop // DH):
            q = x[..., rows] @ wq[rows, head] + bq[head]  # (B, T, dh)
            kk = x[..., rows] @ wk[rows, head] + bk[head]
            v = x[..., rows] @ wv[rows, head] + bv[head]
            p = _softmax(q @ kk.transpose(0, 2, 1) / np.sqrt(DH))
            head_out[..., head * DH : (head + 1) * DH] = p @ v
    out = np.zeros((b, x.shape[1], E))
    wo = wo.reshape(H * DH, E)
    for k in range(sw.num_devices):
        rows = reads(k, heads, E)
        cols = list(emb[k])
        out[..., cols] = head_out[..., rows] @ wo[np.ix_(rows, cols)] + bo[cols]
    return out


@pytest.mark.parametrize("shape", [(2, 6, E), (2, 3, 2, E)])
def test_layer_harness(shape, tmp_path):
    run_layer_test(lambda: SplitMultiHeadAttention(H, DH, SWITCHES), shape[1:], SWITCHES, tmp_path)


@pytest.mark.parametrize("switch", ["1x1.0"] + MULTI)
@pytest.mark.parametrize("shape", [(2, 6, E), (2, 3, 2, E)])
def test_open_gates_equal_stock_multi_head_attention(switch, shape, rng):
    x = rng.normal(size=shape).astype("float32")
    split = _layer(shape, rng, gates="open")
    flat = x.reshape(shape[0], -1, E)
    expected = _np(_stock(split, flat.shape)(flat, flat)).reshape(shape)
    np.testing.assert_allclose(_np(split(x, switch=switch)), expected, atol=1e-5)


@pytest.mark.parametrize("switch", MULTI)
@pytest.mark.parametrize("mode", ["shut", "random"])
def test_gated_attention_equals_numpy_reference(switch, mode, rng):
    shape = (2, 3, 2, E)
    x = rng.normal(size=shape).astype("float32")
    split = _layer(shape, rng, gates="shut" if mode == "shut" else "learned")
    d = Switch.parse(switch).num_devices
    gates = np.zeros((E + H * DH, d), "float32")
    if mode == "random":
        gates = (rng.random(gates.shape) < 0.5).astype("float32")
        split.pin_gates(switch, gates)
    expected = reference(x, split.get_weights()[:8], switch, gates).reshape(shape)
    np.testing.assert_allclose(_np(split(x, switch=switch)), expected, atol=1e-5)


def test_narrow_switch_is_the_narrow_attention(rng):
    # 1x0.5: 2 of 4 heads, 5 of 10 embedding channels: MultiHeadAttention of
    # the sub-network (its first heads, first channels); the rest exactly 0.
    shape = (2, 6, E)
    x = rng.normal(size=shape).astype("float32")
    split = _layer(shape, rng)
    wq, bq, wk, bk, wv, bv, wo, bo = split.get_weights()[:8]
    stock = keras.layers.MultiHeadAttention(2, DH)
    xs = x[..., :5]
    stock(xs, xs)
    stock.set_weights([wq[:5, :2], bq[:2], wk[:5, :2], bk[:2], wv[:5, :2], bv[:2], wo[:2, :, :5], bo[:5]])
    out = _np(split(x, switch="1x0.5"))
    np.testing.assert_allclose(out[..., :5], _np(stock(xs, xs)), atol=1e-5)
    assert not out[..., 5:].any()


def test_traffic_per_token_by_hand():
    # E=8, 2 heads of 4, 2x0.5, gates open, 5 tokens, 1 B per element. Device
    # k owns 4 embedding channels and one head (4 channels). It sends its 4
    # embedding channels (for the other's Q, K, V: one send) and its 4 head
    # channels (for the other's output projection): 8 channels x 5 tokens.
    layer = SplitMultiHeadAttention(2, 4, "1x1.0,2x0.5", gates="open")
    layer.build((None, 5, 8))
    cost = layer.switch_cost("2x0.5", (1, 5, 8), bytes_per_element=1)
    assert cost.bytes_sent == (40, 40) and cost.bytes_received == (40, 40)
    assert cost.dense_bytes_sent == (40, 40)
    # Q, K, V: 8 inputs -> 4 head channels (+4 bias) each; output: 8 head channels -> 4 (+4).
    assert cost.params == (3 * (8 * 4 + 4) + 8 * 4 + 4,) * 2
    # 2*T*3*8*4 (QKV) + 2*2*T*T*4 (scores and weighted sum) + 2*T*8*4 (output).
    assert cost.flops == (960 + 400 + 320,) * 2
    shut = SplitMultiHeadAttention(2, 4, "1x1.0,2x0.5", gates="shut")
    shut.build((None, 5, 8))
    assert shut.switch_cost("2x0.5", (1, 5, 8)).bytes_sent == (0, 0)
    assert layer.unsplit_cost((1, 5, 8)) == (3 * (64 + 8) + 64 + 8, 2 * 5 * 3 * 64 + 4 * 25 * 8 + 2 * 5 * 64)


def test_heads_that_cannot_be_divided_are_refused():
    with pytest.raises(ValueError, match=r"num_heads=2 cannot be divided among the 4 devices of switch '4x0.25'"):
        SplitMultiHeadAttention(2, 8, "1x1.0,4x0.25")
    with pytest.raises(ValueError, match=r"num_heads=2 .* switch '0.5\+0.3\+0.2'.*\[1, 1, 0\]"):
        SplitMultiHeadAttention(2, 8, "1x1.0,0.5+0.3+0.2")
    with pytest.raises(ValueError, match="num_heads must be a positive int, received 0"):
        SplitMultiHeadAttention(0, 8, "1x1.0")
    with pytest.raises(ValueError, match="does not take partial_outputs=True"):
        SplitMultiHeadAttention(2, 8, "1x1.0", partial_outputs=True)


def test_gate_weight_norms_cover_both_row_blocks(rng):
    # The weight-norm ranking (GateRanking(score="weight_norm")) reads these.
    layer = _layer((None, 6, E), rng)
    q, k, v, o = (_np(w) for w in (layer.query_kernel, layer.key_kernel, layer.value_kernel, layer.output_kernel))
    qkv = sum(w.reshape(E, H * DH) ** 2 for w in (q, k, v))  # (E, H*dh)
    out = o.reshape(H * DH, E) ** 2  # (H*dh, E)
    # 2x0.5: embedding channels [0, 5) | [5, 10), head channels [0, 6) | [6, 12).
    into_heads = np.stack([qkv[:, :6].sum(1), qkv[:, 6:].sum(1)], axis=1)  # (E, 2)
    into_emb = np.stack([out[:, :5].sum(1), out[:, 5:].sum(1)], axis=1)  # (H*dh, 2)
    expected = np.sqrt(np.concatenate([into_heads, into_emb]))
    np.testing.assert_allclose(_np(layer.gate_weight_norms("2x0.5")), expected, rtol=1e-5)
    assert layer.gate_weight_norms("2x0.5").shape == tuple(layer.gate_variables("2x0.5").logits.shape)
