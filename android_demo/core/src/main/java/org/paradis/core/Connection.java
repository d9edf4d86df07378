package org.paradis.core;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.security.SecureRandom;
import java.util.Arrays;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * One TCP connection between this device and one peer device of one graph (FRAME_FORMAT.md sections 5-7): the
 * HELLO/AUTH handshake, the checked read loop, whole-frame writes, heartbeats and the peer deadline.
 *
 * <p>Threads: the one that calls {@link #run} reads (and runs the handshake); a writer thread takes queued
 * frames once the connection is ready, so a stage's compute never waits for the receiver to drain its socket.
 */
final class Connection {
    private static final SecureRandom RANDOM = new SecureRandom();
    private static final int READY_TYPES = FrameType.mask(FrameType.TENSOR, FrameType.ERROR, FrameType.HEARTBEAT,
            FrameType.CANCEL);
    static final byte[] HEARTBEAT = Frames.encodeHeader(Header.control(FrameType.HEARTBEAT, 0, 0));
    private static final byte[] STOP = new byte[0];

    /** The handshake failed; {@code code} is the ERROR code sent or received (0: the socket broke). */
    static final class HandshakeRefused extends Exception {
        private static final long serialVersionUID = 1L;
        final int code;
        final boolean remote;

        HandshakeRefused(int code, String message, boolean remote) {
            super((remote && code != 0 ? "the peer refused: " : "") + (code != 0 ? ErrorCode.name(code) + ": " : "")
                    + message);
            this.code = code;
            this.remote = remote;
        }
    }

    final Peer node;
    final PeerConfig config;
    final Socket sock;
    final String address;
    final boolean dialed;
    volatile DeviceProgram program;
    volatile int peer;
    volatile boolean ready;
    volatile boolean closed;
    volatile long lastRecv;
    volatile long lastSent;
    /** System.nanoTime() when the write in progress began, 0 when none: a write blocked past the deadline. */
    private volatile long writeSince;
    private final byte[] nonce = new byte[32];
    private final Object writeLock = new Object();
    private final LinkedBlockingQueue<byte[]> queue = new LinkedBlockingQueue<byte[]>();
    /** Counted down when the reader thread has finished with the socket (end of stream, error, or close). */
    private final CountDownLatch readerDone = new CountDownLatch(1);
    private final InputStream in;
    private final OutputStream out;

    Connection(Peer node, Socket sock, String address, DeviceProgram program, int peer) throws IOException {
        this.node = node;
        this.config = node.config;
        this.sock = sock;
        this.address = address;
        this.program = program;
        this.peer = peer;
        this.dialed = program != null;
        RANDOM.nextBytes(nonce);
        lastRecv = lastSent = System.nanoTime();
        sock.setTcpNoDelay(true);
        in = sock.getInputStream();
        out = sock.getOutputStream();
    }

    @Override
    public String toString() {
        return "connection " + (program == null ? "(unbound)" : program.describe()) + " <-> device "
                + (peer < 0 ? "?" : String.valueOf(peer)) + " at " + address;
    }

    // -- writing ------------------------------------------------------------------------------------------

    private void write(byte[] frame) throws IOException {
        synchronized (writeLock) {
            writeSince = System.nanoTime();
            try {
                out.write(frame);  // one call per frame: header and payload in one buffer
            } finally {
                writeSince = 0;
            }
        }
    }

    /** Queues one whole frame (written at once before ready); false if the connection is gone. */
    boolean send(byte[] frame) {
        if (closed) {
            return false;
        }
        lastSent = System.nanoTime();
        if (!ready) {
            try {
                write(frame);
                return true;
            } catch (IOException e) {
                close("a write failed (" + why(e) + ")", 0, false);
                return false;
            }
        }
        queue.add(frame);
        return true;
    }

    private void writerLoop() {
        try {
            while (true) {
                byte[] frame = queue.take();
                if (frame == STOP) {
                    return;
                }
                write(frame);
            }
        } catch (IOException e) {
            close("a write failed (" + why(e) + ")", 0, false);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Housekeeping tick: a heartbeat when idle, and the write half of the peer deadline. */
    void tick(long now) {
        if (!ready || closed) {
            return;
        }
        long since = writeSince;
        if (since != 0 && now - since > PeerConfig.nanos(config.peerDeadline)) {
            close("unresponsive: a write blocked for " + config.peerDeadline + " s", 0, false);
            return;
        }
        if (now - lastSent >= PeerConfig.nanos(config.heartbeatInterval)) {
            send(HEARTBEAT);
        }
    }

    // -- closing ------------------------------------------------------------------------------------------

    /** A violation: one ERROR frame (not waited for), shut down writing, close, report. */
    void fail(int code, String detail, long tensorId, long requestId) {
        if (closed) {
            return;
        }
        try {
            // Any write in progress ends within the peer deadline (the tick closes the socket otherwise).
            write(Frames.encodeError(code, detail, tensorId, requestId));
        } catch (IOException e) {
            // the peer is gone already: closing below reports why we failed it
        }
        close(ErrorCode.name(code) + ": " + detail, code, false);
    }

    void close(String reason, int code, boolean remote) {
        if (stopWriting()) {
            release(reason, code, remote);
        }
    }

    /**
     * The first half of a graceful leave (see {@link Peer#stop}): the ERROR frame, then the end of writing; the
     * reader thread goes on reading and dropping until the other side closes. False if already closed.
     */
    boolean announce(int code, String detail) {
        if (closed) {
            return false;
        }
        try {
            write(Frames.encodeError(code, detail, Frames.NO_TENSOR, 0));
        } catch (IOException e) {
            // the peer is gone already: the reader sees the end
        }
        return stopWriting();
    }

    /**
     * Waits until the reader thread has read the other side's end of stream (or failed), at most until
     * {@code deadline} (System.nanoTime()).
     */
    void awaitReaderDone(long deadline) {
        try {
            readerDone.await(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Marks the connection closed and shuts down writing; false if it already was. */
    private boolean stopWriting() {
        synchronized (this) {
            if (closed) {
                return false;
            }
            closed = true;
        }
        queue.add(STOP);
        try {
            sock.shutdownOutput();
        } catch (IOException e) {
            // already shut: the close below is what matters
        }
        return true;
    }

    void release(String reason, int code, boolean remote) {
        try {
            sock.close();
        } catch (IOException e) {
            // nothing left to release
        }
        node.connectionClosed(this, reason, code, remote);
    }

    // -- reading ------------------------------------------------------------------------------------------

    /** Exactly {@code buf.length} bytes; {@code deadline} (nanoTime, 0 = none) bounds the whole read. */
    private void readExact(byte[] buf, long deadline) throws IOException {
        int got = 0;
        while (got < buf.length) {
            if (deadline != 0) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new SocketTimeoutException("deadline");
                }
                sock.setSoTimeout((int) Math.max(1, left / 1000000));
            }
            int k = in.read(buf, got, buf.length - got);
            if (k < 0) {
                throw new EOFException(got == 0 ? "the peer closed the connection"
                        : "the peer closed the connection inside a frame (" + got + " of " + buf.length + " bytes)");
            }
            got += k;
            lastRecv = System.nanoTime();
        }
    }

    /** One checked frame: {header, payload}. */
    private Object[] read(int allowed, boolean isReady, long deadline) throws IOException, FrameException {
        byte[] header = new byte[Frames.HEADER_LEN];
        readExact(header, deadline);
        DeviceProgram p = program;
        boolean bound = p != null && peer >= 0;
        Header h = Frames.checkHeader(header, header.length, allowed, bound ? p.expectedFrom(peer) : null,
                bound && peer == p.graph.inputDevice, isReady, config.maxFrameBytes, -1);
        // Allocated only now, after every header check passed (and capped by them).
        byte[] payload = new byte[(int) h.payloadLen];
        readExact(payload, deadline);
        return new Object[] {h, payload};
    }

    private byte[] handshakeRead(int type, long deadline) throws IOException, FrameException, HandshakeRefused {
        Object[] f = read(FrameType.mask(type, FrameType.ERROR), false, deadline);
        Header h = (Header) f[0];
        if (h.type == FrameType.ERROR) {
            ErrorPayload e = Frames.decodeError((byte[]) f[1]);
            throw new HandshakeRefused(e.code, e.message, true);
        }
        return (byte[]) f[1];
    }

    private byte[] hello() {
        DeviceProgram p = program;
        return Frames.encodeHello(new Hello(p.sha256(), nonce, p.device, peer, p.switchName));
    }

    /** HELLO, then AUTH, both ways (section 5). */
    private void handshake() throws IOException, FrameException, HandshakeRefused {
        long deadline = System.nanoTime() + PeerConfig.nanos(config.handshakeTimeout);
        if (dialed) {
            write(hello());
        }
        Hello theirs = Frames.decodeHello(handshakeRead(FrameType.HELLO, deadline));
        DeviceProgram p = program != null ? program : node.programFor(theirs.graphSha256());
        if (p == null || (dialed && !Arrays.equals(theirs.graphSha256(), p.sha256()))) {
            java.util.TreeSet<String> served = new java.util.TreeSet<String>();
            for (DeviceProgram q : node.programs()) {
                served.add(q.switchName);
            }
            if (p == null && !served.isEmpty() && !served.contains(theirs.switchName)) {
                // The same bundle, but this peer serves other switches: say so, not "another export".
                throw new FrameException(ErrorCode.GRAPH_MISMATCH, "switch '" + theirs.switchName
                        + "' is not served by this peer, which serves " + String.join(", ", served)
                        + ": serve it too, or run only the switches every peer serves");
            }
            throw new FrameException(ErrorCode.GRAPH_MISMATCH, "graph sha256 "
                    + Frames.hex(theirs.graphSha256()).substring(0, 16) + "... (switch '" + theirs.switchName
                    + "') is not a graph this peer loaded: both sides need the same export of the bundle");
        }
        if (!theirs.switchName.equals(p.switchName)) {
            throw new FrameException(ErrorCode.GRAPH_MISMATCH, "switch '" + theirs.switchName + "', the graph's is '"
                    + p.switchName + "'");
        }
        int me = p.device;
        if (theirs.device >= p.numDevices || theirs.device == me || theirs.peerDevice != me
                || (dialed && theirs.device != peer)) {
            throw new FrameException(ErrorCode.BAD_DEVICE, "HELLO from device " + theirs.device + " to device "
                    + theirs.peerDevice + "; this is device " + me + " of " + p.numDevices
                    + (dialed ? ", dialing device " + peer : ""));
        }
        if (Arrays.equals(theirs.nonce(), nonce)) {
            throw new FrameException(ErrorCode.AUTH_FAILED, "the peer's nonce is this side's own (a reflected HELLO)");
        }
        program = p;
        peer = theirs.device;
        if (!dialed && node.inUse(p, peer)) {
            // Refused before this side's AUTH, so the dialer never counts it ready. An open connection is live
            // (silence closes one within the peer deadline), so a device back after a drop gets in on a redial.
            throw new FrameException(ErrorCode.DEVICE_IN_USE, inUseDetail(peer, me, p.switchName));
        }
        byte[] mine = Frames.authMac(config.key, p.sha256(), me, peer, nonce, theirs.nonce());
        if (dialed) {
            write(Frames.authFrame(mine));
        } else {
            // The listener learns the graph from the dialer's HELLO, then answers HELLO and AUTH in one write.
            byte[] h = hello();
            byte[] a = Frames.authFrame(mine);
            byte[] both = Arrays.copyOf(h, h.length + a.length);
            System.arraycopy(a, 0, both, h.length, a.length);
            write(both);
        }
        byte[] mac = handshakeRead(FrameType.AUTH, deadline);
        byte[] want = Frames.authMac(config.key, p.sha256(), peer, me, theirs.nonce(), nonce);
        if (!Frames.macEquals(mac, want)) {
            throw new FrameException(ErrorCode.AUTH_FAILED, "wrong MAC: the two sides hold different session keys");
        }
    }

    /**
     * The DEVICE_IN_USE message (FRAME_FORMAT.md section 5), whichever check refuses: the HELLO's, or two
     * handshakes of one device ready at once. As paradis_runtime/_connection.py words it.
     */
    static String inUseDetail(int device, int me, String switchName) {
        return "device " + device + " is already connected to device " + me + " on switch '" + switchName
                + "', and that connection is live: two processes claim device index " + device + "? Give each "
                + "device its own index (a device that reconnects after a drop gets in once its old connection "
                + "closes, within the peer deadline)";
    }

    /** The connection's thread: handshake, then frames until closed. */
    void run() {
        try {
            handshake();
        } catch (SocketTimeoutException e) {
            fail(ErrorCode.HANDSHAKE_TIMEOUT, "no complete handshake within " + config.handshakeTimeout + " s",
                    Frames.NO_TENSOR, 0);
            node.handshakeFailed(this, new HandshakeRefused(ErrorCode.HANDSHAKE_TIMEOUT, "no complete handshake "
                    + "within " + config.handshakeTimeout + " s", false));
            return;
        } catch (FrameException e) {
            fail(e.code, e.detail, Frames.NO_TENSOR, 0);
            node.handshakeFailed(this, new HandshakeRefused(e.code, e.detail, false));
            return;
        } catch (HandshakeRefused e) {
            close(e.getMessage(), e.code, true);
            node.handshakeFailed(this, e);
            return;
        } catch (IOException | RuntimeException e) {
            close("the handshake broke off (" + why(e) + ")", 0, false);
            node.handshakeFailed(this, new HandshakeRefused(0, "the handshake broke off (" + why(e) + ")", true));
            return;
        }
        try {
            sock.setSoTimeout((int) Math.max(1, config.peerDeadline * 1000));
        } catch (IOException e) {
            close("the socket broke (" + why(e) + ")", 0, false);
            return;
        }
        Thread writer = new Thread(this::writerLoop, "paradis-writer-" + program.device + "-" + peer);
        writer.setDaemon(true);
        writer.start();
        ready = true;
        node.connectionReady(this);
        try {
            loop();
            // Closed by a graceful leave (announce): read and drop what the other side still sends until it
            // closes, so the socket never closes with unread bytes (the kernel would answer with a reset,
            // which can reach the other side before its reader has taken the ERROR frame, and discard it).
            byte[] sink = new byte[65536];
            while (in.read(sink) >= 0) {
                // dropped
            }
        } catch (IOException e) {
            // the end either way
        } finally {
            readerDone.countDown();
        }
    }

    private void loop() {
        while (!closed) {
            try {
                Object[] f = read(READY_TYPES, true, 0);
                Header h = (Header) f[0];
                byte[] payload = (byte[]) f[1];
                if (h.type == FrameType.HEARTBEAT) {
                    continue;
                }
                if (h.type == FrameType.ERROR) {
                    ErrorPayload e = Frames.decodeError(payload);
                    if (ErrorCode.isFatal(e.code)) {
                        // Fatal: both sides close; a peer never answers an ERROR with an ERROR.
                        close("the peer sent " + ErrorCode.name(e.code) + ": " + e.message, e.code, true);
                        return;
                    }
                }
                node.frame(this, h, payload);
            } catch (FrameException e) {
                fail(e.code, e.detail, Frames.NO_TENSOR, 0);
                return;
            } catch (SocketTimeoutException e) {
                close("unresponsive: nothing received for " + config.peerDeadline + " s", 0, false);
                return;
            } catch (EOFException e) {
                close(why(e), 0, true);
                return;
            } catch (IOException e) {
                close(why(e), 0, false);
                return;
            } catch (RuntimeException e) {  // a defect here must cost one connection, never the peer
                node.log("internal error on " + this + ": " + e);
                close("internal error (" + e + ")", 0, false);
                return;
            }
        }
    }

    static String why(Throwable e) {
        return e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName();
    }
}
