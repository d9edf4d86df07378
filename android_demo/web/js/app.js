// The page: join a session as one device, then (device 0) feed images and
// show the fused prediction with per-inference timings.
//
// Join: fetch the switch's fusion_graph.json (its exact bytes' SHA-256 is the
// HELLO hash), read and check it, fetch this device's file and check it
// against the digest the graph (or, for int8 bundles, browser.json, which is
// bound to the graph's digest) records, compile it with LiteRT.js, then link
// to every neighbouring device through the relay. The session key is typed,
// or comes in the URL fragment (#device=1&key=...), which browsers never send
// to the server. `window.paradis` exposes the same steps to the browser test.

import { DEFAULTS } from './connection.js';
import { checkKey } from './frames.js';
import { GraphError, deviceProgram, readGraph } from './graph.js';
import { initLiteRt, LiteRtEngine } from './engine.js';
import { Peer } from './peer.js';
import { sha256, toHex } from './sha256.js';

const $ = (id) => document.getElementById(id);
const WASM_DIR = '/vendor/@litertjs/core/wasm/';

const state = { session: null, program: null, peer: null, errors: [], logs: [], last: null };

const ui = {
  status(text) { $('status').textContent = text; },
  error(text) {
    state.errors.push(text);
    $('error').textContent = text;
    ui.log(`error: ${text}`);
  },
  log(text) {
    state.logs.push(text);
    const line = document.createElement('div');
    line.textContent = `${new Date().toISOString().slice(11, 23)} ${text}`;
    $('log').prepend(line);
  },
  stats(r) {
    const peers = Object.keys(r.bytesFrom).map((d) => `device ${d}: ${r.bytesFrom[d]} B, ${r.arrivals[d].toFixed(1)} ms`).join('; ');
    const row = document.createElement('tr');
    for (const v of [r.requestId, r.device, r.computeMs.toFixed(2), r.wireMs.toFixed(2), r.waitMs.toFixed(2), r.totalMs.toFixed(2), r.bytesSent, peers]) {
      const td = document.createElement('td');
      td.textContent = String(v);
      row.appendChild(td);
    }
    $('stats').tBodies[0].prepend(row);
    while ($('stats').tBodies[0].rows.length > 20) $('stats').tBodies[0].deleteRow(-1);
  },
};

