// One WebSocket link between this page's device and one peer device of one
// graph (FRAME_FORMAT.md sections 5-7), through `paradis serve-web`'s relay:
// the HELLO/AUTH handshake (end to end: the relay never sees the key), the
// section 6 checks on every message, heartbeats and the peer deadline.
// The twin of paradis_runtime/_connection.py; it knows nothing of requests
// and hands checked frames to its peer (js/peer.js).

import {
  ErrorCode, FrameError, FrameType, HEADER_LEN, authMac, checkHeader, decodeError, decodeHello, emptyFrame,
  encodeAuth, encodeError, encodeHello, errorName,
} from './frames.js';
import { constantTimeEqual } from './sha256.js';

export const SUBPROTOCOL = 'paradis-frames.1';
const HEARTBEAT = emptyFrame(FrameType.HEARTBEAT);
const READY_TYPES = [FrameType.TENSOR, FrameType.ERROR, FrameType.HEARTBEAT, FrameType.CANCEL];

/** Defaults of FRAME_FORMAT.md sections 5-7 (seconds). */
export const DEFAULTS = Object.freeze({
  handshakeTimeout: 5, heartbeatInterval: 0.5, peerDeadline: 2, requestDeadline: 2, maxInflight: 8,
  maxFrameBytes: 64 * 1024 * 1024,
});

export class Connection {
  /**
   * url: the relay's WebSocket URL for (switch, this device, peer).
   * program: js/graph.js deviceProgram; graphSha256: the graph file's digest.
   * key: the session key's bytes. peer: the device at the other end.
   * events: {onReady(conn), onFrame(conn, header, payload), onClose(conn, info)}.
   */
  constructor({ url, program, graphSha256, key, peer, config, events }) {
    this.url = url;
    this.program = program;
    this.sha = graphSha256;
    this.key = key;
    this.peer = peer;
    this.config = config;
    this.events = events;
    this.nonce = crypto.getRandomValues(new Uint8Array(32)); // works on plain http too
    this.theirs = null;
    this.ready = false;
    this.closed = false;
    this.expected = program.expected.get(peer) ?? new Map();
    this.peerIsInput = peer === program.inputDevice;
    this.lastRecv = this.lastSent = performance.now();
    this.handshakeTimer = null;
    this.ws = new WebSocket(url, SUBPROTOCOL);
    this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => {
      // Section 5: each side sends HELLO at once. The relay holds it until the
      // peer's page joins, so the handshake deadline starts with the peer's
      // first message, not here (a phone may join minutes later).
      this._write(encodeHello({ graphSha256: this.sha, nonce: this.nonce, device: program.device, peerDevice: peer, switchName: program.switchName }));
    };
    this.ws.onmessage = (ev) => this._message(ev.data);
    this.ws.onclose = (ev) => this._closed(ev);
    this.ws.onerror = () => {}; // onclose follows with the code
  }

  _write(frame) {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(frame);
    this.lastSent = performance.now();
    return true;
  }

  /** One whole frame (a Uint8Array) as one binary message; false if the link is gone. */
  send(frame) {
    return this.ready && this._write(frame);
  }

  heartbeat(now) {
    if (this.ready && !this.closed && now - this.lastSent >= this.config.heartbeatInterval * 1000) this._write(HEARTBEAT);
  }

  /** Unresponsive (section 7): nothing received for peerDeadline. */
  checkDeadline(now) {
    if (this.ready && !this.closed && now - this.lastRecv > this.config.peerDeadline * 1000) {
      this.close(`device ${this.peer} is unresponsive: nothing received for ${this.config.peerDeadline} s`, { code: null });
    }
  }

