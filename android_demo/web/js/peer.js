// This page's device of one switch: the twin of paradis_runtime/peer.py
// (and, on the input device, of coordinator.py).
//
// It keeps one link per neighbouring device (through the relay), runs each
// stage of a request as soon as the stage's inputs have arrived (one stage at
// a time, as a phone would), sends each output right after the stage that
// made it to the devices the graph's `sends` name, and keeps the request
// deadlines, max_inflight, the ring of finished ids, heartbeats and the peer
// deadline of FRAME_FORMAT.md section 7; frames for a link being remade are
// held up to the peer deadline, as the Python and Java peers hold them. The
// input device also feeds the image, fuses the partial outputs (js/graph.js
// fusePartials) and times each inference: compute, wire and wait on this
// device, bytes and arrival per peer.

import { Connection } from './connection.js';
import {
  ErrorCode, FrameError, FrameType, HEADER_LEN, decodeError, emptyFrame, encodeError, errorName, tensorFrame,
} from './frames.js';
import { fusePartials, quantizeInput } from './graph.js';

const RING = 256;
const TICK_MS = 50;
// Frames held for one missing link, per live request a peer may hold (as the Python and Java peers).
const HELD_PER_REQUEST = 4;
// A peer that refuses the handshake for one of these is misconfigured: redialing cannot help.
const FATAL = new Set([ErrorCode.GRAPH_MISMATCH, ErrorCode.BAD_DEVICE, ErrorCode.AUTH_FAILED, ErrorCode.UNSUPPORTED_VERSION, ErrorCode.BAD_MAGIC]);

function wireArray(spec, payload) {
  // A copy into an aligned buffer (the payload sits at offset 64 of the message).
  const bytes = payload.slice();
  return spec.dtype === 'float32' ? new Float32Array(bytes.buffer) : new Int8Array(bytes.buffer);
}

class Request {
  constructor(rid) {
    this.rid = rid;
    this.created = performance.now();
    this.tensors = new Map();
    this.next = 0;
    this.computeMs = 0;
    this.wireMs = 0;
    this.bytesSent = 0;
    this.arrivals = {}; // device -> ms after `created` of its last frame
    this.bytesFrom = {}; // device -> bytes received
    this.resolve = null;
    this.reject = null;
  }
}

export class Peer {
  /**
   * program: js/graph.js deviceProgram; engine: js/engine.js LiteRtEngine;
   * relayUrl(peer) -> the WebSocket URL of the link to `peer`;
   * key: session key bytes; graphSha256: the graph file's digest;
   * ui: {status(text), error(text), log(text), stats(record)} callbacks.
   */
  constructor({ program, engine, relayUrl, key, graphSha256, config, ui }) {
    this.program = program;
    this.engine = engine;
    this.relayUrl = relayUrl;
    this.key = key;
    this.sha = graphSha256;
    this.config = config;
    this.ui = ui;
    this.conns = new Map(); // peer device -> ready Connection
    this.dialing = new Map(); // peer device -> Connection in its handshake
    this.stopped = new Map(); // peer device -> fatal reason (no more redials)
    this.live = new Map(); // request id -> Request (insertion order = age)
    this.held = new Map(); // peer device -> [{deadline, frame}]: frames for a link being remade
    this.ring = [];
    this.ringSet = new Set();
    this.computeChain = Promise.resolve();
    this.nextRid = null;
    this.running = false;
    this.history = [];
  }

  start() {
    this.running = true;
    for (const d of this.program.neighbours) this._dial(d, 0);
    this.tick = setInterval(() => this._tick(), TICK_MS);
    return this;
  }

  stop() {
    this.running = false;
    clearInterval(this.tick);
    this.held.clear();
    for (const c of [...this.conns.values(), ...this.dialing.values()]) c.fail(ErrorCode.SHUTTING_DOWN, `device ${this.program.device} is leaving`, 1001);
  }

  get allReady() {
    return this.program.neighbours.every((d) => this.conns.has(d));
  }

