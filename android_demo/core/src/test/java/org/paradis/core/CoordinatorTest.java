package org.paradis.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The input device: input quantization and fusion against values worked out here, and the Java
 * {@link Coordinator} as device 0 of {@link TestGraph} beside a real Java {@link Peer} as device 1 (both with
 * the fake engine), or beside a raw-socket device 1 that never answers (the request deadline).
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class CoordinatorTest {
    static final byte[] KEY = PeerTest.KEY;

    @TempDir
    Path tmp;
    final List<Object> running = new ArrayList<Object>();

    @AfterEach
    void stop() {
        for (Object o : running) {
            if (o instanceof Coordinator) {
                ((Coordinator) o).close();
            } else if (o instanceof Peer) {
                ((Peer) o).stop(false);
            }
        }
    }

    /** {@link TestGraph}'s document with some tensors edited, written into a fresh folder and read back. */
    FusionGraph graph(String folder, JSONObject doc) throws Exception {
        File dir = new File(tmp.toFile(), folder);
        dir.mkdirs();
        return FusionGraph.read(TestGraph.write(dir, doc), true);
    }

    JSONObject document(String folder) throws Exception {
        File dir = new File(tmp.toFile(), folder);
        dir.mkdirs();
        return TestGraph.document(dir);
    }

    static JSONObject quant(double scale, int zeroPoint) throws Exception {
        return new JSONObject().put("scale", scale).put("zero_point", zeroPoint);
    }

    // -- quantization -------------------------------------------------------------------------------------

    @Test
    void quantizationRoundsHalfToEvenAndClips() {
        // x / 0.5 - 3: .5 ties go to the even integer, both signs; beyond int8 clips.
        assertEquals(-3, InputTensor.quantize(0.25f, 0.5, -3));   // 0.5 -> 0
        assertEquals(-1, InputTensor.quantize(0.75f, 0.5, -3));   // 1.5 -> 2
        assertEquals(-1, InputTensor.quantize(1.25f, 0.5, -3));   // 2.5 -> 2
        assertEquals(-3, InputTensor.quantize(-0.25f, 0.5, -3));  // -0.5 -> -0
        assertEquals(-5, InputTensor.quantize(-0.75f, 0.5, -3));  // -1.5 -> -2
        assertEquals(127, InputTensor.quantize(100f, 0.5, -3));   // 197 -> 127
        assertEquals(-128, InputTensor.quantize(-100f, 0.5, -3)); // -203 -> -128
        assertEquals(127, InputTensor.quantize(65.0f, 0.5, -3));  // 130 - 3 = 127, the edge itself
    }

    @Test
    void quantizationDividesInFloat32AsNumpyDoes() {
        // numpy divides a float32 array by a Python float in float32: 0.1f / (float) 0.2 is exactly 0.5
        // (0.1f and 0.2f share their mantissa), which rounds to 0. In double 0.1f / 0.2 is 0.5000000075 -> 1.
        assertEquals(0.5f, 0.1f / (float) 0.2);
        assertEquals(1.0, Math.rint(0.1f / 0.2));
        assertEquals(0, InputTensor.quantize(0.1f, 0.2, 0));
    }

    @Test
    void wireBytesAreInt8WhenTheInputTensorIsInt8() throws Exception {
        JSONObject doc = document("int8");
        doc.put("precision", "int8");
        doc.getJSONObject("tensors").getJSONObject("x").put("dtype", "int8").put("quantization", quant(0.25, 5));
        FusionGraph g = graph("int8", doc);
        // 0.125/0.25 = 0.5 -> 0 (+5); 0.375 -> 1.5 -> 2 (+5); -40 -> -160 + 5 clips; 1 -> 4 + 5
        assertArrayEquals(new byte[] {5, 7, -128, 9}, InputTensor.wireBytes(g, new float[] {0.125f, 0.375f, -40f, 1f}));
        FusionGraph f = graph("float", document("float"));
        assertArrayEquals(TestGraph.floats(0.125f, 0.375f, -40f, 1f),
                InputTensor.wireBytes(f, new float[] {0.125f, 0.375f, -40f, 1f}));
    }

    @Test
    void inputCheckNamesTheShapeRefusesNaNAndWarnsOffScale() throws Exception {
        FusionGraph g = graph("float", document("float"));  // x [1, 4], pixel / 255
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> InputTensor.check(g, new float[3]));
        assertTrue(e.getMessage().contains("[1, 4]") && e.getMessage().contains("received 3 values"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class,
                () -> InputTensor.check(g, new float[] {0f, Float.NaN, 0f, 0f}));
        assertTrue(e.getMessage().contains("NaN"), e.getMessage());
        assertNull(InputTensor.check(g, new float[] {0f, 0.5f, 1f, 1.4f}));  // within [0, 1] +- half its span
        String w = InputTensor.check(g, new float[] {0f, 255f, 3f, 0f});  // pixels never divided by 255
        assertNotNull(w);
        assertTrue(w.contains("255.0") && w.contains("preprocess"), w);
    }

    @Test
    void pixelsArePreprocessedAsTheGraphDeclares() throws Exception {
        JSONObject doc = document("image");
        JSONArray shape = new JSONArray().put(1).put(2).put(2).put(1);
        doc.getJSONObject("input").put("shape", shape);
        doc.getJSONObject("tensors").getJSONObject("x").put("shape", shape);
        doc.getJSONObject("input").getJSONObject("preprocessing").put("pixel_scale", 0.5).put("pixel_offset", -1.0);
        FusionGraph g = graph("image", doc);
        int[] argb = {0xFF000000, 0xFFFFFFFF, 0xFF102030, 0x00FF0000};
        float[] x = InputTensor.fromPixels(g, argb, 2, 2);
        // Pillow's L: (r*19595 + g*38470 + b*7471 + 32768) >> 16; then * 0.5 - 1.
        int l = (16 * 19595 + 32 * 38470 + 48 * 7471 + 32768) >> 16;
        assertEquals(29, l);
        int red = (255 * 19595 + 32768) >> 16;
        assertEquals(76, red);
        assertArrayEquals(new float[] {-1f, 126.5f, 29 * 0.5f - 1f, 76 * 0.5f - 1f}, x);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> InputTensor.fromPixels(g, new int[9], 3, 3));
        assertTrue(e.getMessage().contains("2x2") && e.getMessage().contains("3x3"), e.getMessage());
    }

    // -- fusion -------------------------------------------------------------------------------------------

    @Test
    void int8PartialsAreDequantizedThenSummedInFloat32() throws Exception {
        JSONObject doc = document("fuse8");
        doc.put("precision", "int8");
        JSONObject t = doc.getJSONObject("tensors");
        t.getJSONObject("p0").put("dtype", "int8").put("quantization", quant(0.5, 1));
        t.getJSONObject("p1").put("dtype", "int8").put("quantization", quant(0.25, -2));
        FusionGraph g = graph("fuse8", doc);
        Map<String, ByteBuffer> partials = new HashMap<String, ByteBuffer>();
        partials.put("p0", ByteBuffer.wrap(new byte[] {1, 3, -128, 127}).order(ByteOrder.LITTLE_ENDIAN));
        partials.put("p1", ByteBuffer.wrap(new byte[] {-2, 2, 0, 127}).order(ByteOrder.LITTLE_ENDIAN));
        // (q - zp) * scale per partial: p0 -> 0, 1, -64.5, 63; p1 -> 0, 1, 0.5, 32.25
        assertArrayEquals(new float[] {0f, 2f, -64f, 95.25f}, Peer.fuse(g, partials));
    }

    // -- the coordinator on loopback ----------------------------------------------------------------------

    /** Device 1 of {@code graph} as a real Java peer with the fake engine, on a free loopback port. */
    Peer device1(File graphFile, FusionGraph g) throws Exception {
        return device1(graphFile, g, 0);
    }

    Peer device1(File graphFile, FusionGraph g, int port) throws Exception {
        DeviceProgram p = new DeviceProgram(graphFile, g, 1, Frames.MAX_FRAME_BYTES);
        Peer peer = new Peer(Collections.singletonList(p), new PeerConfig(KEY), null,
                new InetSocketAddress("127.0.0.1", port), TestGraph.ENGINE, null).start();
        running.add(peer);
        return peer;
    }

    Coordinator coordinator(List<DeviceProgram> programs, PeerConfig config, int port) throws Exception {
        Map<Integer, InetSocketAddress> peers = new HashMap<Integer, InetSocketAddress>();
        peers.put(1, new InetSocketAddress("127.0.0.1", port));
        Coordinator c = new Coordinator(programs, config, peers, TestGraph.ENGINE, 1, null);
        running.add(c);
        return c;
    }

    @Test
    void device0FeedsTheInputRunsItsStagesAndFuses() throws Exception {
        File folder = new File(tmp.toFile(), "two");
        folder.mkdirs();
        File graphFile = TestGraph.write(folder, TestGraph.document(folder));
        FusionGraph g = FusionGraph.read(graphFile, true);
        Peer one = device1(graphFile, g);
        DeviceProgram zero = new DeviceProgram(graphFile, g, 0, Frames.MAX_FRAME_BYTES);
        Coordinator c = coordinator(Collections.singletonList(zero), new PeerConfig(KEY),
                one.listenAddress().getPort()).connect(10);
        assertEquals("2x0.5", c.currentSwitch());
        // a: p0 = x, q0 = x[0..2) -> device 1; b: h1 = 2x; c: p1 = h1 + q0[0] + q0[1]; y = p0 + p1 = 3x + x0 + x1
        Coordinator.Result r = c.run(new float[] {0.1f, 0.2f, 0.3f, 0.4f}, 10);
        float s = 0.1f + 0.2f;
        float[] want = new float[4];
        float[] x = {0.1f, 0.2f, 0.3f, 0.4f};
        for (int i = 0; i < 4; i++) {
            want[i] = x[i] + (2 * x[i] + s);
        }
        assertArrayEquals(want, r.output);
        assertArrayEquals(new int[] {1, 4}, r.shape());
        assertEquals(3, r.argmax());
        assertEquals("2x0.5", r.switchName);
        assertEquals(1, r.attempts);
        // Frames this device wrote: x [1,4] float32 to device 1 (64 + 16) and q0 [1,2] (64 + 8); read: p1.
        assertEquals(64 + 16 + 64 + 8, r.bytesSent);
        assertEquals(64 + 16, r.bytesReceived);
        assertEquals(Collections.singleton(1), r.arrivals.keySet());
        assertTrue(r.computeS > 0 && r.wireS > 0 && r.latencyS >= r.computeS + r.wireS, r.latencyS + " s");
        assertTrue(r.requestId >= 1 && r.requestId <= (1L << 32), String.valueOf(r.requestId));
        Coordinator.Result next = c.run(x, 10);
        assertEquals(r.requestId + 1, next.requestId);  // ids are drawn in sequence after the first
        assertArrayEquals(want, next.output);
    }

    @Test
    void aSilentPeerFailsTheRequestAtItsDeadlineNamingTheDeviceAndCancelsIt() throws Exception {
        File folder = new File(tmp.toFile(), "silent");
        folder.mkdirs();
        File graphFile = TestGraph.write(folder, TestGraph.document(folder));
        FusionGraph g = FusionGraph.read(graphFile, true);
        ServerSocket server = new ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"));
        server.setSoTimeout(10000);
        DeviceProgram zero = new DeviceProgram(graphFile, g, 0, Frames.MAX_FRAME_BYTES);
        final Coordinator c = coordinator(Collections.singletonList(zero), new PeerConfig(KEY).requestDeadline(0.3),
                server.getLocalPort());
        final Exception[] connectError = new Exception[1];
        Thread connecting = new Thread(() -> {
            try {
                c.connect(10);
            } catch (Exception e) {
                connectError[0] = e;
            }
        });
        connecting.start();
        // The fake device 1 completes the handshake (heartbeats answer the peer deadline), never a TENSOR.
        PeerTest.Remote r = new PeerTest.Remote(server.accept());
        Hello theirs = r.hello();
        r.send(Frames.encodeHello(new Hello(g.sha256(), r.nonce, 1, 0, "2x0.5")),
                Frames.authFrame(Frames.authMac(KEY, g.sha256(), 1, 0, r.nonce, theirs.nonce())));
        connecting.join(10000);
        assertNull(connectError[0]);
        long t0 = System.nanoTime();
        Coordinator.RequestFailed e = assertThrows(Coordinator.RequestFailed.class,
                () -> c.run(new float[] {0f, 0f, 0f, 0f}, 10));
        double after = (System.nanoTime() - t0) / 1e9;
        assertTrue(after >= 0.3 && after < 2.0, "failed after " + after + " s for a deadline of 0.3 s");
        assertEquals(Arrays.asList(1), e.devices);
        assertTrue(e.getMessage().contains("no answer within 0.3 s") && e.getMessage().contains("device(s) [1]"),
                e.getMessage());
        // Device 1 saw the request's input, device 0's q0, then CANCEL for the same id (heartbeats aside).
        List<Object[]> got = new ArrayList<Object[]>();
        while (got.size() < 3) {
            Object[] f = r.next(false);
            assertNotNull(f, "the connection closed before CANCEL");
            if (((Header) f[0]).type != FrameType.AUTH) {
                got.add(f);
            }
        }
        assertEquals(FrameType.TENSOR, ((Header) got.get(0)[0]).type);
        assertEquals(FrameType.TENSOR, ((Header) got.get(1)[0]).type);
        Header cancel = (Header) got.get(2)[0];
        assertEquals(FrameType.CANCEL, cancel.type);
        assertEquals(e.requestId, cancel.requestId);
        assertEquals(e.requestId, ((Header) got.get(0)[0]).requestId);
        r.sock.close();
        server.close();
    }

    /** Two switches of one model, best first: 2x0.5 (devices 0 and 1) and 1x1.0 (device 0 alone). */
    List<DeviceProgram> twoAndSolo() throws Exception {
        File folder = new File(tmp.toFile(), "two");
        folder.mkdirs();
        File twoFile = TestGraph.write(folder, TestGraph.document(folder));
        FusionGraph two = FusionGraph.read(twoFile, true);
        // A one-device switch of the same model: device 0 alone, y = p0 = x (stage a of the fake engine).
        File solo = new File(tmp.toFile(), "solo");
        solo.mkdirs();
        JSONObject doc = TestGraph.document(solo);
        doc.put("switch", "1x1.0").put("widths", new JSONArray().put(1.0));
        JSONArray devices = new JSONArray().put(doc.getJSONArray("devices").getJSONObject(0).put("width", 1.0));
        doc.put("devices", devices).put("sends", new JSONArray());
        doc.getJSONObject("fusion").put("inputs", new JSONArray().put("p0"));
        doc.getJSONObject("tensors").remove("p1");
        doc.getJSONObject("tensors").remove("h1");
        File soloFile = TestGraph.write(solo, doc);
        FusionGraph one = FusionGraph.read(soloFile, true);
        return Arrays.asList(new DeviceProgram(twoFile, two, 0, Frames.MAX_FRAME_BYTES),
                new DeviceProgram(soloFile, one, 0, Frames.MAX_FRAME_BYTES));
    }

    @Test
    void theTickDoesNotMoveBeforeTheLostDeviceIsReported() throws Exception {
        // The peer drops a lost connection, then reports it; the coordinator moves in that report, with
        // the reason. A listener that takes 300 ms (six ticks) to hear of the loss holds the window open
        // in which the tick already sees the device gone: the tick must leave the move to the report.
        List<DeviceProgram> programs = twoAndSolo();
        Peer device1 = device1(programs.get(0).graphPath, programs.get(0).graph);
        Map<Integer, InetSocketAddress> peers = new HashMap<Integer, InetSocketAddress>();
        peers.put(1, new InetSocketAddress("127.0.0.1", device1.listenAddress().getPort()));
        Peer.Listener slow = new Peer.Listener() {
            @Override
            public void onPeerLost(DeviceProgram program, int device, String reason, int code) {
                try {
                    Thread.sleep(300);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        };
        Coordinator c = new Coordinator(programs, new PeerConfig(KEY), peers, TestGraph.ENGINE, 1, slow);
        running.add(c);
        c.connect(10);
        device1.stop(true);
        long until = System.nanoTime() + 5_000_000_000L;
        while (!"1x1.0".equals(c.currentSwitch()) && System.nanoTime() < until) {
            Thread.sleep(10);
        }
        assertEquals("1x1.0", c.currentSwitch(), String.valueOf(c.switchLog()));
        assertTrue(c.switchLog().get(0).startsWith("2x0.5 -> 1x1.0: device 1 lost"), c.switchLog().toString());
    }

    @Test
    void losingADeviceFallsBackToTheNextSwitchAndComesBack() throws Exception {
        List<DeviceProgram> programs = twoAndSolo();
        Peer device1 = device1(programs.get(0).graphPath, programs.get(0).graph);
        Coordinator c = coordinator(programs, new PeerConfig(KEY), device1.listenAddress().getPort()).connect(10);
        float[] x = {1f, 2f, 3f, 4f};
        assertEquals("2x0.5", c.run(x, 10).switchName);
        device1.stop(true);  // leaves with SHUTTING_DOWN: the coordinator moves at once
        long until = System.nanoTime() + 5_000_000_000L;
        while (!"1x1.0".equals(c.currentSwitch()) && System.nanoTime() < until) {
            Thread.sleep(10);
        }
        assertEquals("1x1.0", c.currentSwitch(), String.valueOf(c.switchLog()));
        assertTrue(c.switchLog().get(0).startsWith("2x0.5 -> 1x1.0: device 1 lost"), c.switchLog().toString());
        Coordinator.Result r = c.run(x, 10);
        assertEquals("1x1.0", r.switchName);
        assertArrayEquals(x, r.output);
        assertEquals(0, r.bytesSent);
        // Device 1 back on its address: the coordinator redials it and returns to the better switch.
        device1(programs.get(0).graphPath, programs.get(0).graph, device1.listenAddress().getPort());
        until = System.nanoTime() + 10_000_000_000L;
        while (!"2x0.5".equals(c.currentSwitch()) && System.nanoTime() < until) {
            Thread.sleep(10);
        }
        assertEquals("2x0.5", c.currentSwitch(), String.valueOf(c.switchLog()));
        assertEquals("1x1.0 -> 2x0.5: a better switch is ready", c.switchLog().get(1));
        Coordinator.Result back = c.run(x, 10);
        assertEquals("2x0.5", back.switchName);
        assertEquals(64 + 16 + 64 + 8, back.bytesSent);
    }

    @Test
    void aDeviceBackWithAnotherExportIsReportedOnce() throws Exception {
        // It stayed out of the run with nothing said on device 0 (the refusals were only in its own log).
        List<DeviceProgram> programs = twoAndSolo();
        Peer device1 = device1(programs.get(0).graphPath, programs.get(0).graph);
        int port = device1.listenAddress().getPort();
        List<String> logs = Collections.synchronizedList(new ArrayList<String>());
        Map<Integer, InetSocketAddress> peers = new HashMap<Integer, InetSocketAddress>();
        peers.put(1, new InetSocketAddress("127.0.0.1", port));
        Coordinator c = new Coordinator(programs, new PeerConfig(KEY), peers, TestGraph.ENGINE, 1, new Peer.Listener() {
            @Override
            public void onLog(String line) {
                logs.add(line);
            }
        });
        running.add(c);
        c.connect(10);
        assertEquals("2x0.5", c.currentSwitch());
        device1.stop(true);
        // Device 1 back on its address with another export of 2x0.5 (another graph file, another digest).
        File other = new File(tmp.toFile(), "other");
        other.mkdirs();
        File otherFile = TestGraph.write(other, TestGraph.document(other).put("model", "another-export"));
        device1(otherFile, FusionGraph.read(otherFile, true), port);
        long until = System.nanoTime() + 10_000_000_000L;
        while (count(logs, "refuses switch 2x0.5") == 0 && System.nanoTime() < until) {
            Thread.sleep(20);
        }
        Thread.sleep(1000);  // more redials, refused the same way: still one line
        assertEquals(1, count(logs, "device 1 at 127.0.0.1:" + port + " refuses switch 2x0.5"), logs.toString());
        assertTrue(logs.toString().contains("GRAPH_MISMATCH") || logs.toString().contains("another"), logs.toString());
        assertEquals("1x1.0", c.currentSwitch());
    }

    static int count(List<String> lines, String text) {
        synchronized (lines) {
            int n = 0;
            for (String line : lines) {
                if (line.contains(text)) {
                    n++;
                }
            }
            return n;
        }
    }
}
