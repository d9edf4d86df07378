package org.paradis.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.DataInputStream;
import java.io.File;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The handshake and the scheduler over loopback TCP: this test plays the other device with a raw socket and
 * the frame codec, the Java Peer runs the graph of {@link TestGraph} with its fake engine.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class PeerTest {
    static final byte[] KEY = "paradis-test-key-0123456789abcdef".getBytes();

    @TempDir
    Path tmp;
    File graphFile;
    FusionGraph graph;
    Peer peer;
    final LinkedBlockingQueue<String> events = new LinkedBlockingQueue<String>();
    final Peer.Listener listener = new Peer.Listener() {
        @Override
        public void onPeerReady(DeviceProgram p, int device) {
            events.add("ready " + device);
        }

        @Override
        public void onPeerLost(DeviceProgram p, int device, String reason, int code) {
            events.add("lost " + device + ": " + reason);
        }
    };

    @BeforeEach
    void graph() throws Exception {
        graphFile = TestGraph.write(tmp.toFile(), TestGraph.document(tmp.toFile()));
        graph = FusionGraph.read(graphFile, true);
    }

    @AfterEach
    void stop() {
        if (peer != null) {
            peer.stop(false);
        }
    }

    /** Device {@code device} of the test graph as a Java peer (device 1 listens, device 0 dials {@code dial}). */
    Peer start(int device, PeerConfig config, InetSocketAddress dial) throws Exception {
        DeviceProgram p = new DeviceProgram(graphFile, graph, device, config.maxFrameBytes());
        Map<Integer, InetSocketAddress> addresses = new HashMap<Integer, InetSocketAddress>();
        if (dial != null) {
            addresses.put(1, dial);
        }
        peer = new Peer(Collections.singletonList(p), config, addresses,
                device == 1 ? new InetSocketAddress("127.0.0.1", 0) : null, TestGraph.ENGINE, listener).start();
        return peer;
    }

    /** The other end of a connection, written with the codec only. */
    static final class Remote {
        final Socket sock;
        final DataInputStream in;
        final OutputStream out;
        final byte[] nonce = new byte[32];

        Remote(Socket sock) throws IOException {
            this.sock = sock;
            sock.setSoTimeout(10000);
            in = new DataInputStream(sock.getInputStream());
            out = sock.getOutputStream();
            Arrays.fill(nonce, (byte) 7);
        }

        void send(byte[]... frames) throws IOException {
            for (byte[] f : frames) {
                out.write(f);
            }
        }

        /** {header, payload}, or null at the end of the stream. */
        Object[] read() throws IOException {
            byte[] h = new byte[64];
            try {
                in.readFully(h);
            } catch (java.io.EOFException e) {
                return null;
            }
            Header header = Frames.decodeHeader(h);
            byte[] payload = new byte[(int) header.payloadLen];
            in.readFully(payload);
            return new Object[] {header, payload};
        }

        /** The next frame that is not a heartbeat (or TENSOR, when {@code skipTensors}). */
        Object[] next(boolean skipTensors) throws IOException {
            while (true) {
                Object[] f = read();
                int type = f == null ? 0 : ((Header) f[0]).type;
                if (f == null || (type != FrameType.HEARTBEAT && !(skipTensors && type == FrameType.TENSOR))) {
                    return f;
                }
            }
        }

        /** An ERROR with {@code code} next, then (for a fatal code) the end of the stream. */
        ErrorPayload expectError(int code) throws Exception {
            Object[] f = next(true);
            assertNotNull(f, "the connection closed without an ERROR");
            assertEquals(FrameType.ERROR, ((Header) f[0]).type, f[0].toString());
            ErrorPayload e = Frames.decodeError((byte[]) f[1]);
            assertEquals(ErrorCode.name(code), ErrorCode.name(e.code), e.toString());
            if (ErrorCode.isFatal(code)) {
                assertEquals(-1, in.read(), "nothing after a fatal ERROR");
            }
            return e;
        }

        Hello hello() throws Exception {
            Object[] f = next(false);
            assertEquals(FrameType.HELLO, ((Header) f[0]).type);
            return Frames.decodeHello((byte[]) f[1]);
        }
    }

    /** Device 0 dialing the Java device 1, handshake completed with {@code key}. */
    Remote dialAsDevice0(byte[] key) throws Exception {
        Remote r = new Remote(new Socket("127.0.0.1", peer.listenAddress().getPort()));
        r.send(Frames.encodeHello(new Hello(graph.sha256(), r.nonce, 0, 1, "2x0.5")));
        Hello theirs = r.hello();
        assertEquals(1, theirs.device);
        Object[] auth = r.next(false);
        assertEquals(FrameType.AUTH, ((Header) auth[0]).type);
        assertArrayEquals(Frames.authMac(KEY, graph.sha256(), 1, 0, theirs.nonce(), r.nonce), (byte[]) auth[1]);
        r.send(Frames.authFrame(Frames.authMac(key, graph.sha256(), 0, 1, r.nonce, theirs.nonce())));
        return r;
    }

    static byte[] tensor(long id, int[] shape, long rid, float... values) {
        return Frames.tensorFrame(new TensorSpec("t", "float32", shape), id, rid, TestGraph.floats(values));
    }

    static float[] floats(byte[] payload) {
        ByteBuffer b = ByteBuffer.wrap(payload).order(ByteOrder.LITTLE_ENDIAN);
        float[] out = new float[payload.length / 4];
        for (int i = 0; i < out.length; i++) {
            out[i] = b.getFloat();
        }
        return out;
    }

    // -- the scheduler ------------------------------------------------------------------------------------

    @Test
    void stagesRunWhenTheirInputsArriveAndTheGraphsSendsLeave() throws Exception {
        start(1, new PeerConfig(KEY), null);
        Remote r = dialAsDevice0(KEY);
        // q0 first: stage b (x only) cannot run yet, stage c waits for b; then x completes the request.
        r.send(tensor(4, new int[] {1, 2}, 41, 10f, 20f), tensor(0, new int[] {1, 4}, 41, 1f, 2f, 3f, 4f));
        Object[] f = r.next(false);
        Header h = (Header) f[0];
        assertEquals(FrameType.TENSOR, h.type);
        assertEquals(41, h.requestId);
        assertEquals(2, h.tensorId);  // p1, the only tensor device 1 sends
        assertArrayEquals(new float[] {32f, 34f, 36f, 38f}, floats((byte[]) f[1]));  // 2x + (10 + 20)
        // A second request, inputs in the other order.
        r.send(tensor(0, new int[] {1, 4}, 42, 0f, 0f, 0f, 1f), tensor(4, new int[] {1, 2}, 42, 1f, 1f));
        f = r.next(false);
        assertEquals(42, ((Header) f[0]).requestId);
        assertArrayEquals(new float[] {2f, 2f, 2f, 4f}, floats((byte[]) f[1]));
        // A finished request's frames are discarded silently (section 6 step 8): no duplicate, no answer.
        r.send(tensor(4, new int[] {1, 2}, 41, 10f, 20f));
        // An idle ready connection gets heartbeats (interval 0.5 s).
        Object[] beat = r.read();
        assertEquals(FrameType.HEARTBEAT, ((Header) beat[0]).type);
        // Graceful stop: SHUTTING_DOWN (fatal range), then the end of the stream.
        peer.stop(true);
        r.expectError(ErrorCode.SHUTTING_DOWN);
    }

    @Test
    void aFrameForADeviceNotConnectedIsHeldUntilItConnectsOrItsDeadline() throws Exception {
        start(1, new PeerConfig(KEY), null);
        DeviceProgram p = peer.programs().get(0);
        // Nobody has dialed yet: held, not waited for (the compute thread runs on) and not dropped.
        assertTrue(peer.sendTo(p, 0, tensor(2, new int[] {1, 4}, 9, 9f, 9f, 9f, 9f), 100), "held 0.1 s");
        assertTrue(peer.sendTo(p, 0, tensor(2, new int[] {1, 4}, 10, 1f, 2f, 3f, 4f)), "held the peer deadline");
        assertFalse(peer.sendTo(p, 0, tensor(2, new int[] {1, 4}, 11, 0f, 0f, 0f, 0f), 0), "hold 0: not held");
        Thread.sleep(400);  // request 9's frame expires
        Remote r = dialAsDevice0(KEY);
        Object[] f = r.next(false);
        assertEquals(FrameType.TENSOR, ((Header) f[0]).type);
        assertEquals(10, ((Header) f[0]).requestId);
        assertArrayEquals(new float[] {1f, 2f, 3f, 4f}, floats((byte[]) f[1]));
    }

    @Test
    void aDuplicateTensorClosesTheConnection() throws Exception {
        start(1, new PeerConfig(KEY), null);
        Remote r = dialAsDevice0(KEY);
        r.send(tensor(4, new int[] {1, 2}, 7, 1f, 1f), tensor(4, new int[] {1, 2}, 7, 1f, 1f));
        ErrorPayload e = r.expectError(ErrorCode.DUPLICATE_TENSOR);
        assertTrue(e.message.contains("'q0'") && e.message.contains("7"), e.message);
        assertTrue(events.poll(5, TimeUnit.SECONDS).startsWith("ready 0"));
    }

    @Test
    void cancelDeadlineAndOverload() throws Exception {
        start(1, new PeerConfig(KEY).requestDeadline(0.3).maxInflight(2), null);
        Remote r = dialAsDevice0(KEY);
        // CANCEL: the request is dropped; its late input is discarded, nothing comes back for it.
        r.send(tensor(4, new int[] {1, 2}, 5, 1f, 1f), Frames.encodeHeader(Header.control(FrameType.CANCEL, 0, 5)),
                tensor(0, new int[] {1, 4}, 5, 1f, 1f, 1f, 1f));
        // Deadline: only q0 of request 6 ever arrives.
        long t0 = System.nanoTime();
        r.send(tensor(4, new int[] {1, 2}, 6, 1f, 1f));
        Object[] f = r.next(false);
        assertEquals(FrameType.ERROR, ((Header) f[0]).type, "request 5 was cancelled: no TENSOR for it");
        assertEquals(6, ((Header) f[0]).requestId);
        assertEquals(ErrorCode.DEADLINE_EXCEEDED, Frames.decodeError((byte[]) f[1]).code);
        double waited = (System.nanoTime() - t0) / 1e9;
        assertTrue(waited >= 0.3 && waited < 2.0, "deadline of 0.3 s reported after " + waited + " s");
        // Overload: a third live request drops the oldest with OVERLOADED; the connection stays.
        r.send(tensor(4, new int[] {1, 2}, 8, 1f, 1f), tensor(4, new int[] {1, 2}, 9, 1f, 1f),
                tensor(4, new int[] {1, 2}, 10, 1f, 1f));
        f = r.next(false);
        assertEquals(ErrorCode.OVERLOADED, Frames.decodeError((byte[]) f[1]).code);
        assertEquals(8, ((Header) f[0]).requestId);
        r.send(tensor(0, new int[] {1, 4}, 10, 0f, 0f, 0f, 0f));
        f = r.next(false);  // request 9's deadline may come first; request 10 must be answered
        while (((Header) f[0]).type == FrameType.ERROR) {
            f = r.next(false);
        }
        assertEquals(10, ((Header) f[0]).requestId);
    }

    @Test
    void badFramesAfterTheHandshakeGetTheirCode() throws Exception {
        start(1, new PeerConfig(KEY), null);
        Remote r = dialAsDevice0(KEY);
        r.send(tensor(4, new int[] {1, 4}, 3, 1f, 1f, 1f, 1f));  // q0 is [1, 2]
        r.expectError(ErrorCode.BAD_SHAPE);
        // The peer keeps serving: a fresh connection works.
        Remote again = dialAsDevice0(KEY);
        again.send(Frames.unhex("474554202f20485454502f312e310d0a0d0a00000000000000000000000000000000000000000000"
                + "00000000000000000000000000000000000000000000000000"));
        again.expectError(ErrorCode.BAD_MAGIC);
    }

    // -- the handshake ------------------------------------------------------------------------------------

    @Test
    void wrongKeyIsRefused() throws Exception {
        start(1, new PeerConfig(KEY), null);
        Remote r = dialAsDevice0("not-the-session-key-at-all".getBytes());
        r.send(tensor(0, new int[] {1, 4}, 1, 1f, 1f, 1f, 1f));
        ErrorPayload e = r.expectError(ErrorCode.AUTH_FAILED);
        assertTrue(e.message.contains("session keys"), e.message);
        assertFalse(peer.connected(peer.programs().get(0), 0));
    }

    @Test
    void wrongGraphHashAndWrongDeviceAreRefused() throws Exception {
        start(1, new PeerConfig(KEY), null);
        Remote r = new Remote(new Socket("127.0.0.1", peer.listenAddress().getPort()));
        r.send(Frames.encodeHello(new Hello(new byte[32], r.nonce, 0, 1, "2x0.5")),
                tensor(0, new int[] {1, 4}, 1, 1f, 1f, 1f, 1f));
        assertTrue(r.expectError(ErrorCode.GRAPH_MISMATCH).message.contains("same export"));
        Remote self = new Remote(new Socket("127.0.0.1", peer.listenAddress().getPort()));
        self.send(Frames.encodeHello(new Hello(graph.sha256(), self.nonce, 1, 1, "2x0.5")));
        self.expectError(ErrorCode.BAD_DEVICE);
    }

    @Test
    void aReflectedNonceIsRefused() throws Exception {
        // The Java peer as device 0 dials a fake device 1 that echoes device 0's own nonce back.
        ServerSocket server = new ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"));
        server.setSoTimeout(10000);
        start(0, new PeerConfig(KEY), new InetSocketAddress("127.0.0.1", server.getLocalPort()));
        Remote r = new Remote(server.accept());
        Hello theirs = r.hello();
        assertEquals(0, theirs.device);
        r.send(Frames.encodeHello(new Hello(graph.sha256(), theirs.nonce(), 1, 0, "2x0.5")),
                Frames.authFrame(Frames.authMac(KEY, graph.sha256(), 1, 0, theirs.nonce(), theirs.nonce())));
        assertTrue(r.expectError(ErrorCode.AUTH_FAILED).message.contains("reflected"));
        DeviceProgram p = peer.programs().get(0);
        assertFalse(peer.connected(p, 1));
        long until = System.nanoTime() + 5_000_000_000L;
        while (peer.dialError(p, 1) == null && System.nanoTime() < until) {
            Thread.sleep(10);
        }
        assertEquals(ErrorCode.AUTH_FAILED, peer.dialError(p, 1).code);
        server.close();
    }

    @Test
    void aSilentHandshakeTimesOut() throws Exception {
        start(1, new PeerConfig(KEY).handshakeTimeout(0.3), null);
        Remote r = new Remote(new Socket("127.0.0.1", peer.listenAddress().getPort()));
        r.expectError(ErrorCode.HANDSHAKE_TIMEOUT);
    }

    // -- a peer that vanishes -----------------------------------------------------------------------------

    /** Device 0 (the Java peer) dials the fake device 1 and completes the handshake with it. */
    Remote readyDevice1(ServerSocket server) throws Exception {
        Remote r = new Remote(server.accept());
        Hello theirs = r.hello();
        r.send(Frames.encodeHello(new Hello(graph.sha256(), r.nonce, 1, 0, "2x0.5")),
                Frames.authFrame(Frames.authMac(KEY, graph.sha256(), 1, 0, r.nonce, theirs.nonce())));
        Object[] auth = r.next(false);
        assertEquals(FrameType.AUTH, ((Header) auth[0]).type);
        assertEquals("ready 1", events.poll(5, TimeUnit.SECONDS));
        return r;
    }

    @Test
    void aSilentPeerIsReportedWithinThePeerDeadline() throws Exception {
        ServerSocket server = new ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"));
        server.setSoTimeout(10000);
        start(0, new PeerConfig(KEY).heartbeatInterval(0.1).peerDeadline(0.5),
                new InetSocketAddress("127.0.0.1", server.getLocalPort()));
        Remote r = readyDevice1(server);
        long t0 = System.nanoTime();
        String lost = events.poll(5, TimeUnit.SECONDS);  // the fake device 1 never sends another byte
        double after = (System.nanoTime() - t0) / 1e9;
        assertNotNull(lost, "a silent peer was never reported");
        assertTrue(lost.startsWith("lost 1") && lost.contains("unresponsive") && lost.contains("0.5 s"), lost);
        assertTrue(after < 1.5, "reported after " + after + " s for a deadline of 0.5 s");
        r.sock.close();
        server.close();
    }

    @Test
    void aPeerThatDiesInsideAFrameIsReportedClearly() throws Exception {
        ServerSocket server = new ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"));
        server.setSoTimeout(10000);
        start(0, new PeerConfig(KEY), new InetSocketAddress("127.0.0.1", server.getLocalPort()));
        Remote r = readyDevice1(server);
        byte[] frame = tensor(2, new int[] {1, 4}, 1, 1f, 2f, 3f, 4f);
        r.send(Arrays.copyOf(frame, 70));  // the header and 6 of 16 payload bytes, then gone
        r.sock.close();
        String lost = events.poll(5, TimeUnit.SECONDS);
        assertNotNull(lost);
        assertTrue(lost.startsWith("lost 1") && lost.contains("inside a frame (6 of 16 bytes)"), lost);
        server.close();
    }

    @Test
    void anAbsentPeerIsReportedAndStopDoesNotHang() throws Exception {
        ServerSocket taken = new ServerSocket(0);
        int port = taken.getLocalPort();
        taken.close();  // nobody listens there now
        start(0, new PeerConfig(KEY).connectTimeout(0.5), new InetSocketAddress("127.0.0.1", port));
        DeviceProgram p = peer.programs().get(0);
        long until = System.nanoTime() + 5_000_000_000L;
        while (peer.dialError(p, 1) == null && System.nanoTime() < until) {
            Thread.sleep(10);
        }
        String why = String.valueOf(peer.dialError(p, 1));
        assertTrue(why.contains("cannot reach device 1") && why.contains(String.valueOf(port)), why);
        long t0 = System.nanoTime();
        peer.stop(true);
        peer = null;
        assertTrue((System.nanoTime() - t0) / 1e9 < 3, "stop took too long");
    }

    @Test
    void fusionSumsPartialsInFloat32() throws Exception {
        Map<String, ByteBuffer> partials = new HashMap<String, ByteBuffer>();
        partials.put("p0", ByteBuffer.wrap(TestGraph.floats(0.1f, 1e8f, -1f, 3f)).order(ByteOrder.LITTLE_ENDIAN));
        partials.put("p1", ByteBuffer.wrap(TestGraph.floats(0.2f, 1f, 1f, 0.5f)).order(ByteOrder.LITTLE_ENDIAN));
        float[] y = Peer.fuse(graph, partials);
        assertArrayEquals(new float[] {0.1f + 0.2f, 1e8f, 0f, 3.5f}, y);  // float32 rounding: 1e8 + 1 == 1e8
        List<String> order = graph.fusionInputs;
        assertEquals(Arrays.asList("p0", "p1"), order);
    }
}