  // -- links ----------------------------------------------------------------------------------------
  _dial(d, backoffMs) {
    if (!this.running || this.stopped.has(d)) return;
    const conn = new Connection({
      url: this.relayUrl(d), program: this.program, graphSha256: this.sha, key: this.key, peer: d, config: this.config,
      events: {
        onReady: (c) => this._ready(c),
        onFrame: (c, h, payload) => this._frame(c, h, payload),
        onClose: (c, info) => this._closed(c, info, backoffMs),
      },
    });
    this.dialing.set(d, conn);
    this.ui.status(`waiting for device ${d} to join (switch ${this.program.switchName})`);
  }

  _ready(conn) {
    this.dialing.delete(conn.peer);
    // A page holds at most one connection per peer: it dials each once at start and again only from
    // _closed, after the last one ended, so there is never an older ready one to replace here.
    this.conns.set(conn.peer, conn);
    if (conn.peer === this.program.inputDevice && !this.program.isInput) this._dropAll(); // fresh ids (section 7)
    const held = this.held.get(conn.peer) ?? [];
    this.held.delete(conn.peer);
    const now = performance.now();
    for (const h of held) if (h.deadline >= now) conn.send(h.frame);
    this.ui.log(`device ${conn.peer}: connected and authenticated`);
    if (this.allReady) this.ui.status(`ready: device ${this.program.device} of ${this.program.numDevices}, switch ${this.program.switchName}`);
  }

  _closed(conn, info, backoffMs) {
    if (this.dialing.get(conn.peer) === conn) this.dialing.delete(conn.peer);
    const wasCurrent = this.conns.get(conn.peer) === conn;
    if (wasCurrent) this.conns.delete(conn.peer);
    if (!this.running) return;
    if (info.code !== null && info.code !== undefined && FATAL.has(info.code)) {
      const msg = `link to device ${conn.peer} refused: ${info.reason}. Fix the session key, the device number or the bundle and reload the page.`;
      this.stopped.set(conn.peer, msg);
      this.held.delete(conn.peer);
      this.ui.error(msg);
      this._failLive(msg, conn.peer);
      return;
    }
    if (wasCurrent || info.wasReady) {
      const msg = `lost device ${conn.peer}: ${info.reason}`;
      this.ui.error(msg);
      // The input device abandons what needs the lost device (section 7: every request needs every
      // device's partial). Another device keeps its requests: their frames for the lost device are held
      // up to the peer deadline while the link is remade (a link between two phones that drops and comes
      // back loses nothing, as with the Python and Java peers); the request deadline ends the rest.
      if (this.program.isInput) {
        this.held.delete(conn.peer); // frames of the requests abandoned here: none is wanted any more
        this._failLive(msg, conn.peer);
      }
    } else if (info.reason) {
      this.ui.log(`device ${conn.peer}: ${info.reason}; retrying`);
    }
    const next = Math.min(2000, Math.max(200, backoffMs * 2));
    setTimeout(() => this._dial(conn.peer, wasCurrent ? 0 : next), wasCurrent ? 200 : next);
  }

  // -- frames ---------------------------------------------------------------------------------------
  _frame(conn, h, payload) {
    if (h.type === FrameType.TENSOR) {
      if (this.ringSet.has(h.requestId)) return; // finished or abandoned: dropped (section 6 step 8)
      let st = this.live.get(h.requestId);
      if (st === undefined) {
        if (this.program.isInput) return; // the input device makes every id: an unknown one is stale
        st = this._newRequest(h.requestId);
      }
      if (st.tensors.has(h.name)) throw new FrameError(ErrorCode.DUPLICATE_TENSOR, `tensor '${h.name}' twice for request ${h.requestId}`);
      st.tensors.set(h.name, wireArray(this.program.specs[h.name], payload));
      st.arrivals[conn.peer] = performance.now() - st.created;
      st.bytesFrom[conn.peer] = (st.bytesFrom[conn.peer] ?? 0) + HEADER_LEN + payload.length;
      this._kick(h.requestId);
    } else if (h.type === FrameType.CANCEL) {
      this._drop(h.requestId);
    } else if (h.type === FrameType.ERROR) {
      const { code, message } = decodeError(payload); // its layout was checked by the connection
      this._requestFailed(h.requestId, `device ${conn.peer} reports ${errorName(code)}: ${message}`);
    }
  }

