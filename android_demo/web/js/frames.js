// The wire frames of export/FRAME_FORMAT.md (version 1), byte for byte: the
// JavaScript twin of paradis_runtime/frames.py.
//
// A frame is a 64-byte little-endian header and payload_len payload bytes;
// over WebSocket each frame is one binary message. checkHeader() applies the
// spec's section 6 checks in its order, so the first failure gets the
// specified code, and nothing of the payload is touched before they all pass.
// No sockets and no connection state here: the caller passes what its state
// decides (allowed types, the tensors expected from this peer).

import { hmacSha256 } from './sha256.js';

export const MAGIC = new Uint8Array([0x50, 0x52, 0x44, 0x53]); // "PRDS"
export const VERSION = 1;
export const HEADER_LEN = 64;
export const MAX_FRAME_BYTES = 64 * 1024 * 1024; // default cap, header included
export const MAX_REQUEST_ID = 2 ** 53 - 1; // request ids fit a Number exactly
export const NO_TENSOR = 0xffffffff;
export const MIN_KEY_BYTES = 16;
const PRE_READY_PAYLOAD = 1032; // HELLO <= 324, ERROR <= 1032 before ready
const AUTH_LABEL = new TextEncoder().encode('PRDS-AUTH-1'); // 11 bytes, no terminator

export const FrameType = Object.freeze({ TENSOR: 1, HELLO: 2, AUTH: 3, ERROR: 4, HEARTBEAT: 5, CANCEL: 6 });
export const FRAME_TYPE_NAMES = Object.freeze(Object.fromEntries(Object.entries(FrameType).map(([k, v]) => [v, k])));

export const ErrorCode = Object.freeze({
  BAD_MAGIC: 1, UNSUPPORTED_VERSION: 2, BAD_HEADER: 3, BAD_TYPE: 4, BAD_FLAGS: 5, TOO_LARGE: 6,
  UNEXPECTED_FRAME: 7, BAD_PAYLOAD: 8, GRAPH_MISMATCH: 9, BAD_DEVICE: 10, AUTH_FAILED: 11,
  HANDSHAKE_TIMEOUT: 12, UNKNOWN_TENSOR: 13, BAD_DTYPE: 14, BAD_SHAPE: 15, BAD_LENGTH: 16,
  BAD_REQUEST_ID: 17, DUPLICATE_TENSOR: 18, DEVICE_IN_USE: 19, SHUTTING_DOWN: 64, STAGE_FAILED: 128, OVERLOADED: 129,
  DEADLINE_EXCEEDED: 130,
});
const CODE_NAMES = Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k]));

/** The name of an error code, or "code N" for one this version does not know. */
export function errorName(code) {
  return CODE_NAMES[code] ?? `code ${code}`;
}

// Graph dtype -> wire code and itemsize (section 4).
export const DTYPES = Object.freeze({ float32: { code: 1, itemsize: 4 }, int8: { code: 2, itemsize: 1 } });

// Section 3: [lowest, highest] request_id per type, payload_len per non-TENSOR type.
const REQUEST_RANGE = {
  1: [1, MAX_REQUEST_ID], 2: [0, 0], 3: [0, 0], 4: [0, MAX_REQUEST_ID], 5: [0, 0], 6: [1, MAX_REQUEST_ID],
};
const PAYLOAD_RANGE = { 2: [70, 324], 3: [32, 32], 4: [8, 1032], 5: [0, 0], 6: [0, 0] };

/** A frame that breaks the spec: `code` is what the ERROR frame carries. */
export class FrameError extends Error {
  constructor(code, detail) {
    super(`${errorName(code)}: ${detail}`);
    this.name = 'FrameError';
    this.code = code;
    this.detail = detail;
  }
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new Uint8Array(data);
}

/**
 * The 64 header bytes of `h`: {type, payloadLen, requestId, tensorId, dtype, dims, flags, version}.
 * payloadLen and requestId are Numbers (< 2^53) or BigInts.
 */
export function encodeHeader(h) {
  const dims = h.dims ?? [];
  if (dims.length > 6) throw new Error(`encodeHeader: dims holds at most 6 entries (rank <= 6), received ${JSON.stringify(dims)}`);
  const out = new Uint8Array(HEADER_LEN);
  const v = new DataView(out.buffer);
  out.set(MAGIC, 0);
  v.setUint8(4, h.version ?? VERSION);
  v.setUint8(5, h.type);
  v.setUint16(6, h.flags ?? 0, true);
  v.setUint16(8, HEADER_LEN, true);
  v.setUint8(10, h.dtype ?? 0);
  v.setUint8(11, dims.length);
  v.setUint32(12, h.tensorId ?? 0, true);
  v.setBigUint64(16, BigInt(h.payloadLen ?? 0), true);
  v.setBigUint64(24, BigInt(h.requestId ?? 0), true);
  for (let i = 0; i < dims.length; i++) v.setUint32(32 + 4 * i, dims[i], true);
  return out;
}

