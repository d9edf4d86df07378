package org.paradis.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * A fusion graph (export/fusion_graph.schema.json, version 1), read and validated into a typed view: the
 * schema's checks, then the cross-references a schema cannot express (as paradis_runtime/fusion_graph.py),
 * then, with {@code checkFiles}, every device file's sha256. Each refusal names the file, the field and the
 * value received.
 */
public final class FusionGraph {
    public static final int SCHEMA_VERSION = 1;
    private static final Pattern SWITCH = Pattern.compile("^[0-9x.+/]+$");
    private static final Pattern FILE = Pattern.compile("^[A-Za-z0-9_.+-]+\\.tflite$");
    private static final Pattern SHA256 = Pattern.compile("^[0-9a-f]{64}$");

    /** One named tensor: wire id, shape, dtype, int8 quantization (null for float32) and producing device. */
    public static final class Tensor {
        public final String name;
        public final long id;
        public final String dtype;
        /** null, or {scale, zero_point}: real = scale x (q - zero_point). */
        public final Quantization quantization;
        /** The producing device, or -1 for the replicated input. */
        public final int device;
        private final int[] shape;

        Tensor(String name, long id, int[] shape, String dtype, Quantization quantization, int device) {
            this.name = name;
            this.id = id;
            this.shape = shape;
            this.dtype = dtype;
            this.quantization = quantization;
            this.device = device;
        }

        public int[] shape() {
            return shape.clone();
        }

        public TensorSpec spec() {
            return new TensorSpec(name, dtype, shape);
        }
    }

    public static final class Quantization {
        public final double scale;
        public final int zeroPoint;

        Quantization(double scale, int zeroPoint) {
            this.scale = scale;
            this.zeroPoint = zeroPoint;
        }
    }

    /** One stage: a signature of the device's file, run when its inputs are here. */
    public static final class Stage {
        public final String name;
        public final String signature;
        public final List<String> inputs;
        public final List<String> outputs;

        Stage(String name, String signature, List<String> inputs, List<String> outputs) {
            this.name = name;
            this.signature = signature;
            this.inputs = Collections.unmodifiableList(inputs);
            this.outputs = Collections.unmodifiableList(outputs);
        }
    }

    public static final class Device {
        public final int index;
        public final double width;
        public final String file;
        public final String sha256;
        public final List<Stage> stages;

        Device(int index, double width, String file, String sha256, List<Stage> stages) {
            this.index = index;
            this.width = width;
            this.file = file;
            this.sha256 = sha256;
            this.stages = Collections.unmodifiableList(stages);
        }
    }

    /** One send: {@code tensor} goes whole from one device to another. */
    public static final class Send {
        public final String tensor;
        public final int fromDevice;
        public final String fromStage;
        public final int toDevice;
        public final String toStage;

        Send(String tensor, int fromDevice, String fromStage, int toDevice, String toStage) {
            this.tensor = tensor;
            this.fromDevice = fromDevice;
            this.fromStage = fromStage;
            this.toDevice = toDevice;
            this.toStage = toStage;
        }
    }

    public final String where;
    public final String model;
    public final String switchName;
    public final String precision;
    public final String inputTensor;
    public final int inputDevice;
    public final double pixelScale;
    public final double pixelOffset;
    /** input.preprocessing.color: "grayscale", "rgb", or null when the graph does not say (the channels decide). */
    public final String color;
    public final String outputTensor;
    public final String fusionOp;
    public final int fusionDevice;
    public final List<String> fusionInputs;
    public final List<Device> devices;
    /** By name, in the file's order. */
    public final Map<String, Tensor> tensors;
    public final List<Send> sends;
    private final byte[] sha256;

    /** SHA-256 of the exact file bytes: what HELLO carries. */
    public byte[] sha256() {
        return sha256.clone();
    }

    /**
     * Reads and validates the graph at {@code path}; with {@code checkFiles} every device file must exist next
     * to it with its recorded sha256.
     */
    public static FusionGraph read(File path, boolean checkFiles) throws IOException {
        if (!path.isFile()) {
            throw new FusionGraphException(path + ": no such fusion graph file.");
        }
        FusionGraph g = parse(readAll(path), path.toString());
        if (checkFiles) {
            for (Device d : g.devices) {
                File file = new File(path.getAbsoluteFile().getParentFile(), d.file);
                if (!file.isFile()) {
                    throw new FusionGraphException(path + ": field 'devices[" + d.index + "].file': " + file
                            + " is missing.");
                }
                String digest = Frames.hex(sha256(file));
                if (!digest.equals(d.sha256)) {
                    throw new FusionGraphException(path + ": field 'devices[" + d.index + "].sha256': " + file
                            + " has sha256 " + digest + ", the graph records " + d.sha256 + "; the file was changed "
                            + "or belongs to another export.");
                }
            }
        }
        return g;
    }

