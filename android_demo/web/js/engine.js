// Runs one device's stages with LiteRT.js (@litertjs/core, WASM on the CPU).
//
// One compiled model per device file; a stage is one signature of it, run by
// key with its inputs as a record {tensor name: Tensor} (the file's default
// signature is the first key in sorted order, and positional order follows
// getInputDetails(), which can differ from Python's: DESIGN.md). Tensors are
// freed by hand. LiteRT.js refuses int8 input/output tensors, so int8
// bundles run their browser files (uint8 I/O around the same int8 graph):
// int8 and uint8 bytes differ by XOR 0x80 (zero point + 128), flipped here.

import { Tensor, loadAndCompile, loadLiteRt } from '@litertjs/core';

let runtime = null;

/** Loads the LiteRT.js WASM (once per page) from `wasmDir`. */
export function initLiteRt(wasmDir) {
  if (runtime === null) runtime = loadLiteRt(wasmDir);
  return runtime;
}

function xor80(bytes) {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i] ^ 0x80;
  return out;
}

export class LiteRtEngine {
  /**
   * bytes: the device file (already checked against its sha256).
   * program: js/graph.js deviceProgram. uint8io: the file's stage I/O is
   * uint8 standing for the graph's int8 (browser files of int8 bundles).
   */
  static async create(bytes, program, uint8io) {
    let model;
    try {
      model = await loadAndCompile(bytes, { accelerator: 'wasm' });
    } catch (e) {
      const msg = String(e?.message ?? e);
      if (/INT8/i.test(msg)) {
        throw new Error(`LiteRT.js cannot run ${program.file}: ${msg} (it refuses int8 inputs and outputs): export the bundle with --browser, which writes uint8-I/O files for browsers`);
      }
      throw new Error(`LiteRT.js cannot load ${program.file}: ${msg}`);
    }
    const keys = Object.keys(model.signatures);
    for (const s of program.stages) {
      if (!keys.includes(s.signature)) {
        model.delete();
        throw new Error(`${program.file} has no signature '${s.signature}' for stage ${s.name} (it has ${keys.sort().join(', ')}): the file does not belong to this graph`);
      }
      const names = model.signatures[s.signature].getInputDetails().map((d) => d.name).sort();
      if (JSON.stringify(names) !== JSON.stringify(s.inputs.slice().sort())) {
        model.delete();
        throw new Error(`${program.file} signature '${s.signature}' takes inputs [${names}], the graph's stage ${s.name} reads [${s.inputs}]`);
      }
    }
    return new LiteRtEngine(model, program, uint8io);
  }

  constructor(model, program, uint8io) {
    this.model = model;
    this.program = program;
    this.uint8io = uint8io;
  }

  /**
   * Runs `stage` on `feeds` {name: typed array in the wire dtype}; returns
   * {name: typed array in the wire dtype} (Float32Array or Int8Array), copies
   * owned by the caller.
   */
  async run(stage, feeds) {
    const specs = this.program.specs;
    const inputs = {};
    try {
      for (const name of stage.inputs) {
        let data = feeds[name];
        if (specs[name].dtype === 'int8') {
          const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
          data = this.uint8io ? xor80(raw) : new Int8Array(raw);
        }
        inputs[name] = new Tensor(data, specs[name].shape);
      }
      const outputs = await this.model.run(stage.signature, inputs);
      const out = {};
      for (const name of stage.outputs) {
        const t = outputs[name];
        if (t === undefined) throw new Error(`signature '${stage.signature}' gave no output '${name}' (it gave ${Object.keys(outputs)})`);
        const data = t.toTypedArray();
        if (specs[name].dtype === 'int8') {
          const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
          out[name] = new Int8Array((this.uint8io ? xor80(raw) : raw.slice()).buffer);
        } else {
          out[name] = new Float32Array(data); // a copy: the WASM heap's view dies with the tensor
        }
      }
      for (const t of Object.values(outputs)) t.delete();
      return out;
    } finally {
      for (const t of Object.values(inputs)) t.delete();
    }
  }

  delete() {
    this.model.delete();
  }
}