/** Every field of the first 64 bytes, unchecked (BigInt u64s). */
function unpack(bytes) {
  if (bytes.length < HEADER_LEN) {
    throw new FrameError(ErrorCode.BAD_HEADER, `a header is ${HEADER_LEN} bytes, received ${bytes.length}`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, HEADER_LEN);
  const dims = [];
  for (let i = 0; i < 6; i++) dims.push(v.getUint32(32 + 4 * i, true));
  let reservedZero = true;
  for (let i = 56; i < 64; i++) if (bytes[i] !== 0) reservedZero = false;
  return {
    magicOk: bytes[0] === MAGIC[0] && bytes[1] === MAGIC[1] && bytes[2] === MAGIC[2] && bytes[3] === MAGIC[3],
    version: v.getUint8(4), type: v.getUint8(5), flags: v.getUint16(6, true), headerLen: v.getUint16(8, true),
    dtype: v.getUint8(10), rank: v.getUint8(11), tensorId: v.getUint32(12, true),
    payloadLen: v.getBigUint64(16, true), requestId: v.getBigUint64(24, true), dims, reservedZero,
  };
}

/** Unpacks a header without checking it (checkHeader does): Numbers where exact, BigInt u64s as `*Big`. */
export function decodeHeader(data) {
  const f = unpack(asBytes(data));
  return {
    version: f.version, type: f.type, flags: f.flags, headerLen: f.headerLen, dtype: f.dtype, rank: f.rank,
    tensorId: f.tensorId, payloadLenBig: f.payloadLen, requestIdBig: f.requestId,
    payloadLen: Number(f.payloadLen), requestId: Number(f.requestId),
    dims: f.rank <= 6 ? f.dims.slice(0, f.rank) : f.dims,
  };
}

/**
 * Validates a received header in section 6's order; throws FrameError with the
 * first failing check's code. Returns {type, payloadLen, requestId, tensorId, dtype, dims, name}.
 *
 * opts.allowed: frame types the connection's state allows now.
 * opts.expected: Map tensor id -> {name, dtype, shape} this peer may send.
 * opts.peerIsInput: the peer is the graph's input device (may CANCEL).
 * opts.ready: the handshake completed (before it, payloads cap at 1032 B).
 * opts.maxFrameBytes: the cap on 64 + payload_len.
 * opts.messageLen: WebSocket: the message's length, which must equal the frame's.
 */
export function checkHeader(data, opts = {}) {
  const allowed = opts.allowed ?? [1, 2, 3, 4, 5, 6];
  const ready = opts.ready ?? true;
  const cap = BigInt(opts.maxFrameBytes ?? MAX_FRAME_BYTES);
  // 1. exactly 64 header bytes (a WebSocket message of >= 64)
  const f = unpack(asBytes(data));
  // 2. magic, version, header_len, reserved
  if (!f.magicOk) {
    const b = asBytes(data);
    throw new FrameError(ErrorCode.BAD_MAGIC, `magic is ${Array.from(b.subarray(0, 4), (x) => x.toString(16).padStart(2, '0')).join(' ')}, expected 50 52 44 53 ("PRDS")`);
  }
  if (f.version !== VERSION) throw new FrameError(ErrorCode.UNSUPPORTED_VERSION, `version ${f.version}, this peer speaks ${VERSION}`);
  if (f.headerLen !== HEADER_LEN || !f.reservedZero) {
    throw new FrameError(ErrorCode.BAD_HEADER, `header_len ${f.headerLen} (expected 64) or reserved bytes set`);
  }
  // 3. type, flags
  if (!(f.type >= 1 && f.type <= 6)) throw new FrameError(ErrorCode.BAD_TYPE, `frame type ${f.type} is not 1..6`);
  const typeName = FRAME_TYPE_NAMES[f.type];
  if (f.flags) throw new FrameError(ErrorCode.BAD_FLAGS, `flags 0x${f.flags.toString(16).padStart(4, '0')}: version 1 defines none`);
  // 4. size cap, compared as unsigned 64-bit BigInts before any conversion
  const frameLen = BigInt(HEADER_LEN) + f.payloadLen;
  if (frameLen > cap) throw new FrameError(ErrorCode.TOO_LARGE, `frame of ${frameLen} bytes, cap ${cap}`);
  if (opts.messageLen !== undefined && opts.messageLen !== null && BigInt(opts.messageLen) !== frameLen) {
    throw new FrameError(ErrorCode.BAD_LENGTH, `message of ${opts.messageLen} bytes for a frame of ${frameLen}`);
  }
  const payloadLen = Number(f.payloadLen); // exact: below the cap
  // 5. allowed in this state; CANCEL only from the input device
  if (!allowed.includes(f.type) || (f.type === FrameType.CANCEL && !opts.peerIsInput)) {
    throw new FrameError(ErrorCode.UNEXPECTED_FRAME, `${typeName} is not allowed here`);
  }
  // 6. request id range; zero fields and payload range of control frames
  const [lowR, highR] = REQUEST_RANGE[f.type];
  if (f.requestId < BigInt(lowR) || f.requestId > BigInt(highR)) {
    throw new FrameError(ErrorCode.BAD_REQUEST_ID, `request_id ${f.requestId} outside ${lowR}..${highR} for ${typeName}`);
  }
  const requestId = Number(f.requestId);
  if (f.type !== FrameType.TENSOR) {
    if (f.dtype || f.rank || f.tensorId || f.dims.some((d) => d !== 0)) {
      throw new FrameError(ErrorCode.BAD_HEADER, `${typeName}: dtype, rank, tensor_id and dims must be 0`);
    }
    let [low, high] = PAYLOAD_RANGE[f.type];
    if (!ready) high = Math.min(high, PRE_READY_PAYLOAD);
    if (payloadLen < low || payloadLen > high) {
      throw new FrameError(ErrorCode.BAD_PAYLOAD, `${typeName} payload of ${payloadLen} bytes, expected ${low}..${high}`);
    }
    return { type: f.type, payloadLen, requestId, tensorId: 0, dtype: 0, dims: [] };
  }
  // 7. TENSOR against the graph
  const spec = opts.expected ? opts.expected.get(f.tensorId) : undefined;
  if (spec === undefined) throw new FrameError(ErrorCode.UNKNOWN_TENSOR, `tensor id ${f.tensorId} is not expected from this peer`);
  if (f.dtype !== DTYPES[spec.dtype].code) {
    throw new FrameError(ErrorCode.BAD_DTYPE, `dtype code ${f.dtype}, the graph's ${spec.name} is ${spec.dtype}`);
  }
  const shape = spec.shape;
  const shapeOk = f.rank === shape.length && shape.every((d, i) => f.dims[i] === d) && f.dims.slice(f.rank).every((d) => d === 0);
  if (!shapeOk) {
    throw new FrameError(ErrorCode.BAD_SHAPE, `rank ${f.rank} dims [${f.dims.join(', ')}], the graph's ${spec.name} is [${shape.join(', ')}]`);
  }
  const need = shape.reduce((a, b) => a * b, 1) * DTYPES[spec.dtype].itemsize;
  if (payloadLen !== need) throw new FrameError(ErrorCode.BAD_LENGTH, `payload_len ${payloadLen}, ${spec.name} needs ${need}`);
  return { type: f.type, payloadLen, requestId, tensorId: f.tensorId, dtype: f.dtype, dims: shape.slice(), name: spec.name };
}

/** One TENSOR frame (header + payload in one buffer: one WebSocket message). `payload`: the tensor's bytes. */
export function tensorFrame(tensorId, requestId, payload, dtype, shape) {
  const bytes = asBytes(payload);
  const out = new Uint8Array(HEADER_LEN + bytes.length);
  out.set(encodeHeader({ type: FrameType.TENSOR, payloadLen: bytes.length, requestId, tensorId, dtype: DTYPES[dtype].code, dims: shape }), 0);
  out.set(bytes, HEADER_LEN);
  return out;
}

/** A control frame with no payload (HEARTBEAT, CANCEL). */
export function emptyFrame(type, requestId = 0) {
  return encodeHeader({ type, requestId });
}

/** A whole HELLO frame: {graphSha256 (32 B), nonce (32 B), device, peerDevice, switchName}. */
export function encodeHello({ graphSha256, nonce, device, peerDevice, switchName }) {
  const name = new TextEncoder().encode(switchName);
  if (name.length < 1 || name.length > 255 || /[^\x00-\x7f]/.test(switchName) || graphSha256.length !== 32 || nonce.length !== 32) {
    throw new Error(`encodeHello: needs a 32-byte hash, a 32-byte nonce and a 1..255-byte ASCII switch, received ${graphSha256.length}, ${nonce.length} and ${JSON.stringify(switchName)}`);
  }
  const payload = new Uint8Array(69 + name.length);
  payload.set(graphSha256, 0);
  payload.set(nonce, 32);
  const v = new DataView(payload.buffer);
  v.setUint16(64, device, true);
  v.setUint16(66, peerDevice, true);
  v.setUint8(68, name.length);
  payload.set(name, 69);
  const out = new Uint8Array(HEADER_LEN + payload.length);
  out.set(encodeHeader({ type: FrameType.HELLO, payloadLen: payload.length }), 0);
  out.set(payload, HEADER_LEN);
  return out;
}

/** A HELLO payload -> {graphSha256, nonce, device, peerDevice, switchName}; BAD_PAYLOAD on a broken layout. */
export function decodeHello(data) {
  const p = asBytes(data);
  if (p.length < 70 || p.length !== 69 + p[68]) {
    throw new FrameError(ErrorCode.BAD_PAYLOAD, `HELLO payload of ${p.length} bytes does not match its switch_len`);
  }
  const name = p.subarray(69);
  if (name.some((b) => b > 0x7f)) throw new FrameError(ErrorCode.BAD_PAYLOAD, 'HELLO switch name is not ASCII');
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  return {
    graphSha256: p.slice(0, 32), nonce: p.slice(32, 64), device: v.getUint16(64, true),
    peerDevice: v.getUint16(66, true), switchName: String.fromCharCode(...name),
  };
}

/** The session key as bytes (a string is taken as UTF-8); refuses one shorter than 16 bytes. */
export function checkKey(key) {
  const bytes = typeof key === 'string' ? new TextEncoder().encode(key) : asBytes(key);
  if (bytes.length < MIN_KEY_BYTES) {
    throw new Error(`the session key must be at least ${MIN_KEY_BYTES} bytes, received ${bytes.length}; 32 random bytes written as hex are recommended.`);
  }
  return bytes;
}

/** HMAC-SHA256(K, "PRDS-AUTH-1" | graph_sha256 | u16(X) | u16(Y) | nonce_X | nonce_Y), X the AUTH's sender. */
export function authMac(key, graphSha256, sender, receiver, nonceSender, nonceReceiver) {
  const m = new Uint8Array(111);
  m.set(AUTH_LABEL, 0);
  m.set(graphSha256, 11);
  const v = new DataView(m.buffer);
  v.setUint16(43, sender, true);
  v.setUint16(45, receiver, true);
  m.set(nonceSender, 47);
  m.set(nonceReceiver, 79);
  return hmacSha256(checkKey(key), m);
}

/** A whole AUTH frame carrying `mac`. */
export function encodeAuth(mac) {
  const out = new Uint8Array(HEADER_LEN + 32);
  out.set(encodeHeader({ type: FrameType.AUTH, payloadLen: 32 }), 0);
  out.set(mac, HEADER_LEN);
  return out;
}

/** A whole ERROR frame; the message is cut to 1024 UTF-8 bytes, never inside a character. */
export function encodeError(code, message = '', tensorId = null, requestId = 0) {
  let text = new TextEncoder().encode(message);
  if (text.length > 1024) {
    let n = 1024;
    while (n > 0 && (text[n] & 0xc0) === 0x80) n--; // text[n] starts the first character left out
    text = text.slice(0, n);
  }
  const out = new Uint8Array(HEADER_LEN + 8 + text.length);
  out.set(encodeHeader({ type: FrameType.ERROR, payloadLen: 8 + text.length, requestId }), 0);
  const v = new DataView(out.buffer);
  v.setUint16(HEADER_LEN, code, true);
  v.setUint16(HEADER_LEN + 2, text.length, true);
  v.setUint32(HEADER_LEN + 4, tensorId === null || tensorId === undefined ? NO_TENSOR : tensorId, true);
  out.set(text, HEADER_LEN + 8);
  return out;
}

/** An ERROR payload -> {code, tensorId (null for none), message}; BAD_PAYLOAD on a broken layout. */
export function decodeError(data) {
  const p = asBytes(data);
  if (p.length < 8) throw new FrameError(ErrorCode.BAD_PAYLOAD, `ERROR payload of ${p.length} bytes, at least 8`);
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const code = v.getUint16(0, true), n = v.getUint16(2, true), tensorId = v.getUint32(4, true);
  if (n > 1024 || p.length !== 8 + n) {
    throw new FrameError(ErrorCode.BAD_PAYLOAD, `ERROR message_len ${n} for a payload of ${p.length} bytes`);
  }
  return { code, tensorId: tensorId === NO_TENSOR ? null : tensorId, message: new TextDecoder('utf-8', { fatal: false }).decode(p.subarray(8)) };
}