  _newRequest(rid) {
    while (this.live.size >= this.config.maxInflight) {
      const oldest = this.live.keys().next().value;
      this._drop(oldest);
      if (!this.program.isInput) this._notifyInput(ErrorCode.OVERLOADED, oldest, `device ${this.program.device} holds ${this.config.maxInflight} live requests`);
    }
    const st = new Request(rid);
    this.live.set(rid, st);
    return st;
  }

  _drop(rid) {
    const st = this.live.get(rid);
    this.live.delete(rid);
    if (!this.ringSet.has(rid)) {
      if (this.ring.length === RING) this.ringSet.delete(this.ring.shift());
      this.ring.push(rid);
      this.ringSet.add(rid);
    }
    return st;
  }

  _dropAll() {
    for (const rid of [...this.live.keys()]) this.live.delete(rid);
  }

  _notifyInput(code, rid, message) {
    const c = this.conns.get(this.program.inputDevice);
    if (c) c.send(encodeError(code, message, null, rid));
  }

  _kick(rid) {
    // One stage at a time on this device: a promise chain serializes them.
    this.computeChain = this.computeChain.then(() => this._advance(rid)).catch((e) => {
      const msg = `${e.name}: ${String(e.message).split('\n')[0].slice(0, 300)}`;
      this._drop(rid);
      if (!this.program.isInput) this._notifyInput(ErrorCode.STAGE_FAILED, rid, `device ${this.program.device}: ${msg}`);
      this._requestFailed(rid, `device ${this.program.device}: a stage failed: ${msg}`, true);
    });
  }

  async _advance(rid) {
    const p = this.program;
    for (;;) {
      const st = this.live.get(rid);
      if (st === undefined) return;
      if (st.next >= p.stages.length) break;
      const stage = p.stages[st.next];
      if (!stage.inputs.every((t) => st.tensors.has(t))) return;
      const feeds = Object.fromEntries(stage.inputs.map((t) => [t, st.tensors.get(t)]));
      const t0 = performance.now();
      const outputs = await this.engine.run(stage, feeds);
      st.computeMs += performance.now() - t0;
      st.next += 1;
      for (const name of stage.outputs) {
        st.tensors.set(name, outputs[name]);
        for (const d of p.sendTo.get(name) ?? []) {
          const w0 = performance.now();
          const frame = tensorFrame(p.specs[name].id, rid, outputs[name], p.specs[name].dtype, p.specs[name].shape);
          if (this._sendTo(d, frame)) st.bytesSent += frame.length;
          else this.ui.log(`request ${rid}: no link to device ${d} for '${name}'`);
          st.wireMs += performance.now() - w0;
        }
      }
    }
    const st = this.live.get(rid);
    if (st === undefined) return;
    if (p.isFusion) {
      if (!p.fusion.inputs.every((t) => st.tensors.has(t))) return; // partials still in flight
      this._drop(rid);
      const output = fusePartials(p.fusion, p.fusionQuant, p.fusion.inputs.map((t) => st.tensors.get(t)));
      this._finish(st, output);
    } else {
      this._drop(rid);
      this._finish(st, null);
    }
  }

  /** One frame to device `d`; with no link it is held up to the peer deadline. False if neither. */
  _sendTo(d, frame) {
    const c = this.conns.get(d);
    if (c && c.send(frame)) return true;
    if (!this.running || this.stopped.has(d)) return false;
    const held = this.held.get(d) ?? [];
    // The oldest first out: it belongs to a request the input device gives up first.
    if (held.length >= this.config.maxInflight * HELD_PER_REQUEST) held.shift();
    held.push({ deadline: performance.now() + this.config.peerDeadline * 1000, frame });
    this.held.set(d, held);
    return true;
  }

  _finish(st, output) {
    const totalMs = performance.now() - st.created;
    const record = {
      requestId: st.rid, device: this.program.device, totalMs, computeMs: st.computeMs, wireMs: st.wireMs,
      waitMs: Math.max(0, totalMs - st.computeMs - st.wireMs), bytesSent: st.bytesSent,
      arrivals: st.arrivals, bytesFrom: st.bytesFrom,
    };
    this.history.push(record);
    if (this.history.length > 100) this.history.shift();
    this.ui.stats(record);
    if (st.resolve) st.resolve({ output, ...record });
  }

  _requestFailed(rid, message, local = false) {
    const st = this.live.get(rid);
    if (st !== undefined) this._drop(rid);
    if (st && st.reject) st.reject(new Error(message));
    else if (this.program.isInput || local) this.ui.error(`request ${rid}: ${message}`);
  }