    /** Parses and validates the exact bytes of a fusion_graph.json; {@code where} names it in messages. */
    public static FusionGraph parse(byte[] raw, String where) {
        Object doc;
        try {
            doc = new org.json.JSONTokener(new String(raw, Frames.UTF_8)).nextValue();
        } catch (JSONException e) {
            throw new FusionGraphException(where + ": not valid JSON (" + e.getMessage() + ").");
        }
        if (!(doc instanceof JSONObject)) {
            throw new FusionGraphException(where + ": field '(root)' must be an object, received "
                    + JsonCheck.show(doc));
        }
        return new FusionGraph((JSONObject) doc, raw, where);
    }

    private FusionGraph(JSONObject doc, byte[] raw, String where) {
        this.where = where;
        this.sha256 = digest(raw);
        JsonCheck c = new JsonCheck(where);
        c.only(doc, "", "schema", "version", "model", "switch", "widths", "precision", "input", "output", "fusion",
                "devices", "tensors", "sends", "totals");
        c.oneOf(doc, "schema", "schema", "paradis-fusion-graph");
        long version = c.integer(doc, "version", "version", Long.MIN_VALUE, Long.MAX_VALUE);
        if (version != SCHEMA_VERSION) {
            throw c.fail("version", "is " + version + "; this runtime reads fusion graph version " + SCHEMA_VERSION
                    + " (export the bundle with a matching paradis-tf)");
        }
        model = c.string(doc, "model", "model");
        if (model.isEmpty()) {
            throw c.fail("model", "must be a non-empty string, received ''");
        }
        switchName = c.matching(doc, "switch", "switch", SWITCH, "a switch such as 2x0.5 or 0.5+0.3+0.2");
        JSONArray widths = c.array(doc, "widths", "widths", 1);
        for (int i = 0; i < widths.length(); i++) {
            Object w = widths.opt(i);
            if (!(w instanceof Number) || !(((Number) w).doubleValue() > 0) || ((Number) w).doubleValue() > 1) {
                throw c.fail("widths[" + i + "]", "must be a number in (0, 1], received " + JsonCheck.show(w));
            }
        }
        precision = c.oneOf(doc, "precision", "precision", "float32", "int8");

        JSONObject input = c.object(doc, "input", "input");
        c.only(input, "input", "tensor", "shape", "dtype", "device", "preprocessing");
        inputTensor = c.name(input.opt("tensor"), "input.tensor");
        int[] inputShape = c.shape(input, "shape", "input.shape");
        c.oneOf(input, "dtype", "input.dtype", "float32");
        inputDevice = (int) c.integer(input, "device", "input.device", 0, Integer.MAX_VALUE);
        JSONObject pre = c.object(input, "preprocessing", "input.preprocessing");
        c.only(pre, "input.preprocessing", "layout", "pixel_scale", "pixel_offset", "color");
        c.oneOf(pre, "layout", "input.preprocessing.layout", "NHWC");
        pixelScale = c.number(pre, "pixel_scale", "input.preprocessing.pixel_scale");
        pixelOffset = c.number(pre, "pixel_offset", "input.preprocessing.pixel_offset");
        color = pre.has("color") ? c.oneOf(pre, "color", "input.preprocessing.color", "grayscale", "rgb") : null;

        JSONObject output = c.object(doc, "output", "output");
        c.only(output, "output", "tensor", "shape", "dtype", "kind");
        outputTensor = c.name(output.opt("tensor"), "output.tensor");
        int[] outputShape = c.shape(output, "shape", "output.shape");
        c.oneOf(output, "dtype", "output.dtype", "float32");
        if (output.has("kind")) {
            // The schema's kinds (the model's Task.output_kind): the peer fuses
            // each by the graph's op and leaves reading the tensor to the app.
            c.oneOf(output, "kind", "output.kind", "logits", "image", "segmentation_logits", "centernet");
        }

        JSONObject fusion = c.object(doc, "fusion", "fusion");
        c.only(fusion, "fusion", "op", "device", "inputs", "output");
        fusionOp = c.oneOf(fusion, "op", "fusion.op", "sum");
        fusionDevice = (int) c.integer(fusion, "device", "fusion.device", 0, Integer.MAX_VALUE);
        fusionInputs = Collections.unmodifiableList(c.names(fusion, "inputs", "fusion.inputs", 1));
        String fusionOutput = c.name(fusion.opt("output"), "fusion.output");

        JSONObject tensorsDoc = c.object(doc, "tensors", "tensors");
        Map<String, Tensor> tensorMap = new LinkedHashMap<String, Tensor>();
        Iterator<String> names = tensorsDoc.keys();
        while (names.hasNext()) {
            String name = names.next();
            String f = "tensors." + name;
            JSONObject t = c.object(tensorsDoc.opt(name), f);
            c.only(t, f, "id", "shape", "dtype", "quantization", "device");
            long id = c.integer(t, "id", f + ".id", 0, 0xFFFFFFFFL);
            int[] shape = c.shape(t, "shape", f + ".shape");
            String dtype = c.oneOf(t, "dtype", f + ".dtype", "float32", "int8");
            if (!t.has("quantization")) {
                throw c.fail(f + ".quantization", "is missing (null for float32 tensors)");
            }
            Quantization quant = null;
            if (!t.isNull("quantization")) {
                JSONObject q = c.object(t, "quantization", f + ".quantization");
                c.only(q, f + ".quantization", "scale", "zero_point");
                double scale = c.number(q, "scale", f + ".quantization.scale");
                if (!(scale > 0)) {
                    throw c.fail(f + ".quantization.scale", "must be a number > 0, received " + scale);
                }
                int zp = (int) c.integer(q, "zero_point", f + ".quantization.zero_point", -128, 127);
                quant = new Quantization(scale, zp);
            }
            if (!t.has("device")) {
                throw c.fail(f + ".device", "is missing (null for the replicated input)");
            }
            int device = t.isNull("device") ? -1 : (int) c.integer(t, "device", f + ".device", 0, Integer.MAX_VALUE);
            tensorMap.put(name, new Tensor(name, id, shape, dtype, quant, device));
        }
        tensors = Collections.unmodifiableMap(tensorMap);

        JSONArray devicesDoc = c.array(doc, "devices", "devices", 1);
        List<Device> deviceList = new ArrayList<Device>();
        for (int i = 0; i < devicesDoc.length(); i++) {
            String f = "devices[" + i + "]";
            JSONObject d = c.object(devicesDoc.opt(i), f);
            c.only(d, f, "device", "width", "file", "sha256", "file_bytes", "params", "flops", "bytes_sent",
                    "bytes_received", "stages");
            long index = c.integer(d, "device", f + ".device", 0, Long.MAX_VALUE);
            if (index != i) {
                throw c.fail(f + ".device", "is " + index + ", expected " + i + " (devices in order)");
            }
            double width = c.number(d, "width", f + ".width");
            if (!(width > 0) || width > 1) {
                throw c.fail(f + ".width", "must be a number in (0, 1], received " + width);
            }
            String file = c.matching(d, "file", f + ".file", FILE, "a .tflite file name next to the graph "
                    + "(no directories)");
            String sha = c.matching(d, "sha256", f + ".sha256", SHA256, "64 lowercase hex digits");
            c.integer(d, "file_bytes", f + ".file_bytes", 1, Long.MAX_VALUE);
            for (String k : new String[] {"params", "flops", "bytes_sent", "bytes_received"}) {
                c.integer(d, k, f + "." + k, 0, Long.MAX_VALUE);
            }
            JSONArray stagesDoc = c.array(d, "stages", f + ".stages", 1);
            List<Stage> stages = new ArrayList<Stage>();
            Set<String> stageNames = new HashSet<String>();
            for (int j = 0; j < stagesDoc.length(); j++) {
                String sf = f + ".stages[" + j + "]";
                JSONObject s = c.object(stagesDoc.opt(j), sf);
                c.only(s, sf, "name", "signature", "inputs", "outputs", "flops");
                String name = c.name(s.opt("name"), sf + ".name");
                String signature = c.name(s.opt("signature"), sf + ".signature");
                List<String> inputs = c.names(s, "inputs", sf + ".inputs", 0);
                List<String> outputs = c.names(s, "outputs", sf + ".outputs", 1);
                c.integer(s, "flops", sf + ".flops", 0, Long.MAX_VALUE);
                if (!stageNames.add(name)) {
                    throw c.fail(f + ".stages", "repeats the stage name '" + name + "'");
                }
                stages.add(new Stage(name, signature, inputs, outputs));
            }
            deviceList.add(new Device(i, width, file, sha, stages));
        }
        devices = Collections.unmodifiableList(deviceList);

        JSONArray sendsDoc = c.array(doc, "sends", "sends", 0);
        List<Send> sendList = new ArrayList<Send>();
        List<long[]> channels = new ArrayList<long[]>();
        for (int i = 0; i < sendsDoc.length(); i++) {
            String f = "sends[" + i + "]";
            JSONObject s = c.object(sendsDoc.opt(i), f);
            c.only(s, f, "tensor", "source", "from", "to", "channels", "bytes");
            String tensor = c.name(s.opt("tensor"), f + ".tensor");
            c.name(s.opt("source"), f + ".source");
            int[] from = endpoint(c, s, "from", f);
            int[] to = endpoint(c, s, "to", f);
            JSONArray ch = c.array(s, "channels", f + ".channels", 2);
            if (ch.length() != 2) {
                throw c.fail(f + ".channels", "must be [start, stop), received " + ch);
            }
            channels.add(new long[] {c.integer(ch.opt(0), f + ".channels[0]", 0, Long.MAX_VALUE),
                c.integer(ch.opt(1), f + ".channels[1]", 0, Long.MAX_VALUE)});
            c.integer(s, "bytes", f + ".bytes", 1, Long.MAX_VALUE);
            JSONObject fromDoc = s.optJSONObject("from");
            JSONObject toDoc = s.optJSONObject("to");
            sendList.add(new Send(tensor, from[0], fromDoc.optString("stage"), to[0], toDoc.optString("stage")));
        }
        sends = Collections.unmodifiableList(sendList);

        JSONObject totals = c.object(doc, "totals", "totals");
        c.only(totals, "totals", "bytes_per_inference", "input_bytes", "params", "flops");
        for (String k : new String[] {"bytes_per_inference", "input_bytes", "params", "flops"}) {
            c.integer(totals, k, "totals." + k, 0, Long.MAX_VALUE);
        }

        checkReferences(c, widths.length(), inputShape, outputShape, fusionOutput, channels);
    }

