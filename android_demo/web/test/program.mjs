// Runs the page's fusion-graph reader and fusion (js/graph.js) on a job from
// tests/android_demo/test_web.py and prints the results as JSON, for the
// test to compare with paradis_runtime's DeviceProgram, quantize_input and
// fuse_partials.
//
//   node android_demo/web/test/program.mjs job.json
//
// job: {graphs: [{path, device}], bad_graphs: [text], quantize: [{image, quant}],
//       fuse: [{fusion, fusion_quant, partials: [{dtype, values}]}]}

import { readFileSync } from 'node:fs';
import { GraphError, deviceProgram, fusePartials, quantizeInput, readGraph } from '../js/graph.js';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = { graphs: [], bad_graphs: [], quantize: [], fuse: [] };

for (const { path, device } of job.graphs ?? []) {
  const p = deviceProgram(readGraph(readFileSync(path, 'utf8'), path), device);
  out.graphs.push({
    path, device,
    send_to: Object.fromEntries([...p.sendTo.entries()].map(([k, v]) => [k, v])),
    expected: Object.fromEntries([...p.expected.entries()].map(([peer, m]) => [peer, Object.fromEntries([...m.entries()].map(([id, s]) => [id, [s.name, s.dtype, s.shape]]))])),
    neighbours: p.neighbours, is_input: p.isInput, is_fusion: p.isFusion,
    stages: p.stages.map((s) => s.name),
  });
}
for (const text of job.bad_graphs ?? []) {
  try {
    deviceProgram(readGraph(text, 'bad.json'), 0);
    out.bad_graphs.push(null);
  } catch (e) {
    out.bad_graphs.push(e instanceof GraphError ? e.message : `not a GraphError: ${e}`);
  }
}
for (const { image, quant } of job.quantize ?? []) out.quantize.push(Array.from(quantizeInput(Float32Array.from(image), quant)));
for (const { fusion, fusion_quant: fq, partials } of job.fuse ?? []) {
  const arrays = partials.map(({ dtype, values }) => (dtype === 'int8' ? Int8Array.from(values) : Float32Array.from(values)));
  // Float32 bits as hex: the comparison is bit for bit.
  const r = fusePartials(fusion, fq, arrays);
  out.fuse.push(Array.from(new Uint32Array(r.buffer), (u) => u.toString(16).padStart(8, '0')));
}
process.stdout.write(JSON.stringify(out));