async function fetchBytes(url, what) {
  let response;
  try {
    response = await fetch(url, { cache: 'no-store' });
  } catch (e) {
    throw new Error(`cannot fetch ${what} (${url}): ${e.message}; is paradis serve-web still running?`);
  }
  if (!response.ok) throw new Error(`cannot fetch ${what} (${url}): HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** `#switch=...&device=...&key=...` as an object. Not URLSearchParams: it reads `+` as a space, and
 * switch names hold one (`0.5+0.3+0.2`); `%2B` works too. */
function fragment() {
  const out = {};
  for (const part of location.hash.slice(1).split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const [k, v] = eq < 0 ? [part, ''] : [part.slice(0, eq), part.slice(eq + 1)];
    try {
      out[decodeURIComponent(k)] = decodeURIComponent(v);
    } catch (e) {
      out[k] = v; // a stray % is kept as typed
    }
  }
  return out;
}

/** Loads device `device` of switch `switchName` and links it to its peers. */
async function join(switchName, device, keyText) {
  if (state.peer) throw new Error('this page has joined already: reload it to join again');
  const key = checkKey(keyText);
  const entry = state.session.switches.find((s) => s.name === switchName);
  if (!entry) throw new Error(`no switch '${switchName}' in the bundle; it holds ${state.session.switches.map((s) => s.name).join(', ')}`);
  ui.status(`loading switch ${switchName}, device ${device}…`);
  const graphUrl = `/${entry.graph}`;
  const base = graphUrl.slice(0, graphUrl.lastIndexOf('/') + 1);
  const graphBytes = await fetchBytes(graphUrl, 'the fusion graph');
  const graphSha = sha256(graphBytes);
  const graph = readGraph(new TextDecoder().decode(graphBytes), graphUrl);
  const program = deviceProgram(graph, device, { maxFrameBytes: state.session.max_frame_bytes, where: graphUrl });
  // Which file this browser runs (README): the device file itself for float32
  // (LiteRT.js runs one signature of a multi-signature file by key); for int8
  // the browser file with uint8 I/O, since LiteRT.js refuses int8 I/O tensors.
  let file = program.file;
  let digest = program.sha256;
  let uint8io = false;
  if (graph.precision === 'int8') {
    let side;
    try {
      side = JSON.parse(new TextDecoder().decode(await fetchBytes(`${base}browser.json`, 'browser.json')));
    } catch (e) {
      throw new Error(`this int8 bundle has no browser files (${e.message}): LiteRT.js refuses int8 inputs and outputs; export it with \`paradis export --browser\``);
    }
    if (side.graph_sha256 !== toHex(graphSha)) {
      throw new Error(`${base}browser.json belongs to another export: it records graph sha256 ${side.graph_sha256}, the graph's is ${toHex(graphSha)}; export the bundle again`);
    }
    const d = side.devices?.[device];
    if (!d) throw new Error(`${base}browser.json has no entry for device ${device}`);
    file = d.file;
    digest = d.sha256;
    uint8io = d.io === 'uint8';
  }
  ui.status(`downloading ${file}…`);
  const bytes = await fetchBytes(base + file, file);
  const got = toHex(sha256(bytes));
  if (got !== digest) {
    throw new Error(`wrong file hash: ${file} has sha256 ${got}, the bundle records ${digest}; the file was changed or belongs to another export. Nothing was run.`);
  }
  ui.status('loading LiteRT.js…');
  await initLiteRt(WASM_DIR);
  const engine = await LiteRtEngine.create(bytes, program, uint8io);
  state.program = program;
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const relayUrl = (peer) => `${proto}://${location.host}/relay?switch=${encodeURIComponent(switchName)}&from=${device}&to=${peer}`;
  state.peer = new Peer({ program, engine, relayUrl, key, graphSha256: graphSha, config: { ...DEFAULTS, maxFrameBytes: state.session.max_frame_bytes }, ui });
  state.peer.start();
  ui.log(`device ${device} of switch ${switchName}: ${file} (${bytes.length} B, sha256 ok), ${program.stages.length} stages, ${graph.precision}${uint8io ? ' via uint8 I/O' : ''}`);
  if (program.neighbours.length === 0) ui.status(`ready: device ${device} alone (switch ${switchName})`);
  $('join').disabled = true;
  if (program.isInput) {
    $('run').disabled = false;
    $('image-file').disabled = false;
  }
}

function drawInput(image, program) {
  const [, h, w, c] = program.inputShape;
  const { pixel_scale: scale, pixel_offset: offset } = program.preprocessing;
  const canvas = $('input-canvas');
  const small = document.createElement('canvas');
  small.width = w;
  small.height = h;
  const ctx = small.getContext('2d');
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) img.data[4 * i + k] = Math.max(0, Math.min(255, Math.round((image[i * c + (c === 1 ? 0 : k)] - offset) / scale)));
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  const big = canvas.getContext('2d');
  big.imageSmoothingEnabled = false;
  big.drawImage(small, 0, 0, canvas.width, canvas.height);
}

function showPrediction(output, kind) {
  const values = Array.from(output);
  let best = 0;
  values.forEach((v, i) => { if (v > values[best]) best = i; });
  const max = Math.max(...values);
  const exp = values.map((v) => Math.exp(v - max));
  const sum = exp.reduce((a, b) => a + b, 0);
  $('prediction').textContent = kind === 'logits' ? `class ${best} (p = ${(exp[best] / sum).toFixed(3)})` : `output ${values.length} values`;
  $('scores').innerHTML = '';
  values.forEach((v, i) => {
    const line = document.createElement('div');
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.style.width = `${Math.round(150 * exp[i] / sum)}px`;
    line.textContent = `${i}: ${v.toFixed(3)} `;
    line.appendChild(bar);
    $('scores').appendChild(line);
  });
}

/** One inference of `image` (float32 model input, preprocessed); shows and returns the result. */
async function infer(image) {
  if (!state.peer) throw new Error('join a session first');
  const x = image instanceof Float32Array ? image : Float32Array.from(image);
  drawInput(x, state.program);
  try {
    const result = await state.peer.infer(x);
    showPrediction(result.output, state.program.graph.output.kind);
    state.last = result;
    ui.status(`request ${result.requestId}: ${result.totalMs.toFixed(1)} ms`);
    return { ...result, output: Array.from(result.output) };
  } catch (e) {
    ui.error(e.message);
    throw e;
  }
}

/** A picture from the file input or camera -> the model input (resized, grayscale if one channel). */
async function imageToInput(file) {
  const [, h, w, c] = state.program.inputShape;
  const { pixel_scale: scale, pixel_offset: offset } = state.program.preprocessing;
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const out = new Float32Array(h * w * c);
  for (let i = 0; i < h * w; i++) {
    if (c === 1) {
      const gray = 0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2];
      out[i] = Math.round(gray) * scale + offset;
    } else {
      for (let k = 0; k < c; k++) out[i * c + k] = rgba[4 * i + k] * scale + offset;
    }
  }
  return out;
}

