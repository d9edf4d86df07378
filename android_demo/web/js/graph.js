// The fusion graph (export/fusion_graph.schema.json) as one device reads it:
// the JavaScript twin of paradis_runtime/_program.py's DeviceProgram plus the
// fusion of paradis_runtime/schedule.py.
//
// readGraph() checks what this page relies on (the schema's required fields
// and types that it reads, and the cross-references a schema cannot express,
// as paradis_runtime/fusion_graph.py does) and section 6's load-time
// refusals, with messages that name the field. deviceProgram() then derives,
// once, everything the wire needs: which tensors this device expects from each
// peer (section 6 step 7), where each of its outputs goes (section 4).

import { DTYPES, HEADER_LEN, MAX_FRAME_BYTES, NO_TENSOR } from './frames.js';

export class GraphError extends Error {
  constructor(message) {
    super(message);
    this.name = 'GraphError';
  }
}

const SCHEMA = 'paradis-fusion-graph';
const VERSION = 1;

function fail(where, field, message) {
  throw new GraphError(`${where}: field '${field}' ${message}`);
}

function isInt(v) {
  return Number.isInteger(v) && v >= 0;
}

function checkShape(where, field, shape) {
  if (!Array.isArray(shape) || shape.length < 1 || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
    fail(where, field, `must be a list of positive ints, received ${JSON.stringify(shape)}`);
  }
}

/**
 * Parses and checks a fusion graph. `text`: the file's exact text (its
 * SHA-256 is the HELLO hash, computed by the caller from the same bytes).
 */