  _message(data) {
    if (this.closed) return;
    this.lastRecv = performance.now();
    if (this.handshakeTimer === null && !this.ready) {
      this.handshakeTimer = setTimeout(() => {
        if (!this.ready && !this.closed) this.fail(ErrorCode.HANDSHAKE_TIMEOUT, `no complete handshake with device ${this.peer} within ${this.config.handshakeTimeout} s`);
      }, this.config.handshakeTimeout * 1000);
    }
    if (typeof data === 'string') {
      this.fail(ErrorCode.BAD_TYPE, 'a text message: frames are binary messages', 1003);
      return;
    }
    const bytes = new Uint8Array(data);
    let h;
    try {
      const allowed = this.ready ? READY_TYPES : this.theirs === null ? [FrameType.HELLO, FrameType.ERROR] : [FrameType.AUTH, FrameType.ERROR];
      h = checkHeader(bytes, {
        allowed, expected: this.expected, peerIsInput: this.peerIsInput, ready: this.ready,
        maxFrameBytes: this.config.maxFrameBytes, messageLen: bytes.length,
      });
      const payload = bytes.subarray(HEADER_LEN);
      if (h.type === FrameType.HELLO) this._hello(payload);
      else if (h.type === FrameType.AUTH) this._auth(payload);
      else if (h.type === FrameType.ERROR) this._error(h, payload);
      else if (h.type === FrameType.HEARTBEAT) { /* liveness only */ }
      else this.events.onFrame(this, h, payload);
    } catch (e) {
      if (e instanceof FrameError) this.fail(e.code, e.detail);
      else this.close(`internal error on the link to device ${this.peer}: ${e.message}`, { code: null, internal: true });
    }
  }

  _hello(payload) {
    const theirs = decodeHello(payload);
    const p = this.program;
    if (!constantTimeEqual(theirs.graphSha256, this.sha)) {
      throw new FrameError(ErrorCode.GRAPH_MISMATCH, `device ${theirs.device} holds another fusion graph (switch '${theirs.switchName}'): both sides need the same export of the bundle`);
    }
    if (theirs.switchName !== p.switchName) throw new FrameError(ErrorCode.GRAPH_MISMATCH, `switch '${theirs.switchName}', the graph's is '${p.switchName}'`);
    if (theirs.device >= p.numDevices || theirs.device === p.device || theirs.peerDevice !== p.device || theirs.device !== this.peer) {
      throw new FrameError(ErrorCode.BAD_DEVICE, `HELLO from device ${theirs.device} to device ${theirs.peerDevice}; this is device ${p.device} of ${p.numDevices}, linked to device ${this.peer}`);
    }
    if (constantTimeEqual(theirs.nonce, this.nonce)) throw new FrameError(ErrorCode.AUTH_FAILED, "the peer's nonce is this side's own (a reflected HELLO)");
    this.theirs = theirs;
    this._write(encodeAuth(authMac(this.key, this.sha, p.device, this.peer, this.nonce, theirs.nonce)));
  }

  _auth(mac) {
    const want = authMac(this.key, this.sha, this.peer, this.program.device, this.theirs.nonce, this.nonce);
    if (!constantTimeEqual(mac, want)) {
      throw new FrameError(ErrorCode.AUTH_FAILED, `wrong MAC from device ${this.peer}: the two sides hold different session keys`);
    }
    this.ready = true;
    clearTimeout(this.handshakeTimer);
    this.events.onReady(this);
  }

  _error(h, payload) {
    const { code, message } = decodeError(payload);
    if (!this.ready || code < 128) {
      // Fatal (or any refusal of the handshake): both sides close; never answer an ERROR with one.
      this.close(`device ${this.peer} refused: ${errorName(code)}: ${message}`, { code, remote: true });
      return;
    }
    this.events.onFrame(this, h, payload);
  }

  /** A violation (section 6): one ERROR frame, close code 1008 (or `wsCode`), report. */
  fail(code, detail, wsCode = 1008) {
    if (this.closed) return;
    try {
      this._write(encodeError(code, detail));
    } catch (e) { /* the socket may be gone */ }
    this.close(`${errorName(code)} from device ${this.peer}: ${detail}`, { code, remote: false }, wsCode);
  }

  close(reason, info = {}, wsCode = 1000) {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.handshakeTimer);
    try {
      this.ws.close(wsCode, reason.slice(0, 120));
    } catch (e) { /* already closing */ }
    this.events.onClose(this, { reason, wasReady: this.ready, ...info });
  }

  _closed(ev) {
    if (this.closed) return;
    // The relay says who left (1001) or why it refused the link (1008/1011).
    const why = ev.reason || (ev.code === 1006 ? 'the connection to the server broke' : `closed with code ${ev.code}`);
    this.close(why, { code: null, remote: true, wsCode: ev.code });
  }
}
