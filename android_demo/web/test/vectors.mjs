// Runs the page's codec (js/frames.js, js/sha256.js) over the shared vectors
// of export/vectors/frames.json and prints what it decoded, encoded and
// rejected as one JSON object; tests/android_demo/test_web.py compares that
// with the vectors' expectations and with the Python codec.
//
//   node android_demo/web/test/vectors.mjs export/vectors/frames.json

import { readFileSync } from 'node:fs';
import {
  FRAME_TYPE_NAMES, FrameError, FrameType, authMac, checkHeader, decodeError, decodeHeader, decodeHello,
  encodeError, encodeHeader, encodeHello,
} from '../js/frames.js';
import { fromHex, sha256, hmacSha256, toHex } from '../js/sha256.js';

const vectors = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = { keys: Object.keys(vectors) };
const DTYPE_NAMES = { 0: null, 1: 'float32', 2: 'int8' };

function codeOf(fn) {
  try {
    fn();
    return null;
  } catch (e) {
    if (e instanceof FrameError) return e.code;
    return `not a FrameError: ${e}`;
  }
}

// Every check of a received frame: as on a ready connection with the
// vectors' context (the peer may send only the listed tensors).
const ctx = vectors.context;
const expected = new Map(ctx.expected_tensors.map((t) => [t.tensor_id, { name: `t${t.tensor_id}`, dtype: t.dtype, shape: t.shape }]));
const opts = { allowed: [1, 2, 3, 4, 5, 6], expected, peerIsInput: ctx.peer_is_input, ready: true, maxFrameBytes: ctx.max_frame_bytes };

// The spec's worked example: decode, check, and encode back.
const worked = fromHex(vectors.worked_example.header_hex);
const h = decodeHeader(worked);
out.worked_example = {
  fields: { type: FRAME_TYPE_NAMES[h.type], flags: h.flags, dtype: DTYPE_NAMES[h.dtype], tensor_id: h.tensorId, payload_len: h.payloadLen, request_id: h.requestId, shape: h.dims },
  checked: checkHeader(worked, { ...opts, messageLen: 64 + 588 }).type,
  encoded_hex: toHex(encodeHeader({ type: FrameType.TENSOR, payloadLen: 588, requestId: 1, tensorId: 7, dtype: 2, dims: [1, 14, 14, 3] })),
};

const hm = vectors.hmac;
const key = new TextEncoder().encode(hm.key_ascii);
const sha = fromHex(hm.graph_sha256_hex), n0 = fromHex(hm.nonce_0_hex), n1 = fromHex(hm.nonce_1_hex);
out.hmac = { mac_0_to_1_hex: toHex(authMac(key, sha, 0, 1, n0, n1)), mac_1_to_0_hex: toHex(authMac(key, sha, 1, 0, n1, n0)) };

// NIST FIPS 180-4 examples and RFC 4231 test case 2 and 6 (key longer than a block).
const ascii = (s) => new TextEncoder().encode(s);
out.sha256 = {
  empty: toHex(sha256(new Uint8Array(0))),
  abc: toHex(sha256(ascii('abc'))),
  two_blocks: toHex(sha256(ascii('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'))),
  million_a: toHex(sha256(new Uint8Array(1000000).fill(0x61))),
  rfc4231_2: toHex(hmacSha256(ascii('Jefe'), ascii('what do ya want for nothing?'))),
  rfc4231_6: toHex(hmacSha256(new Uint8Array(131).fill(0xaa), ascii('Test Using Larger Than Block-Size Key - Hash Key First'))),
};

out.bad_headers = vectors.bad_headers.map((b) => ({ name: b.name, code: codeOf(() => checkHeader(fromHex(b.header_hex), opts)) }));

if (vectors.good_frames) {
  out.good_frames = vectors.good_frames.map((g) => {
    const frame = fromHex(g.frame_hex);
    const d = decodeHeader(frame);
    const f = g.fields;
    // The receiver's view: the frame's own tensor is the one expected from this peer.
    const exp = new Map();
    if (f.type === 'TENSOR') exp.set(f.tensor_id, { name: g.name, dtype: f.dtype, shape: f.shape });
    const code = codeOf(() => checkHeader(frame, { allowed: [1, 3, 4, 5, 6], expected: exp, peerIsInput: true, ready: true, messageLen: frame.length }));
    const helloCode = f.type === 'HELLO' ? codeOf(() => checkHeader(frame, { allowed: [2, 4], ready: false, messageLen: frame.length })) : null;
    const reencoded = new Uint8Array(frame.length);
    reencoded.set(encodeHeader({ type: FrameType[f.type], payloadLen: f.payload_len, requestId: f.request_id, tensorId: f.tensor_id, dtype: f.dtype ? { float32: 1, int8: 2 }[f.dtype] : 0, dims: f.shape }), 0);
    reencoded.set(frame.subarray(64), 64);
    return {
      name: g.name,
      fields: { type: FRAME_TYPE_NAMES[d.type], flags: d.flags, dtype: DTYPE_NAMES[d.dtype], tensor_id: d.tensorId, payload_len: d.payloadLen, request_id: d.requestId, shape: d.dims },
      check_code: f.type === 'HELLO' ? helloCode : code,
      reencoded_hex: toHex(reencoded),
    };
  });
}

if (vectors.error_payloads) {
  out.error_payloads = vectors.error_payloads.map((e) => {
    const d = decodeError(fromHex(e.payload_hex));
    return { code: d.code, tensor_id: d.tensorId, message: d.message, encoded_hex: toHex(encodeError(e.code, e.message, e.tensor_id).subarray(64)) };
  });
}

if (vectors.hello_payloads) {
  out.hello_payloads = vectors.hello_payloads.map((p) => {
    const d = decodeHello(fromHex(p.payload_hex));
    const enc = encodeHello({ graphSha256: fromHex(p.graph_sha256_hex), nonce: fromHex(p.nonce_hex), device: p.device, peerDevice: p.peer_device, switchName: p.switch });
    return { graph_sha256_hex: toHex(d.graphSha256), nonce_hex: toHex(d.nonce), device: d.device, peer_device: d.peerDevice, switch: d.switchName, encoded_hex: toHex(enc.subarray(64)) };
  });
}

if (vectors.bad_payloads) {
  out.bad_payloads = vectors.bad_payloads.map((p) => ({
    name: p.name,
    code: codeOf(() => (p.type === 'HELLO' ? decodeHello : decodeError)(fromHex(p.payload_hex))),
  }));
}

process.stdout.write(JSON.stringify(out));
