package org.paradis.core;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Map;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * A hand-written two-device float32 graph for the scheduler and handshake tests, with its own device files
 * (arbitrary bytes: the fake engine never reads them) and their real sha256:
 *
 * <pre>
 * device 0: a(x) -> q0 [1,2], p0 [1,4]          sends q0 to device 1 (stage c)
 * device 1: b(x) -> h1 [1,4];  c(h1, q0) -> p1  sends p1 to device 0 (fusion)
 * fusion on device 0: y = p0 + p1
 * </pre>
 */
final class TestGraph {
    private TestGraph() {
    }

    static JSONObject tensor(long id, int[] shape, Object device) throws JSONException {
        JSONArray s = new JSONArray();
        for (int d : shape) {
            s.put(d);
        }
        return new JSONObject().put("id", id).put("shape", s).put("dtype", "float32")
                .put("quantization", JSONObject.NULL).put("device", device);
    }

    static JSONObject stage(String name, String[] inputs, String[] outputs) throws JSONException {
        return new JSONObject().put("name", name).put("signature", name).put("inputs", new JSONArray(java.util.Arrays.asList(inputs)))
                .put("outputs", new JSONArray(java.util.Arrays.asList(outputs))).put("flops", 1);
    }

    static JSONObject send(String tensor, int from, String fromStage, int to, String toStage, int channels)
            throws JSONException {
        return new JSONObject().put("tensor", tensor).put("source", tensor)
                .put("from", new JSONObject().put("device", from).put("stage", fromStage))
                .put("to", new JSONObject().put("device", to).put("stage", toStage))
                .put("channels", new JSONArray().put(0).put(channels)).put("bytes", 4 * channels);
    }

    /** The graph document, its device files written into {@code folder}. */
    static JSONObject document(File folder) throws Exception {
        JSONArray devices = new JSONArray();
        String[][][] stages = {
            {{"a"}, {"x"}, {"q0", "p0"}},
            {{"b"}, {"x"}, {"h1"}, {"c"}, {"h1", "q0"}, {"p1"}},
        };
        for (int d = 0; d < 2; d++) {
            byte[] file = ("not a real tflite file, device " + d).getBytes("UTF-8");
            File f = new File(folder, "device" + d + ".tflite");
            FileOutputStream out = new FileOutputStream(f);
            out.write(file);
            out.close();
            JSONArray st = new JSONArray();
            for (int j = 0; j < stages[d].length; j += 3) {
                st.put(stage(stages[d][j][0], stages[d][j + 1], stages[d][j + 2]));
            }
            devices.put(new JSONObject().put("device", d).put("width", 0.5).put("file", f.getName())
                    .put("sha256", Frames.hex(FusionGraph.sha256(f))).put("file_bytes", file.length).put("params", 0)
                    .put("flops", 1).put("bytes_sent", 8).put("bytes_received", 16).put("stages", st));
        }
        JSONObject tensors = new JSONObject()
                .put("x", tensor(0, new int[] {1, 4}, JSONObject.NULL))
                .put("p0", tensor(1, new int[] {1, 4}, 0))
                .put("p1", tensor(2, new int[] {1, 4}, 1))
                .put("y", tensor(3, new int[] {1, 4}, 0))
                .put("q0", tensor(4, new int[] {1, 2}, 0))
                .put("h1", tensor(5, new int[] {1, 4}, 1));
        JSONArray shape = new JSONArray().put(1).put(4);
        return new JSONObject()
                .put("schema", "paradis-fusion-graph").put("version", 1).put("model", "test").put("switch", "2x0.5")
                .put("widths", new JSONArray().put(0.5).put(0.5)).put("precision", "float32")
                .put("input", new JSONObject().put("tensor", "x").put("shape", shape).put("dtype", "float32")
                        .put("device", 0).put("preprocessing", new JSONObject().put("layout", "NHWC")
                                .put("pixel_scale", 1.0 / 255).put("pixel_offset", 0.0)))
                .put("output", new JSONObject().put("tensor", "y").put("shape", shape).put("dtype", "float32"))
                .put("fusion", new JSONObject().put("op", "sum").put("device", 0)
                        .put("inputs", new JSONArray().put("p0").put("p1")).put("output", "y"))
                .put("devices", devices)
                .put("tensors", tensors)
                .put("sends", new JSONArray().put(send("q0", 0, "a", 1, "c", 2)).put(send("p1", 1, "c", 0, "fusion", 4)))
                .put("totals", new JSONObject().put("bytes_per_inference", 24).put("input_bytes", 16).put("params", 0)
                        .put("flops", 3));
    }

    static File write(File folder, JSONObject doc) throws IOException {
        File f = new File(folder, "fusion_graph.json");
        FileOutputStream out = new FileOutputStream(f);
        out.write(doc.toString().getBytes("UTF-8"));
        out.close();
        return f;
    }

    /**
     * The fake engine of the scheduler tests (the real stages run in the cross-language pytest): b doubles x,
     * c adds q0[0] + q0[1] to h1; a (device 0) gives q0 = x[0..2) and p0 = x.
     */
    static final Engine.Factory ENGINE = program -> new Engine() {
        @Override
        public void runSignature(String key, Map<String, ByteBuffer> in, Map<String, ByteBuffer> out) {
            if (key.equals("b")) {
                for (int i = 0; i < 4; i++) {
                    out.get("h1").putFloat(4 * i, 2 * in.get("x").getFloat(4 * i));
                }
            } else if (key.equals("c")) {
                float s = in.get("q0").getFloat(0) + in.get("q0").getFloat(4);
                for (int i = 0; i < 4; i++) {
                    out.get("p1").putFloat(4 * i, in.get("h1").getFloat(4 * i) + s);
                }
            } else if (key.equals("a")) {
                for (int i = 0; i < 4; i++) {
                    out.get("p0").putFloat(4 * i, in.get("x").getFloat(4 * i));
                }
                out.get("q0").putFloat(0, in.get("x").getFloat(0)).putFloat(4, in.get("x").getFloat(4));
            } else {
                throw new IllegalArgumentException("no stage " + key);
            }
        }

        @Override
        public void close() {
        }
    };

    static byte[] floats(float... v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (float f : v) {
            b.putFloat(f);
        }
        return b.array();
    }
}