export function readGraph(text, where = 'fusion_graph.json') {
  let g;
  try {
    g = JSON.parse(text);
  } catch (e) {
    throw new GraphError(`${where}: not valid JSON (${e.message}).`);
  }
  if (g === null || typeof g !== 'object' || Array.isArray(g)) fail(where, '(root)', 'must be a JSON object');
  if (g.schema !== SCHEMA) fail(where, 'schema', `must be "${SCHEMA}", received ${JSON.stringify(g.schema)}`);
  if (g.version !== VERSION) fail(where, 'version', `is ${JSON.stringify(g.version)}; this page reads version ${VERSION}: serve a bundle exported for it`);
  for (const key of ['switch', 'precision', 'input', 'output', 'fusion', 'devices', 'tensors', 'sends']) {
    if (!(key in g)) fail(where, key, 'is missing (required by the schema)');
  }
  if (typeof g.switch !== 'string' || g.switch.length < 1 || g.switch.length > 255 || /[^\x20-\x7e]/.test(g.switch)) {
    fail(where, 'switch', `must be 1..255 ASCII characters, received ${JSON.stringify(g.switch)}`);
  }
  if (!['float32', 'int8'].includes(g.precision)) fail(where, 'precision', `must be "float32" or "int8", received ${JSON.stringify(g.precision)}`);
  const tensors = g.tensors;
  if (tensors === null || typeof tensors !== 'object' || Array.isArray(tensors)) fail(where, 'tensors', 'must be an object');
  const ids = new Set();
  for (const [name, t] of Object.entries(tensors)) {
    if (!isInt(t.id)) fail(where, `tensors.${name}.id`, `must be an int >= 0, received ${JSON.stringify(t.id)}`);
    if (ids.has(t.id)) fail(where, 'tensors', `repeats the id ${t.id}`);
    ids.add(t.id);
    checkShape(where, `tensors.${name}.shape`, t.shape);
    if (!(t.dtype in DTYPES)) fail(where, `tensors.${name}.dtype`, `must be "float32" or "int8", received ${JSON.stringify(t.dtype)}`);
    const q = t.quantization;
    if (t.dtype === 'int8') {
      if (!q || typeof q.scale !== 'number' || !(q.scale > 0) || !Number.isInteger(q.zero_point) || q.zero_point < -128 || q.zero_point > 127) {
        fail(where, `tensors.${name}.quantization`, `must hold a scale > 0 and an int8 zero_point for an int8 tensor, received ${JSON.stringify(q)}`);
      }
    }
  }
  const devices = g.devices;
  if (!Array.isArray(devices) || devices.length < 1) fail(where, 'devices', 'must be a non-empty list');
  if (devices.length > 65535) fail(where, 'devices', `has ${devices.length} devices; the wire's u16 indices allow 65,535`);
  const produced = new Map([[g.input?.tensor, null]]);
  devices.forEach((dev, i) => {
    if (dev.device !== i) fail(where, `devices[${i}].device`, `is ${JSON.stringify(dev.device)}, expected ${i} (devices in order)`);
    if (typeof dev.file !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(dev.file)) fail(where, `devices[${i}].file`, `must be a plain file name, received ${JSON.stringify(dev.file)}`);
    if (typeof dev.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(dev.sha256)) fail(where, `devices[${i}].sha256`, `must be 64 lowercase hex digits, received ${JSON.stringify(dev.sha256)}`);
    if (!Array.isArray(dev.stages)) fail(where, `devices[${i}].stages`, 'must be a list');
    const names = new Set();
    dev.stages.forEach((s, j) => {
      if (typeof s.name !== 'string' || typeof s.signature !== 'string') fail(where, `devices[${i}].stages[${j}]`, 'needs a string name and signature');
      if (names.has(s.name)) fail(where, `devices[${i}].stages`, `repeats the stage name ${s.name}`);
      names.add(s.name);
      for (const key of ['inputs', 'outputs']) {
        if (!Array.isArray(s[key])) fail(where, `devices[${i}].stages[${j}].${key}`, 'must be a list');
        for (const t of s[key]) if (!(t in tensors)) fail(where, `devices[${i}].stages[${j}]`, `names tensor '${t}', which is not in 'tensors'`);
      }
      for (const t of s.outputs) {
        if (produced.has(t)) fail(where, `devices[${i}].stages[${j}].outputs`, `produces '${t}' a second time`);
        produced.set(t, i);
      }
    });
  });
  devices.forEach((dev, i) => dev.stages.forEach((s, j) => {
    for (const t of s.inputs) if (!produced.has(t)) fail(where, `devices[${i}].stages[${j}].inputs`, `reads '${t}', which no stage produces`);
  }));
  for (const field of ['input', 'output']) {
    const t = g[field]?.tensor;
    if (!(t in tensors)) fail(where, `${field}.tensor`, `names '${t}', which is not in 'tensors'`);
    if (JSON.stringify(tensors[t].shape) !== JSON.stringify(g[field].shape)) {
      fail(where, `${field}.shape`, `is ${JSON.stringify(g[field].shape)} but tensors.${t}.shape is ${JSON.stringify(tensors[t].shape)}`);
    }
  }
  if (!isInt(g.input.device) || g.input.device >= devices.length) fail(where, 'input.device', `is ${JSON.stringify(g.input.device)} for ${devices.length} devices`);
  const pre = g.input.preprocessing;
  if (!pre || typeof pre.pixel_scale !== 'number' || typeof pre.pixel_offset !== 'number') {
    fail(where, 'input.preprocessing', `must give pixel_scale and pixel_offset, received ${JSON.stringify(pre)}`);
  }
  const fusion = g.fusion;
  if (fusion.op !== 'sum') fail(where, 'fusion.op', `is ${JSON.stringify(fusion.op)}; this page knows 'sum'`);
  if (!isInt(fusion.device) || fusion.device >= devices.length) fail(where, 'fusion.device', `is ${JSON.stringify(fusion.device)} for ${devices.length} devices`);
  for (const t of fusion.inputs) if (!produced.has(t)) fail(where, 'fusion.inputs', `names '${t}', which no stage produces`);
  if (fusion.output !== g.output.tensor) fail(where, 'fusion.output', `is '${fusion.output}', not the output tensor '${g.output.tensor}'`);
  g.sends.forEach((send, i) => {
    if (!(send.tensor in tensors) || produced.get(send.tensor) !== send.from?.device) {
      fail(where, `sends[${i}].tensor`, `'${send.tensor}' is not produced on device ${send.from?.device}`);
    }
    if (!isInt(send.to?.device) || send.to.device >= devices.length) fail(where, `sends[${i}].to.device`, `is ${JSON.stringify(send.to?.device)} for ${devices.length} devices`);
  });
  return g;
}

/**
 * Device `device`'s view of graph `g`: stages, the expected-tensor tables of
 * section 6 step 7 and the send table of section 4. Refuses at load time what
 * section 6 says must not wait for an inference (rank > 6, id >= 0xFFFFFFFF,
 * a frame over the cap).
 */
