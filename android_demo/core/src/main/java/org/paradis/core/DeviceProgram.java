package org.paradis.core;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * One device's part of one switch (paradis_runtime/_program.py): which tensors this device expects from each
 * peer (the frame checks of FRAME_FORMAT.md section 6, step 7), to which devices each of its outputs goes
 * (section 4), and the refusals section 6 asks for at start-up (more than 65,535 devices, a sent tensor of
 * rank > 6, a tensor id >= 0xFFFFFFFF, a frame over the cap).
 */
public final class DeviceProgram {
    public final File graphPath;
    public final FusionGraph graph;
    public final String switchName;
    public final int numDevices;
    public final int device;
    public final File deviceFile;
    public final List<FusionGraph.Stage> stages;
    public final boolean isInput;
    public final boolean isFusion;
    /** tensor name -> devices this device sends it to, in device order. */
    public final Map<String, List<Integer>> sendTo;
    /** peer device -> {tensor id -> spec} this device accepts from it. */
    public final Map<Integer, Map<Long, TensorSpec>> expected;
    /** The devices this one exchanges frames with, ascending. */
    public final List<Integer> neighbours;
    private final byte[] sha256;

    /** Loads device {@code device} of the graph at {@code graphPath}, checking its files' sha256. */
    public DeviceProgram(File graphPath, int device, long maxFrameBytes) throws IOException {
        this(graphPath, FusionGraph.read(graphPath, true), device, maxFrameBytes);
    }

    /** Device {@code device} of an already validated graph read from {@code graphPath}. */
    public DeviceProgram(File graphPath, FusionGraph g, int device, long maxFrameBytes) {
        this.graphPath = graphPath;
        this.graph = g;
        this.sha256 = g.sha256();
        this.switchName = g.switchName;
        this.numDevices = g.devices.size();
        this.device = device;
        String where = g.where;
        if (numDevices > 65535) {
            throw new FusionGraphException(where + ": " + numDevices + " devices; the wire's u16 indices allow "
                    + "65,535.");
        }
        if (device < 0 || device >= numDevices) {
            throw new FusionGraphException(where + ": switch '" + switchName + "' has devices 0.." + (numDevices - 1)
                    + "; received device=" + device + ".");
        }
        this.deviceFile = new File(graphPath.getAbsoluteFile().getParentFile(), g.devices.get(device).file);
        this.stages = g.devices.get(device).stages;
        this.isInput = device == g.inputDevice;
        this.isFusion = device == g.fusionDevice;

        // What crosses the wire: the input to every other device that reads it, then the distinct
        // (tensor, from, to) of the sends (section 4), in the order paradis_runtime sorts them.
        TreeSet<Integer> readers = new TreeSet<Integer>();
        for (FusionGraph.Device d : g.devices) {
            for (FusionGraph.Stage s : d.stages) {
                if (s.inputs.contains(g.inputTensor)) {
                    readers.add(d.index);
                }
            }
        }
        readers.remove(g.inputDevice);
        List<Object[]> wire = new ArrayList<Object[]>();
        for (int r : readers) {
            wire.add(new Object[] {g.inputTensor, g.inputDevice, r});
        }
        TreeSet<String> seen = new TreeSet<String>();
        List<Object[]> sends = new ArrayList<Object[]>();
        for (FusionGraph.Send s : g.sends) {
            if (s.fromDevice != s.toDevice && seen.add(s.tensor + "\u0000" + s.fromDevice + "\u0000" + s.toDevice)) {
                sends.add(new Object[] {s.tensor, s.fromDevice, s.toDevice});
            }
        }
        Collections.sort(sends, (a, b) -> {
            int k = ((String) a[0]).compareTo((String) b[0]);
            k = k != 0 ? k : Integer.compare((Integer) a[1], (Integer) b[1]);
            return k != 0 ? k : Integer.compare((Integer) a[2], (Integer) b[2]);
        });
        wire.addAll(sends);
        Map<String, List<Integer>> sendTo = new LinkedHashMap<String, List<Integer>>();
        Map<Integer, Map<Long, TensorSpec>> expected = new HashMap<Integer, Map<Long, TensorSpec>>();
        TreeSet<Integer> neighbours = new TreeSet<Integer>();
        for (Object[] w : wire) {
            String name = (String) w[0];
            int src = (Integer) w[1];
            int dst = (Integer) w[2];
            FusionGraph.Tensor t = g.tensors.get(name);
            TensorSpec spec = t.spec();
            if (spec.rank() > 6) {
                throw new FusionGraphException(where + ": tensor '" + name + "' is sent with rank " + spec.rank()
                        + "; frames carry rank <= 6.");
            }
            if (t.id >= Frames.NO_TENSOR) {
                throw new FusionGraphException(where + ": tensor '" + name + "' has id " + t.id + "; ids must stay "
                        + "below 0xFFFFFFFF.");
            }
            if (Frames.HEADER_LEN + spec.payloadLen() > maxFrameBytes) {
                throw new FusionGraphException(where + ": tensor '" + name + "' makes a frame of "
                        + (Frames.HEADER_LEN + spec.payloadLen()) + " bytes, over the cap of " + maxFrameBytes
                        + "; raise max_frame_bytes.");
            }
            if (src == device) {
                if (!sendTo.containsKey(name)) {
                    sendTo.put(name, new ArrayList<Integer>());
                }
                sendTo.get(name).add(dst);
                neighbours.add(dst);
            }
            if (dst == device) {
                if (!expected.containsKey(src)) {
                    expected.put(src, new HashMap<Long, TensorSpec>());
                }
                expected.get(src).put(t.id, spec);
                neighbours.add(src);
            }
        }
        this.sendTo = Collections.unmodifiableMap(sendTo);
        this.expected = Collections.unmodifiableMap(expected);
        this.neighbours = Collections.unmodifiableList(new ArrayList<Integer>(neighbours));
    }

    public byte[] sha256() {
        return sha256.clone();
    }

    public TensorSpec spec(String tensor) {
        return graph.tensors.get(tensor).spec();
    }

    public long id(String tensor) {
        return graph.tensors.get(tensor).id;
    }

    /** The tensor name of a wire id, or null. */
    public String nameOf(long id) {
        for (FusionGraph.Tensor t : graph.tensors.values()) {
            if (t.id == id) {
                return t.name;
            }
        }
        return null;
    }

    /** Specs this device accepts from {@code peer} (empty when none). */
    public Map<Long, TensorSpec> expectedFrom(int peer) {
        Map<Long, TensorSpec> m = expected.get(peer);
        return m == null ? Collections.<Long, TensorSpec>emptyMap() : m;
    }

    public String describe() {
        return "switch '" + switchName + "' device " + device + "/" + numDevices;
    }
}