async function main() {
  window.paradis = { state, join, infer, ready: () => !!state.peer && state.peer.allReady, errors: state.errors, logs: state.logs };
  try {
    const response = await fetch('/session.json', { cache: 'no-store' });
    state.session = await response.json();
  } catch (e) {
    ui.error(`cannot reach the server: ${e.message}`);
    return;
  }
  const s = state.session;
  $('url').textContent = s.url ?? location.href.split('#')[0];
  $('url').href = s.url ?? location.href.split('#')[0];
  if (s.qr_svg) $('qr').innerHTML = s.qr_svg;
  for (const sw of s.switches) $('switch').add(new Option(`${sw.name} (${sw.num_devices} devices)`, sw.name));
  const fillDevices = () => {
    const sw = s.switches.find((x) => x.name === $('switch').value);
    $('device').innerHTML = '';
    for (let d = 0; d < sw.num_devices; d++) {
      const python = s.tcp_peers[String(d)];
      const opt = new Option(d === 0 ? '0 (camera, fuses)' : `${d}${python ? ' (Python peer)' : ''}`, String(d));
      opt.disabled = !!python;
      $('device').add(opt);
    }
  };
  $('switch').onchange = fillDevices;
  const f = fragment();
  if (f.switch && !s.switches.some((x) => x.name === f.switch)) {
    ui.error(`the link names switch '${f.switch}', which the bundle does not hold; it holds ${s.switches.map((x) => x.name).join(', ')}`);
    delete f.device; // no automatic join on a switch that was not asked for
  } else if (f.switch) {
    $('switch').value = f.switch;
  }
  fillDevices();
  if (f.device) $('device').value = f.device;
  if (f.key) $('key').value = f.key;
  ui.status('pick a switch and a device, enter the session key, then Join');
  const doJoin = async () => {
    try {
      await join($('switch').value, Number($('device').value), $('key').value);
    } catch (e) {
      ui.error(e instanceof GraphError ? `bad fusion graph: ${e.message}` : e.message);
      ui.status('not joined');
    }
  };
  $('join').onclick = doJoin;
  $('run').onclick = async () => {
    const file = $('image-file').files[0];
    if (!file) {
      ui.error('choose a picture first (gallery or camera)');
      return;
    }
    try {
      await infer(await imageToInput(file));
    } catch (e) { /* shown by infer */ }
  };
  $('image-file').onchange = () => $('run').click();
  if (f.device !== undefined && f.key) await doJoin();
}

main();