export function deviceProgram(g, device, { maxFrameBytes = MAX_FRAME_BYTES, where = 'fusion_graph.json' } = {}) {
  const n = g.devices.length;
  if (!Number.isInteger(device) || device < 0 || device >= n) {
    throw new GraphError(`${where}: switch '${g.switch}' has devices 0..${n - 1}; received device ${JSON.stringify(device)}.`);
  }
  const tensors = g.tensors;
  const spec = (name) => ({ name, dtype: tensors[name].dtype, shape: tensors[name].shape.slice(), id: tensors[name].id });
  const inputName = g.input.tensor;
  const inputDevice = g.input.device;
  const readers = new Set();
  for (const d of g.devices) for (const s of d.stages) if (s.inputs.includes(inputName)) readers.add(d.device);
  readers.delete(inputDevice);
  // What crosses the wire: distinct (tensor, from, to), and the input to every other device that reads it.
  const seen = new Set();
  const wire = [...readers].sort((a, b) => a - b).map((d) => [inputName, inputDevice, d]);
  for (const s of g.sends) {
    if (s.from.device === s.to.device) continue;
    const key = `${s.tensor}\u0000${s.from.device}\u0000${s.to.device}`;
    if (!seen.has(key)) {
      seen.add(key);
      wire.push([s.tensor, s.from.device, s.to.device]);
    }
  }
  for (const [name] of wire) {
    const t = tensors[name];
    if (t.shape.length > 6) throw new GraphError(`${where}: tensor '${name}' is sent with rank ${t.shape.length}; frames carry rank <= 6.`);
    if (t.id >= NO_TENSOR) throw new GraphError(`${where}: tensor '${name}' has id ${t.id}; ids must stay below 0xFFFFFFFF.`);
    const bytes = HEADER_LEN + t.shape.reduce((a, b) => a * b, 1) * DTYPES[t.dtype].itemsize;
    if (bytes > maxFrameBytes) throw new GraphError(`${where}: tensor '${name}' makes a frame of ${bytes} bytes, over the cap of ${maxFrameBytes}.`);
  }
  const sendTo = new Map(); // tensor name -> [device]
  const expected = new Map(); // peer device -> Map(tensor id -> spec)
  const neighbours = new Set();
  for (const [name, src, dst] of wire) {
    if (src === device) {
      if (!sendTo.has(name)) sendTo.set(name, []);
      sendTo.get(name).push(dst);
      neighbours.add(dst);
    }
    if (dst === device) {
      if (!expected.has(src)) expected.set(src, new Map());
      expected.get(src).set(tensors[name].id, spec(name));
      neighbours.add(src);
    }
  }
  const quant = (name) => tensors[name].quantization ?? null;
  return {
    graph: g, device, numDevices: n, switchName: g.switch, precision: g.precision,
    file: g.devices[device].file, sha256: g.devices[device].sha256,
    stages: g.devices[device].stages.map((s) => ({ name: s.name, signature: s.signature, inputs: s.inputs.slice(), outputs: s.outputs.slice() })),
    specs: Object.fromEntries(Object.keys(tensors).map((name) => [name, spec(name)])),
    inputName, inputDevice, inputShape: g.input.shape.slice(), inputQuant: quant(inputName),
    preprocessing: g.input.preprocessing, fusion: g.fusion,
    fusionQuant: Object.fromEntries(g.fusion.inputs.map((t) => [t, quant(t)])),
    sendTo, expected, neighbours: [...neighbours].sort((a, b) => a - b),
    isInput: device === inputDevice, isFusion: device === g.fusion.device,
    // What this device sends and receives per inference (the page shows it).
    bytesOut: wire.filter(([, s]) => s === device).reduce((a, [name]) => a + byteLength(tensors[name]), 0),
  };
}

function byteLength(t) {
  return t.shape.reduce((a, b) => a * b, 1) * DTYPES[t.dtype].itemsize;
}

/** numpy's round half to even (np.round), on a double. */
function roundHalfEven(v) {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * float32 model input -> the wire tensor's bytes: float32 as is; int8 graphs
 * quantize once on the input device exactly as paradis_runtime's
 * quantize_input: clip(round_half_even(x / scale) + zero_point, -128, 127),
 * the division in float32 as NumPy does it.
 */
export function quantizeInput(image, quant) {
  if (quant === null) return new Float32Array(image);
  const scale = Math.fround(quant.scale);
  const out = new Int8Array(image.length);
  for (let i = 0; i < image.length; i++) {
    const q = roundHalfEven(Math.fround(image[i] / scale)) + quant.zero_point;
    out[i] = q < -128 ? -128 : q > 127 ? 127 : q;
  }
  return out;
}

/**
 * The final fusion in float32, as paradis_runtime.schedule.fuse_partials:
 * each partial dequantized ((q - zero_point) * float32(scale), in float32),
 * then summed in the graph's input order, one float32 rounding per add.
 * `partials`: typed arrays (Float32Array or Int8Array) in fusion.inputs order.
 */
export function fusePartials(fusion, fusionQuant, partials) {
  if (fusion.op !== 'sum') throw new GraphError(`fusion.op ${JSON.stringify(fusion.op)}: this page knows 'sum'`);
  const n = partials[0].length;
  const out = new Float32Array(n);
  fusion.inputs.forEach((name, k) => {
    const q = fusionQuant[name];
    const x = partials[k];
    if (x.length !== n) throw new GraphError(`fusion input '${name}' has ${x.length} values, the first has ${n}`);
    const scale = q === null ? 1 : Math.fround(q.scale);
    for (let i = 0; i < n; i++) {
      const v = q === null ? x[i] : Math.fround((x[i] - q.zero_point) * scale);
      out[i] = k === 0 ? v : Math.fround(out[i] + v);
    }
  });
  return out;
}