    private static int[] endpoint(JsonCheck c, JSONObject s, String key, String f) {
        JSONObject e = c.object(s, key, f + "." + key);
        c.only(e, f + "." + key, "device", "stage");
        int device = (int) c.integer(e, "device", f + "." + key + ".device", 0, Integer.MAX_VALUE);
        c.name(e.opt("stage"), f + "." + key + ".stage");
        return new int[] {device};
    }

    /** What the schema cannot say (paradis_runtime/fusion_graph.py _check_references). */
    private void checkReferences(JsonCheck c, int widths, int[] inputShape, int[] outputShape, String fusionOutput,
            List<long[]> channels) {
        int d = devices.size();
        if (widths != d) {
            throw c.fail("widths", "has " + widths + " entries for " + d + " devices");
        }
        Map<String, Integer> produced = new HashMap<String, Integer>();
        produced.put(inputTensor, -1);
        for (Device dev : devices) {
            for (int j = 0; j < dev.stages.size(); j++) {
                Stage s = dev.stages.get(j);
                String sf = "devices[" + dev.index + "].stages[" + j + "]";
                List<String> all = new ArrayList<String>(s.inputs);
                all.addAll(s.outputs);
                for (String t : all) {
                    if (!tensors.containsKey(t)) {
                        throw c.fail(sf, "names tensor '" + t + "', which is not in 'tensors'");
                    }
                }
                for (String t : s.outputs) {
                    if (produced.containsKey(t)) {
                        throw c.fail(sf + ".outputs", "produces '" + t + "' a second time");
                    }
                    produced.put(t, dev.index);
                    if (tensors.get(t).device != dev.index) {
                        throw c.fail("tensors." + t + ".device", "is " + tensors.get(t).device + ", but device "
                                + dev.index + " produces it");
                    }
                }
            }
        }
        for (Device dev : devices) {
            for (int j = 0; j < dev.stages.size(); j++) {
                for (String t : dev.stages.get(j).inputs) {
                    if (!produced.containsKey(t)) {
                        throw c.fail("devices[" + dev.index + "].stages[" + j + "].inputs", "reads '" + t
                                + "', which no stage produces");
                    }
                }
            }
        }
        String[][] ends = {{"input", inputTensor}, {"output", outputTensor}};
        int[][] shapes = {inputShape, outputShape};
        for (int k = 0; k < 2; k++) {
            Tensor t = tensors.get(ends[k][1]);
            if (t == null) {
                throw c.fail(ends[k][0] + ".tensor", "names '" + ends[k][1] + "', which is not in 'tensors'");
            }
            if (!Arrays.equals(t.shape, shapes[k])) {
                throw c.fail(ends[k][0] + ".shape", "is " + Arrays.toString(shapes[k]) + " but tensors." + t.name
                        + ".shape is " + Arrays.toString(t.shape));
            }
        }
        if (inputDevice >= d) {
            throw c.fail("input.device", "is " + inputDevice + " for " + d + " devices");
        }
        if (fusionDevice >= d) {
            throw c.fail("fusion.device", "is " + fusionDevice + " for " + d + " devices");
        }
        for (String t : fusionInputs) {
            if (!produced.containsKey(t)) {
                throw c.fail("fusion.inputs", "names '" + t + "', which no stage produces");
            }
        }
        if (!fusionOutput.equals(outputTensor)) {
            throw c.fail("fusion.output", "is '" + fusionOutput + "', not the output tensor '" + outputTensor + "'");
        }
        for (int i = 0; i < sends.size(); i++) {
            Send s = sends.get(i);
            Integer producer = produced.get(s.tensor);
            if (!tensors.containsKey(s.tensor) || producer == null || producer != s.fromDevice) {
                throw c.fail("sends[" + i + "].tensor", "'" + s.tensor + "' is not produced on device "
                        + s.fromDevice);
            }
            if (s.fromDevice >= d) {
                throw c.fail("sends[" + i + "].from.device", "is " + s.fromDevice + " for " + d + " devices");
            }
            if (s.toDevice >= d) {
                throw c.fail("sends[" + i + "].to.device", "is " + s.toDevice + " for " + d + " devices");
            }
            int[] shape = tensors.get(s.tensor).shape;
            long[] ch = channels.get(i);
            if (ch[1] - ch[0] != shape[shape.length - 1]) {
                throw c.fail("sends[" + i + "].channels", "[" + ch[0] + ", " + ch[1] + ") does not match the last "
                        + "axis of '" + s.tensor + "' (" + shape[shape.length - 1] + ")");
            }
        }
        Set<Long> ids = new HashSet<Long>();
        for (Tensor t : tensors.values()) {
            if (!ids.add(t.id)) {
                throw c.fail("tensors", "repeats the id " + t.id + " (tensor '" + t.name + "')");
            }
        }
        if (precision.equals("int8")) {
            // The wire dtype is the graph's; an int8 graph quantizes the input once and sends int8 bytes,
            // which needs the input's quantization.
            Tensor in = tensors.get(inputTensor);
            if (in.dtype.equals("int8") && in.quantization == null) {
                throw c.fail("tensors." + inputTensor + ".quantization", "is null for an int8 input tensor");
            }
        }
    }

    // -- files ----------------------------------------------------------------------------------------------

    static byte[] readAll(File path) throws IOException {
        long n = path.length();
        if (n > Integer.MAX_VALUE) {
            throw new IOException(path + ": " + n + " bytes is too large to read at once.");
        }
        byte[] out = new byte[(int) n];
        InputStream in = new FileInputStream(path);
        try {
            int got = 0;
            while (got < out.length) {
                int k = in.read(out, got, out.length - got);
                if (k < 0) {
                    throw new IOException(path + ": the file shrank while being read.");
                }
                got += k;
            }
        } finally {
            in.close();
        }
        return out;
    }

    static byte[] digest(byte[] raw) {
        return sha().digest(raw);
    }

    private static MessageDigest sha() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is unavailable on this Java runtime: " + e, e);
        }
    }

    /** SHA-256 of a file, streamed. */
    public static byte[] sha256(File file) throws IOException {
        MessageDigest md = sha();
        InputStream in = new FileInputStream(file);
        try {
            byte[] block = new byte[1 << 16];
            int k;
            while ((k = in.read(block)) > 0) {
                md.update(block, 0, k);
            }
        } finally {
            in.close();
        }
        return md.digest();
    }
}
