package org.paradis.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.FileOutputStream;
import java.nio.file.Path;
import java.util.Arrays;
import org.json.JSONObject;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The graph reader on a valid graph and on one malformed field at a time: each message names field and value. */
class FusionGraphTest {
    @TempDir
    Path tmp;

    interface Edit {
        void apply(JSONObject doc) throws Exception;
    }

    private String refusal(Edit edit) throws Exception {
        JSONObject doc = TestGraph.document(tmp.toFile());
        edit.apply(doc);
        File f = TestGraph.write(tmp.toFile(), doc);
        return assertThrows(FusionGraphException.class, () -> FusionGraph.read(f, true)).getMessage();
    }

    private static void has(String message, String... parts) {
        for (String p : parts) {
            assertTrue(message.contains(p), "expected '" + p + "' in: " + message);
        }
    }

    @Test
    void aValidGraphReadsIntoItsTypedView() throws Exception {
        File f = TestGraph.write(tmp.toFile(), TestGraph.document(tmp.toFile()));
        FusionGraph g = FusionGraph.read(f, true);
        assertEquals("2x0.5", g.switchName);
        assertEquals(2, g.devices.size());
        assertEquals(Arrays.asList("h1", "q0"), g.devices.get(1).stages.get(1).inputs);
        assertEquals(4, g.tensors.get("q0").id);
        assertEquals(Frames.hex(FusionGraph.digest(FusionGraph.readAll(f))), Frames.hex(g.sha256()));
        DeviceProgram p = new DeviceProgram(f, g, 1, Frames.MAX_FRAME_BYTES);
        assertEquals(Arrays.asList(0), p.neighbours);
        assertEquals(Arrays.asList(0), p.sendTo.get("p1"));
        assertEquals(2, p.expectedFrom(0).size());  // x (the input) and q0
        assertTrue(p.expectedFrom(0).containsKey(0L) && p.expectedFrom(0).containsKey(4L));
    }

    @Test
    void malformedGraphsAreRefusedNamingFieldAndValue() throws Exception {
        has(refusal(d -> d.put("version", 2)), "field 'version'", "is 2", "version 1");
        has(refusal(d -> d.remove("devices")), "field 'devices'", "missing");
        has(refusal(d -> d.put("switch", "two")), "field 'switch'", "'two'");
        has(refusal(d -> d.getJSONObject("tensors").getJSONObject("q0").put("dtype", "float16")),
                "field 'tensors.q0.dtype'", "'float16'");
        has(refusal(d -> d.getJSONObject("tensors").getJSONObject("q0").put("id", 1.5)),
                "field 'tensors.q0.id'", "1.5");
        has(refusal(d -> d.getJSONObject("tensors").getJSONObject("q0").put("shape", new org.json.JSONArray().put(0))),
                "field 'tensors.q0.shape[0]'", "received 0");
        has(refusal(d -> d.getJSONObject("tensors").getJSONObject("q0").put("quantization",
                new JSONObject().put("scale", 0).put("zero_point", 0))), "tensors.q0.quantization.scale", "received 0");
        has(refusal(d -> d.getJSONObject("tensors").getJSONObject("q0").put("extra", 1)),
                "field 'tensors.q0.extra'", "not defined");
        has(refusal(d -> d.getJSONArray("devices").getJSONObject(1).put("sha256", "ABC")),
                "field 'devices[1].sha256'", "'ABC'");
        has(refusal(d -> d.getJSONArray("devices").getJSONObject(1).put("device", 3)),
                "field 'devices[1].device'", "is 3");
        has(refusal(d -> d.getJSONArray("devices").getJSONObject(1).getJSONArray("stages").getJSONObject(1)
                .getJSONArray("inputs").put("nowhere")), "devices[1].stages[1]", "'nowhere'");
        has(refusal(d -> d.getJSONArray("sends").getJSONObject(0).put("channels", new org.json.JSONArray().put(0).put(3))),
                "field 'sends[0].channels'", "[0, 3)", "'q0' (2)");
        has(refusal(d -> d.getJSONArray("sends").getJSONObject(0).getJSONObject("to").put("device", 7)),
                "field 'sends[0].to.device'", "is 7");
        has(refusal(d -> d.getJSONObject("tensors").getJSONObject("h1").put("id", 4)), "field 'tensors'", "id 4");
        has(refusal(d -> d.getJSONObject("fusion").put("output", "p0")), "field 'fusion.output'", "'p0'");
        has(refusal(d -> d.put("widths", new org.json.JSONArray().put(1.0))), "field 'widths'", "1 entries");
    }

    @Test
    void everyOutputKindOfTheSchemaIsRead() throws Exception {
        for (String kind : new String[] {"logits", "image", "segmentation_logits", "centernet"}) {
            JSONObject doc = TestGraph.document(tmp.toFile());
            doc.getJSONObject("output").put("kind", kind);
            assertEquals("2x0.5", FusionGraph.read(TestGraph.write(tmp.toFile(), doc), true).switchName);
        }
        has(refusal(d -> d.getJSONObject("output").put("kind", "boxes")), "field 'output.kind'", "'boxes'");
    }

    @Test
    void notJsonAndAChangedDeviceFileAreRefused() throws Exception {
        has(assertThrows(FusionGraphException.class, () -> FusionGraph.parse("{\"schema\":".getBytes("UTF-8"), "g.json"))
                .getMessage(), "g.json", "not valid JSON");
        File f = TestGraph.write(tmp.toFile(), TestGraph.document(tmp.toFile()));
        FileOutputStream out = new FileOutputStream(new File(tmp.toFile(), "device1.tflite"), true);
        out.write(1);
        out.close();
        has(assertThrows(FusionGraphException.class, () -> FusionGraph.read(f, true)).getMessage(),
                "field 'devices[1].sha256'", "device1.tflite", "was changed");
        FusionGraph.read(f, false);  // the structure itself is fine
        has(assertThrows(FusionGraphException.class, () -> FusionGraph.read(new File(tmp.toFile(), "none.json"), true))
                .getMessage(), "none.json", "no such");
    }

    @Test
    void loadTimeRefusalsOfTheWire() throws Exception {
        File f = TestGraph.write(tmp.toFile(), TestGraph.document(tmp.toFile()));
        FusionGraph g = FusionGraph.read(f, true);
        has(assertThrows(FusionGraphException.class, () -> new DeviceProgram(f, g, 1, 64 + 15)).getMessage(),
                "makes a frame of 80 bytes", "over the cap of 79");
        has(assertThrows(FusionGraphException.class, () -> new DeviceProgram(f, g, 2, Frames.MAX_FRAME_BYTES))
                .getMessage(), "devices 0..1", "device=2");
        JSONObject doc = TestGraph.document(tmp.toFile());
        doc.getJSONObject("tensors").getJSONObject("q0").put("id", 0xFFFFFFFFL);
        File big = TestGraph.write(tmp.toFile(), doc);
        FusionGraph g2 = FusionGraph.read(big, true);
        has(assertThrows(FusionGraphException.class, () -> new DeviceProgram(big, g2, 1, Frames.MAX_FRAME_BYTES))
                .getMessage(), "'q0' has id 4294967295");
    }
}
