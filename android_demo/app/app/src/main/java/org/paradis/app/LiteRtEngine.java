package org.paradis.app;

import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.paradis.core.DeviceProgram;
import org.paradis.core.Engine;
import org.paradis.core.FusionGraph;
import org.paradis.core.FusionGraphException;
import org.tensorflow.lite.Interpreter;

/**
 * The core's {@link Engine} on LiteRT's Java API: one {@link Interpreter} per device file, one
 * {@code runSignature(inputs, outputs, key)} per stage. The graph's tensor names are the signatures' input and
 * output names (the exporter names them so; the desktop helper feeds them the same way).
 *
 * <p>Buffers: LiteRT reads and writes direct buffers in native order without a copy, so each signature gets its
 * own direct buffers once, sized by the graph; the core's little-endian buffers are copied in and out (every
 * Android ABI is little-endian, so the bytes are the wire's).
 */
final class LiteRtEngine implements Engine {
    private final Interpreter interpreter;
    private final Map<String, ByteBuffer> scratch = new HashMap<>();

    private LiteRtEngine(File deviceFile, int threads) {
        Interpreter.Options options = new Interpreter.Options();
        options.setNumThreads(threads);
        interpreter = new Interpreter(deviceFile, options);
    }

    /**
     * Opens each program's device file with {@code threads} CPU threads and checks that every stage's signature
     * is in it, naming the graph field when one is missing.
     */
    static Engine.Factory factory(int threads) {
        return program -> {
            LiteRtEngine engine = new LiteRtEngine(program.deviceFile, threads);
            List<String> keys = Arrays.asList(engine.interpreter.getSignatureKeys());
            for (int i = 0; i < program.stages.size(); i++) {
                FusionGraph.Stage s = program.stages.get(i);
                if (!keys.contains(s.signature)) {
                    engine.close();
                    throw new FusionGraphException(program.graph.where + ": field 'devices[" + program.device
                            + "].stages[" + i + "].signature': " + program.deviceFile.getName() + " has no signature '"
                            + s.signature + "' (it has " + keys + ").");
                }
            }
            return engine;
        };
    }

    private ByteBuffer direct(String key, String name, int bytes) {
        String k = key + "\u0000" + name;
        ByteBuffer b = scratch.get(k);
        if (b == null || b.capacity() != bytes) {
            b = ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder());
            scratch.put(k, b);
        }
        b.clear();
        return b;
    }

    @Override
    public void runSignature(String signatureKey, Map<String, ByteBuffer> inputs, Map<String, ByteBuffer> outputs) {
        Map<String, Object> in = new HashMap<>();
        for (Map.Entry<String, ByteBuffer> e : inputs.entrySet()) {
            ByteBuffer src = e.getValue().duplicate();
            src.clear();
            ByteBuffer d = direct(signatureKey, "in:" + e.getKey(), src.remaining());
            d.put(src);
            d.rewind();
            in.put(e.getKey(), d);
        }
        Map<String, Object> out = new HashMap<>();
        for (Map.Entry<String, ByteBuffer> e : outputs.entrySet()) {
            out.put(e.getKey(), direct(signatureKey, "out:" + e.getKey(), e.getValue().capacity()));
        }
        interpreter.runSignature(in, out, signatureKey);
        for (Map.Entry<String, ByteBuffer> e : outputs.entrySet()) {
            ByteBuffer o = (ByteBuffer) out.get(e.getKey());
            o.rewind();
            e.getValue().put(o);  // a relative put of the whole tensor, from index 0 (Engine's contract)
        }
    }

    @Override
    public void close() {
        interpreter.close();
    }
}