  _failLive(message, device) {
    for (const [rid, st] of [...this.live.entries()]) {
      this._drop(rid);
      if (st.reject) st.reject(new Error(`request ${rid} abandoned: ${message}`));
      if (this.program.isInput) for (const c of this.conns.values()) c.send(emptyFrame(FrameType.CANCEL, rid));
    }
  }

  // -- the input device ------------------------------------------------------------------------------
  /**
   * One inference: `image` is the float32 model input (the graph's input
   * shape, preprocessed). Resolves to {output (Float32Array), requestId,
   * totalMs, computeMs, wireMs, waitMs, bytesSent, arrivals, bytesFrom}.
   */
  infer(image) {
    const p = this.program;
    if (!p.isInput) return Promise.reject(new Error(`device ${p.device} is not the input device (${p.inputDevice})`));
    if (!p.isFusion) return Promise.reject(new Error(`this page fuses on the input device; the graph fuses on device ${p.fusion.device}`));
    const n = p.inputShape.reduce((a, b) => a * b, 1);
    if (!(image instanceof Float32Array) || image.length !== n) {
      return Promise.reject(new Error(`infer: the input must be a Float32Array of ${n} values (shape [${p.inputShape}]), received ${image?.constructor?.name} of ${image?.length}`));
    }
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(image[i])) return Promise.reject(new Error('infer: the input holds NaN or infinite values'));
    }
    const missing = p.neighbours.filter((d) => !this.conns.has(d));
    if (missing.length) {
      const why = missing.map((d) => this.stopped.get(d) ?? `device ${d} has not joined`).join('; ');
      return Promise.reject(new Error(`not every device is connected: ${why}`));
    }
    if (this.nextRid === null) {
      // Section 7: the first id uniform in [1, 2^32], then +1 per inference.
      const r = crypto.getRandomValues(new Uint32Array(1))[0];
      this.nextRid = r + 1;
    }
    const rid = this.nextRid++;
    const st = this._newRequest(rid);
    const wire = quantizeInput(image, p.inputQuant);
    st.tensors.set(p.inputName, wire);
    const promise = new Promise((resolve, reject) => {
      st.resolve = resolve;
      st.reject = reject;
    });
    const w0 = performance.now();
    for (const d of p.sendTo.get(p.inputName) ?? []) {
      const frame = tensorFrame(p.specs[p.inputName].id, rid, wire, p.specs[p.inputName].dtype, p.specs[p.inputName].shape);
      if (this.conns.get(d).send(frame)) st.bytesSent += frame.length;
    }
    st.wireMs += performance.now() - w0;
    this._kick(rid);
    return promise;
  }

  // -- housekeeping ----------------------------------------------------------------------------------
  _tick() {
    const now = performance.now();
    for (const [d, held] of [...this.held.entries()]) {
      const kept = held.filter((h) => h.deadline >= now);
      if (kept.length < held.length) {
        this.ui.log(`device ${this.program.device}: dropped ${held.length - kept.length} frame(s) for device ${d}: no link within ${this.config.peerDeadline} s`);
      }
      if (kept.length) this.held.set(d, kept);
      else this.held.delete(d);
    }
    for (const c of this.conns.values()) {
      c.heartbeat(now);
      c.checkDeadline(now);
    }
    const deadline = this.config.requestDeadline * 1000;
    for (const [rid, st] of [...this.live.entries()]) {
      if (now - st.created <= deadline) continue;
      if (this.program.isInput) {
        // Abandon: CANCEL to every peer, and say whose frames did not come.
        const late = this.program.neighbours.filter((d) => this.program.expected.has(d) && st.arrivals[d] === undefined);
        for (const c of this.conns.values()) c.send(emptyFrame(FrameType.CANCEL, rid));
        this._requestFailed(rid, `no fused output within ${this.config.requestDeadline} s` + (late.length ? `: nothing arrived from device ${late.join(', ')}` : ''));
      } else {
        this._drop(rid);
        this._notifyInput(ErrorCode.DEADLINE_EXCEEDED, rid, `device ${this.program.device} abandoned the request after ${this.config.requestDeadline} s`);
      }
    }
  }
}

