package org.paradis.core;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * One device of a deployed bundle over TCP, as {@code paradis peer} (paradis_runtime/peer.py): its part of every
 * switch it serves (one {@link DeviceProgram} each), one authenticated connection per device pair and switch,
 * each stage of a request run as soon as its inputs have arrived, and what the graph says sent right after the
 * stage that produced it.
 *
 * <p>Who dials: the lower device index dials the higher, so every device but 0 listens. Threads: a listener,
 * one reader per connection (dialed connections run on their dialer thread, which redials when they drop), one
 * compute thread (a device runs one stage at a time, as a phone would) and a housekeeping tick for
 * heartbeats, request deadlines and blocked writes.
 */
public final class Peer {
    private static final int RING = 256;  // dropped request ids remembered per graph (section 7)
    private static final long TICK_MS = 50;
    /**
     * A graceful leave waits up to this long (all connections together) for the other sides to close after
     * SHUTTING_DOWN, so that the frame is read, not lost to a reset; a receiver on a loaded machine may take
     * several hundred ms.
     */
    private static final long LEAVE_LINGER_NS = 1_000_000_000L;
    /** Frames held for one missing connection, per live request a peer may hold. */
    private static final int HELD_PER_REQUEST = 4;

    /** What a peer reports; every method has a default so an app overrides what it shows. */
    public interface Listener {
        default void onLog(String line) {
        }

        default void onPeerReady(DeviceProgram program, int device) {
        }

        default void onPeerLost(DeviceProgram program, int device, String reason, int code) {
        }

        /** A request-level ERROR from a peer, or a stage of this device that failed. */
        default void onRequestError(DeviceProgram program, int device, long requestId, int code, String message) {
        }

        /** On the fusion device: the fused float32 output of a request. */
        default void onResult(DeviceProgram program, long requestId, float[] output) {
        }

        /**
         * On the fusion device: the fused output with this device's timing of the request (what the
         * coordinator reports per inference). The default hands the output to {@link #onResult}.
         */
        default void onFused(DeviceProgram program, long requestId, float[] output, Timing timing) {
            onResult(program, requestId, output);
        }

        /** Every housekeeping tick (about 50 ms), with {@code System.nanoTime()}: the coordinator's clock. */
        default void onTick(long nanoTime) {
        }
    }

    /**
     * One request as this device saw it, from {@link #begin} (or its first frame) to the fusion: seconds in
     * its stages ({@code computeS}), writing frames ({@code wireS}), since it began ({@code totalS}), the frame
     * bytes (64-byte headers included) it wrote and read, and when each peer's last frame arrived.
     */
    public static final class Timing {
        public final long requestId;
        public final double computeS;
        public final double wireS;
        public final double totalS;
        public final long bytesSent;
        public final long bytesReceived;
        /** device -> seconds after the request began at which its last frame arrived. */
        public final Map<Integer, Double> arrivals;

        Timing(Request st, long now) {
            this.requestId = st.rid;
            this.computeS = st.computeNs / 1e9;
            this.wireS = st.wireNs / 1e9;
            this.totalS = (now - st.created) / 1e9;
            this.bytesSent = st.bytesSent;
            this.bytesReceived = st.bytesReceived;
            Map<Integer, Double> a = new java.util.TreeMap<Integer, Double>();
            for (Map.Entry<Integer, Long> e : st.arrivals.entrySet()) {
                a.put(e.getKey(), (e.getValue() - st.created) / 1e9);
            }
            this.arrivals = java.util.Collections.unmodifiableMap(a);
        }
    }

    /** Why the last dial to a device failed. */
    public static final class DialError {
        public final int code;
        public final String message;

        DialError(int code, String message) {
            this.code = code;
            this.message = message;
        }

        @Override
        public String toString() {
            return message;
        }
    }

    private static final class Request {
        final long rid;
        final long created = System.nanoTime();
        final Map<String, ByteBuffer> tensors = new HashMap<String, ByteBuffer>();
        int next;
        long computeNs;
        long wireNs;
        long bytesSent;
        long bytesReceived;
        final Map<Integer, Long> arrivals = new HashMap<Integer, Long>();

        Request(long rid) {
            this.rid = rid;
        }
    }

    /** Live requests of one graph, and the ring of the last 256 ids dropped. */
    private static final class Requests {
        final LinkedHashMap<Long, Request> live = new LinkedHashMap<Long, Request>();
        final ArrayDeque<Long> ring = new ArrayDeque<Long>();
        final Set<Long> ringSet = new HashSet<Long>();

        Request drop(long rid) {
            Request st = live.remove(rid);
            if (ringSet.add(rid)) {
                ring.addLast(rid);
                if (ring.size() > RING) {
                    ringSet.remove(ring.removeFirst());
                }
            }
            return st;
        }
    }

    public final int device;
    final PeerConfig config;
    private final List<DeviceProgram> programs;
    private final Map<Integer, InetSocketAddress> addresses;
    private InetSocketAddress listen;
    private final Engine.Factory engineFactory;
    private final Listener listener;
    private final Map<DeviceProgram, Engine> engines = new IdentityHashMap<DeviceProgram, Engine>();
    private final Map<DeviceProgram, Requests> tables = new IdentityHashMap<DeviceProgram, Requests>();
    private final Map<DeviceProgram, Map<Long, String>> names = new IdentityHashMap<DeviceProgram, Map<Long, String>>();
    private final Map<String, Connection> conns = new HashMap<String, Connection>();
    /**
     * Frames for a device with no ready connection (being made, or lost and redialed), oldest first, each with
     * its deadline (nanoTime): sent when the connection is made, dropped at the deadline by the tick. A send
     * never waits: it runs on the compute thread, where a wait would hold every other request behind one missing
     * device, and a link between two peers that drops and comes back within the peer deadline loses no frame
     * (the coordinator cannot see that link and may send a request while the two still redial each other).
     */
    private final Map<String, ArrayDeque<Object[]>> held = new HashMap<String, ArrayDeque<Object[]>>();
    private final Set<Connection> all = new HashSet<Connection>();
    private final Map<String, DialError> dialErrors = new HashMap<String, DialError>();
    /** graph/device/side keys whose DEVICE_IN_USE refusal was logged, until that device connects. */
    private final java.util.Set<String> inUseSaid = new java.util.HashSet<String>();
    private final Object lock = new Object();
    private final LinkedBlockingQueue<Object[]> work = new LinkedBlockingQueue<Object[]>();
    private final List<Thread> threads = new ArrayList<Thread>();
    private volatile boolean running;
    private ServerSocket server;
    private int pending;

    /**
     * @param programs one per switch served, best first, all the same device
     * @param config keys, deadlines, caps
     * @param addresses device -> address of the devices this one dials (those above its index)
     * @param listen where to accept the lower devices; null for device 0
     * @param engines opens the engine of each program's device file
     * @param listener reports (may be null)
     */
    public Peer(List<DeviceProgram> programs, PeerConfig config, Map<Integer, InetSocketAddress> addresses,
            InetSocketAddress listen, Engine.Factory engines, Listener listener) {
        if (programs == null || programs.isEmpty()) {
            throw new IllegalArgumentException("Peer: programs must hold at least one DeviceProgram, received none.");
        }
        Set<Integer> devices = new HashSet<Integer>();
        for (DeviceProgram p : programs) {
            devices.add(p.device);
        }
        if (devices.size() != 1) {
            throw new IllegalArgumentException("Peer: every program must be the same device, received devices "
                    + devices + ".");
        }
        this.device = programs.get(0).device;
        this.programs = new ArrayList<DeviceProgram>(programs);
        this.config = config;
        this.addresses = addresses == null ? new HashMap<Integer, InetSocketAddress>()
                : new HashMap<Integer, InetSocketAddress>(addresses);
        this.listen = listen;
        this.engineFactory = engines;
        this.listener = listener != null ? listener : new Listener() {
        };
        for (DeviceProgram p : programs) {
            tables.put(p, new Requests());
            Map<Long, String> byId = new HashMap<Long, String>();
            for (FusionGraph.Tensor t : p.graph.tensors.values()) {
                byId.put(t.id, t.name);
            }
            names.put(p, byId);
        }
    }

    private static String key(DeviceProgram p, int device) {
        return Frames.hex(p.sha256()) + "/" + device;
    }

    public List<DeviceProgram> programs() {
        return new ArrayList<DeviceProgram>(programs);
    }

    /** The address this peer listens on (its real port once started), or null. */
    public InetSocketAddress listenAddress() {
        return listen;
    }

    void log(String line) {
        listener.onLog(line);
    }

    // -- life ---------------------------------------------------------------------------------------------

    /** Opens the engines, listens, dials the higher devices; returns this. */
    public Peer start() throws Exception {
        for (DeviceProgram p : programs) {
            for (int d : p.neighbours) {
                if (d > device && !addresses.containsKey(d)) {
                    throw new IllegalArgumentException(p.describe() + " exchanges with device " + d + ", but no "
                            + "address was given for it: --peers needs " + d + " entries (device 1 first), received "
                            + addresses.size() + ".");
                }
            }
        }
        for (DeviceProgram p : programs) {
            engines.put(p, engineFactory.open(p));
        }
        running = true;
        if (listen != null) {
            server = new ServerSocket();
            server.setReuseAddress(true);
            server.bind(listen.isUnresolved() ? new InetSocketAddress(listen.getHostString(), listen.getPort())
                    : listen);
            server.setSoTimeout(200);
            listen = new InetSocketAddress(server.getInetAddress(), server.getLocalPort());
            spawn(this::acceptLoop, "paradis-listen-" + device);
        }
        spawn(this::computeLoop, "paradis-compute-" + device);
        spawn(this::tickLoop, "paradis-tick-" + device);
        for (final DeviceProgram p : programs) {
            for (final int d : p.neighbours) {
                if (d > device) {
                    spawn(() -> dialLoop(p, d), "paradis-dial-" + device + "-" + d + "-" + p.switchName);
                }
            }
        }
        return this;
    }

    private Thread spawn(Runnable target, String name) {
        Thread t = new Thread(target, name);
        t.setDaemon(true);
        t.start();
        synchronized (threads) {
            threads.add(t);
        }
        return t;
    }

    /** Leaves: SHUTTING_DOWN on every connection (the coordinator falls back at once), then closes all. */
    public void stop(boolean graceful) {
        if (!running) {
            return;
        }
        running = false;
        // No new connection while leaving: a coordinator that has just read SHUTTING_DOWN may redial at once,
        // and a handshake completed during the linger would bring this device back for a moment.
        if (server != null) {
            try {
                server.close();
            } catch (IOException e) {
                // closing: nothing more to do with it
            }
        }
        List<Connection> open;
        synchronized (lock) {
            open = new ArrayList<Connection>(all);
        }
        // SHUTTING_DOWN and the end of writing on every connection first, then one linger for all of them.
        List<Connection> leaving = new ArrayList<Connection>();
        String detail = "device " + device + " is leaving";
        for (Connection c : open) {
            if (graceful && c.ready) {
                if (c.announce(ErrorCode.SHUTTING_DOWN, detail)) {
                    leaving.add(c);
                }
            } else {
                c.close("stopped", 0, false);
            }
        }
        long deadline = System.nanoTime() + LEAVE_LINGER_NS;
        for (Connection c : leaving) {
            c.awaitReaderDone(deadline);
        }
        for (Connection c : leaving) {
            c.release(ErrorCode.name(ErrorCode.SHUTTING_DOWN) + ": " + detail, ErrorCode.SHUTTING_DOWN, false);
        }
        work.add(new Object[0]);
        synchronized (lock) {
            lock.notifyAll();
        }
        List<Thread> ts;
        synchronized (threads) {
            ts = new ArrayList<Thread>(threads);
        }
        for (Thread t : ts) {
            if (t != Thread.currentThread()) {
                try {
                    t.join((long) (config.connectTimeout * 1000) + 500);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
        }
        for (Engine e : engines.values()) {
            e.close();
        }
    }

    /**
     * "; no connection to device 2 (why)" for each device other than the input device that {@code program}
     * talks to and has no connection with: the input device sees only its own links, and this tells it why a
     * request cannot complete here (a peer down, or refusing this one). As paradis_runtime/peer.py does.
     */
    private String missingLinks(DeviceProgram program) {
        StringBuilder out = new StringBuilder();
        synchronized (lock) {
            for (int d : program.neighbours) {
                String k = key(program, d);
                if (d == program.graph.inputDevice || conns.containsKey(k)) {
                    continue;
                }
                DialError e = dialErrors.get(k);
                out.append(out.length() == 0 ? "; no connection to " : ", ").append("device ").append(d);
                if (e != null) {
                    String why = e.message.length() > 240 ? e.message.substring(0, 240) : e.message;
                    out.append(" (").append(why).append(")");
                }
            }
        }
        return out.toString();
    }

    /** Whether {@code peer} has a ready connection for {@code program} that is not closing: FRAME_FORMAT.md
     * section 5 refuses a new one from it (DEVICE_IN_USE). */
    boolean inUse(DeviceProgram program, int peer) {
        Connection c;
        synchronized (lock) {
            c = conns.get(key(program, peer));
        }
        return c != null && !c.closed;
    }

    public boolean connected(DeviceProgram program, int peer) {
        synchronized (lock) {
            return conns.containsKey(key(program, peer));
        }
    }

    /** Why the last dial of {@code peer} on {@code program} failed, or null. */
    public DialError dialError(DeviceProgram program, int peer) {
        synchronized (lock) {
            return dialErrors.get(key(program, peer));
        }
    }

    DeviceProgram programFor(byte[] sha256) {
        for (DeviceProgram p : programs) {
            if (java.util.Arrays.equals(p.sha256(), sha256)) {
                return p;
            }
        }
        return null;
    }

    // -- connections --------------------------------------------------------------------------------------

    private void acceptLoop() {
        while (running) {
            final Socket sock;
            try {
                sock = server.accept();
            } catch (SocketTimeoutException e) {
                continue;
            } catch (IOException e) {
                return;
            }
            if (!running) {
                close(sock);  // leaving (stop closed the server while accept returned)
                return;
            }
            synchronized (lock) {
                if (pending >= config.maxPending) {
                    close(sock);  // too many strangers at once (section 6)
                    continue;
                }
                pending++;
            }
            final String address = sock.getInetAddress().getHostAddress() + ":" + sock.getPort();
            Thread t = new Thread(() -> serveAccepted(sock, address), "paradis-conn-" + device + "-" + sock.getPort());
            t.setDaemon(true);
            t.start();
        }
    }

    private void serveAccepted(Socket sock, String address) {
        Connection conn;
        try {
            conn = new Connection(this, sock, address, null, -1);
        } catch (IOException e) {
            synchronized (lock) {
                pending--;
            }
            close(sock);
            return;
        }
        track(conn);
        conn.run();
    }

    private void track(Connection conn) {
        boolean stopNow;
        synchronized (lock) {
            all.add(conn);
            stopNow = !running;
        }
        if (stopNow) {
            conn.close("stopped", 0, false);
        }
    }

    private static void close(Socket s) {
        try {
            s.close();
        } catch (IOException e) {
            // a socket we are refusing: nothing to report
        }
    }

    private void dialLoop(DeviceProgram program, int peer) {
        InetSocketAddress address = addresses.get(peer);
        long backoff = 50;
        while (running) {
            Socket sock = new Socket();
            Connection conn;
            try {
                // Resolved on every attempt: an address given unresolved (a phone's UI thread may not look
                // names up), or a name whose address changed, is looked up here, on the dialer's thread.
                InetSocketAddress target = address.isUnresolved()
                        ? new InetSocketAddress(address.getHostString(), address.getPort()) : address;
                if (target.isUnresolved()) {
                    throw new java.net.UnknownHostException("cannot resolve host '" + address.getHostString() + "'");
                }
                sock.connect(target, (int) (config.connectTimeout * 1000));
                conn = new Connection(this, sock, address.getHostString() + ":" + address.getPort(), program, peer);
            } catch (IOException e) {
                close(sock);
                synchronized (lock) {
                    dialErrors.put(key(program, peer), new DialError(0, "cannot reach device " + peer + " at "
                            + address + " (" + Connection.why(e) + ")"));
                }
                sleep(backoff);
                backoff = Math.min(1000, backoff * 2);
                continue;
            }
            track(conn);
            conn.run();  // returns when the connection ends
            if (conn.ready) {
                backoff = 50;
            } else {
                sleep(backoff);
                backoff = Math.min(1000, backoff * 2);
            }
        }
    }

    private void sleep(long ms) {
        synchronized (lock) {
            if (!running) {
                return;
            }
            try {
                lock.wait(ms);  // stop() wakes it
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private void uncount(Connection conn) {
        if (!conn.dialed) {
            synchronized (lock) {
                pending--;
            }
        }
    }

    void handshakeFailed(Connection conn, Connection.HandshakeRefused error) {
        uncount(conn);
        boolean news = true;
        synchronized (lock) {
            if (conn.dialed) {
                dialErrors.put(key(conn.program, conn.peer), new DialError(error.code, error.getMessage()));
            }
            if (error.code == ErrorCode.DEVICE_IN_USE) {
                // Two processes with one device index: said once on each side (per graph and device, until that
                // device connects again), not at every redial. As paradis_runtime/peer.py does.
                news = inUseSaid.add(key(conn.program, conn.peer) + (conn.dialed ? "/dialed" : "/accepted"));
            }
        }
        if (news) {
            log("device " + device + ": handshake with " + conn.address + " failed: " + error.getMessage());
        }
    }

    void connectionReady(Connection conn) {
        uncount(conn);
        if (!running) {
            // A handshake that completed while leaving: the other side reads SHUTTING_DOWN too.
            conn.fail(ErrorCode.SHUTTING_DOWN, "device " + device + " is leaving", Frames.NO_TENSOR, 0);
            return;
        }
        String k = key(conn.program, conn.peer);
        Connection old;
        ArrayDeque<Object[]> waiting = null;
        boolean taken;
        synchronized (lock) {
            old = conns.get(k);
            taken = old != null && !old.closed;
            if (!taken) {
                conns.put(k, conn);
                inUseSaid.remove(k + "/dialed");
                inUseSaid.remove(k + "/accepted");
                waiting = held.remove(k);
                dialErrors.remove(k);
                if (conn.peer == conn.program.graph.inputDevice && !conn.program.isInput) {
                    // A new HELLO from the input device: its request ids start afresh (section 7).
                    tables.get(conn.program).live.clear();
                }
                lock.notifyAll();
            }
        }
        if (taken) {
            // Two handshakes of one device index at once both passed the HELLO check (section 5): the
            // connection that was ready first keeps it.
            log("device " + device + ": device " + conn.peer + " (" + conn.program.switchName + ") connected twice "
                    + "at once, from " + old.address + " and " + conn.address + "; keeping the first (DEVICE_IN_USE to "
                    + "the second: does another process use device index " + conn.peer + "?)");
            conn.fail(ErrorCode.DEVICE_IN_USE, Connection.inUseDetail(conn.peer, device, conn.program.switchName),
                    Frames.NO_TENSOR, 0);
            return;
        }
        if (old != null) {
            old.close("replaced by a newer connection from the same device", 0, false);  // it was closing already
        }
        if (waiting != null) {
            long now = System.nanoTime();
            for (Object[] f : waiting) {
                if ((Long) f[0] - now >= 0) {
                    conn.send((byte[]) f[1]);
                }
            }
        }
        log("device " + device + ": connected to device " + conn.peer + " (" + conn.program.switchName + ") at "
                + conn.address);
        listener.onPeerReady(conn.program, conn.peer);
    }

    void connectionClosed(Connection conn, String reason, int code, boolean remote) {
        boolean current;
        synchronized (lock) {
            all.remove(conn);
            if (conn.program == null || conn.peer < 0 || !conn.ready) {
                current = false;
            } else {
                String k = key(conn.program, conn.peer);
                current = conns.get(k) == conn;
                if (current) {
                    conns.remove(k);
                }
            }
        }
        if (!current) {
            return;
        }
        if (running) {
            log("device " + device + ": lost device " + conn.peer + " (" + conn.program.switchName + "): " + reason);
            listener.onPeerLost(conn.program, conn.peer, reason, code);
        }
    }

    /** One whole frame to {@code peer} on {@code program}'s connection; held up to the peer deadline if none. */
    public boolean sendTo(DeviceProgram program, int peer, byte[] frame) {
        return sendTo(program, peer, frame, (long) (config.peerDeadline * 1000));
    }

    /**
     * One whole frame to {@code peer}, never waiting: with no ready connection the frame is held up to
     * {@code holdMs} (0: not held) and sent when one is made. False if it was neither sent nor held.
     */
    public boolean sendTo(DeviceProgram program, int peer, byte[] frame, long holdMs) {
        Connection c = current(program, peer);
        if (c != null && c.send(frame)) {
            return true;
        }
        String k = key(program, peer);
        synchronized (lock) {
            c = conns.get(k);  // made (and its held frames sent) since the look above
            if (c == null) {
                if (holdMs <= 0 || !running) {
                    return false;
                }
                ArrayDeque<Object[]> q = held.get(k);
                if (q == null) {
                    q = new ArrayDeque<Object[]>();
                    held.put(k, q);
                }
                if (q.size() >= config.maxInflight * HELD_PER_REQUEST) {
                    q.pollFirst();  // the oldest belongs to a request the input device gives up first
                }
                q.addLast(new Object[] {System.nanoTime() + holdMs * 1_000_000L, frame});
                return true;
            }
        }
        return c.send(frame);
    }

    private Connection current(DeviceProgram program, int peer) {
        synchronized (lock) {
            return conns.get(key(program, peer));
        }
    }

    // -- frames -------------------------------------------------------------------------------------------

    void frame(Connection conn, Header h, byte[] payload) throws FrameException {
        DeviceProgram program = conn.program;
        if (h.type == FrameType.TENSOR) {
            String name = names.get(program).get(h.tensorId);
            synchronized (lock) {
                Requests table = tables.get(program);
                if (table.ringSet.contains(h.requestId)) {
                    return;  // finished or abandoned: read and dropped (section 6, step 8)
                }
                Request st = table.live.get(h.requestId);
                if (st == null) {
                    if (program.isInput) {
                        return;  // the input device makes every id; an unknown one is stale
                    }
                    st = newRequest(program, h.requestId);
                }
                if (st.tensors.containsKey(name)) {
                    throw new FrameException(ErrorCode.DUPLICATE_TENSOR, "tensor '" + name + "' twice for request "
                            + h.requestId);
                }
                st.tensors.put(name, ByteBuffer.wrap(payload).asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN));
                st.arrivals.put(conn.peer, System.nanoTime());
                st.bytesReceived += Frames.HEADER_LEN + payload.length;
            }
            work.add(new Object[] {program, h.requestId});
        } else if (h.type == FrameType.CANCEL) {
            synchronized (lock) {
                tables.get(program).drop(h.requestId);
            }
        } else if (h.type == FrameType.ERROR) {
            ErrorPayload e = Frames.decodeError(payload);
            log("device " + device + ": device " + conn.peer + " reports " + ErrorCode.name(e.code) + " for request "
                    + h.requestId + ": " + e.message);
            listener.onRequestError(program, conn.peer, h.requestId, e.code, e.message);
        }
    }

    /** Live state for {@code rid} (holding the lock); beyond max_inflight the oldest goes, with OVERLOADED. */
    private Request newRequest(DeviceProgram program, long rid) {
        Requests table = tables.get(program);
        while (table.live.size() >= config.maxInflight) {
            long oldest = table.live.keySet().iterator().next();
            table.drop(oldest);
            if (!program.isInput) {
                notifyInput(program, ErrorCode.OVERLOADED, oldest, "device " + device + " holds "
                        + config.maxInflight + " live requests");
            }
        }
        Request st = new Request(rid);
        table.live.put(rid, st);
        return st;
    }

    private void notifyInput(DeviceProgram program, int code, long rid, String message) {
        Connection c;
        synchronized (lock) {
            c = conns.get(key(program, program.graph.inputDevice));
        }
        if (c != null) {
            c.send(Frames.encodeError(code, message, Frames.NO_TENSOR, rid));
        }
    }

    // -- requests (the input device's side) ---------------------------------------------------------------

    /**
     * The input device starts request {@code rid} of {@code program} with its local tensors (the wire input,
     * exact bytes, little-endian); its stages run once {@link #kick} is called. State first, so that no frame
     * answering {@code rid} can arrive for an id this device does not know yet.
     */
    public void begin(DeviceProgram program, long rid, Map<String, ByteBuffer> local) {
        if (!program.isInput) {
            throw new IllegalArgumentException("Peer.begin: " + program.describe() + " is not the input device "
                    + "(device " + program.graph.inputDevice + " is); only the input device starts requests.");
        }
        synchronized (lock) {
            Request st = newRequest(program, rid);
            for (Map.Entry<String, ByteBuffer> e : local.entrySet()) {
                st.tensors.put(e.getKey(), view(e.getValue()));
            }
        }
    }

    /** Adds wire time and frame bytes the caller spent on {@code rid} (the input frames it wrote itself). */
    public void account(DeviceProgram program, long rid, long wireNs, long bytesSent) {
        synchronized (lock) {
            Request st = tables.get(program).live.get(rid);
            if (st != null) {
                st.wireNs += wireNs;
                st.bytesSent += bytesSent;
            }
        }
    }

    /** Runs what can run of request {@code rid} (on the compute thread). */
    public void kick(DeviceProgram program, long rid) {
        work.add(new Object[] {program, rid});
    }

    /** Forgets request {@code rid} here (its late frames are then read and dropped); true if it was live. */
    public boolean abandon(DeviceProgram program, long rid) {
        synchronized (lock) {
            return tables.get(program).drop(rid) != null;
        }
    }

    /**
     * The peer devices whose frames for live request {@code rid} have not all arrived (those this device
     * expects anything from), ascending; empty when the request is not live.
     */
    public List<Integer> missingFrom(DeviceProgram program, long rid) {
        List<Integer> out = new ArrayList<Integer>();
        synchronized (lock) {
            Request st = tables.get(program).live.get(rid);
            if (st == null) {
                return out;
            }
            for (int d : program.neighbours) {
                for (TensorSpec spec : program.expectedFrom(d).values()) {
                    if (!st.tensors.containsKey(spec.name)) {
                        out.add(d);
                        break;
                    }
                }
            }
        }
        return out;
    }

    // -- compute ------------------------------------------------------------------------------------------

    private void computeLoop() {
        while (true) {
            Object[] item;
            try {
                item = work.take();
            } catch (InterruptedException e) {
                return;
            }
            if (item.length == 0) {
                return;
            }
            run((DeviceProgram) item[0], (Long) item[1]);
        }
    }

    /** {@link #advance}; a stage that throws fails its request only, and the input device hears of it. */
    private void run(DeviceProgram program, long rid) {
        try {
            advance(program, rid);
        } catch (Exception e) {
            String first = String.valueOf(e.getMessage()).trim().split("\n")[0];
            String why = e.getClass().getSimpleName() + ": " + (first.length() > 300 ? first.substring(0, 300) : first);
            log("device " + device + ": request " + rid + " failed in " + program.describe() + ": " + why);
            synchronized (lock) {
                tables.get(program).drop(rid);
            }
            if (!program.isInput) {
                notifyInput(program, ErrorCode.STAGE_FAILED, rid, "device " + device + ": " + why);
            } else {
                listener.onRequestError(program, device, rid, ErrorCode.STAGE_FAILED, why);
            }
        }
    }

    private static ByteBuffer view(ByteBuffer b) {
        ByteBuffer v = b.duplicate();
        v.clear();
        return v.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** Runs every stage of {@code rid} whose inputs are here, in order, sending each output right after. */
    private void advance(DeviceProgram program, long rid) throws Exception {
        Requests table = tables.get(program);
        Request st;
        while (true) {
            FusionGraph.Stage stage;
            Map<String, ByteBuffer> feeds = new LinkedHashMap<String, ByteBuffer>();
            synchronized (lock) {
                st = table.live.get(rid);
                if (st == null) {
                    return;
                }
                if (st.next >= program.stages.size()) {
                    break;
                }
                stage = program.stages.get(st.next);
                for (String t : stage.inputs) {
                    ByteBuffer b = st.tensors.get(t);
                    if (b == null) {
                        return;
                    }
                    feeds.put(t, view(b));
                }
            }
            // Outputs that travel are computed straight into their frame, after a 64-byte gap for the header.
            Map<String, ByteBuffer> outputs = new LinkedHashMap<String, ByteBuffer>();
            Map<String, byte[]> frames = new HashMap<String, byte[]>();
            for (String t : stage.outputs) {
                int n = (int) program.spec(t).payloadLen();
                if (program.sendTo.containsKey(t)) {
                    byte[] frame = new byte[Frames.HEADER_LEN + n];
                    frames.put(t, frame);
                    outputs.put(t, ByteBuffer.wrap(frame, Frames.HEADER_LEN, n).slice().order(ByteOrder.LITTLE_ENDIAN));
                } else {
                    outputs.put(t, ByteBuffer.allocate(n).order(ByteOrder.LITTLE_ENDIAN));
                }
            }
            long start = System.nanoTime();
            engines.get(program).runSignature(stage.signature, feeds, outputs);
            long end = System.nanoTime();
            boolean done;
            synchronized (lock) {
                for (Map.Entry<String, ByteBuffer> e : outputs.entrySet()) {
                    st.tensors.put(e.getKey(), view(e.getValue()));
                }
                st.next++;
                st.computeNs += end - start;
                // After its last stage's sends this device is done with rid, and the input device may fuse and
                // start request rid + in_flight at once: free the slot before sending, or that request could find
                // maxInflight still held here and evict a live one (OVERLOADED at in_flight == maxInflight).
                done = st.next >= program.stages.size() && !program.isFusion;
                if (done && table.live.get(rid) == st) {
                    table.drop(rid);
                }
            }
            for (String t : stage.outputs) {
                byte[] frame = frames.get(t);
                if (frame == null) {
                    continue;
                }
                long t0 = System.nanoTime();
                long sent = 0;
                Frames.writeHeader(Frames.tensorHeader(program.spec(t), program.id(t), rid), frame, 0);
                for (int d : program.sendTo.get(t)) {
                    if (sendTo(program, d, frame)) {
                        sent += frame.length;
                    } else {
                        log("device " + device + ": request " + rid + ": no connection to device " + d + " ("
                                + program.switchName + ") for '" + t + "'");
                    }
                }
                long t1 = System.nanoTime();
                synchronized (lock) {
                    st.wireNs += t1 - t0;
                    st.bytesSent += sent;
                }
            }
            if (done) {
                return;
            }
        }
        Map<String, ByteBuffer> partials = new LinkedHashMap<String, ByteBuffer>();
        synchronized (lock) {
            if (table.live.get(rid) != st) {
                return;
            }
            if (program.isFusion) {
                for (String t : program.graph.fusionInputs) {
                    if (!st.tensors.containsKey(t)) {
                        return;  // partials from other devices still in flight
                    }
                    partials.put(t, view(st.tensors.get(t)));
                }
            }
            table.drop(rid);
        }
        if (program.isFusion) {
            float[] output = fuse(program.graph, partials);
            Timing timing;
            synchronized (lock) {
                timing = new Timing(st, System.nanoTime());
            }
            listener.onFused(program, rid, output, timing);
        }
    }

    /**
     * The graph's fusion "sum" in float32: each partial dequantized ((q - zero_point) x scale for int8), then
     * added in the order of fusion.inputs, as paradis_runtime/schedule.py does, so outputs agree bit for bit.
     */
    public static float[] fuse(FusionGraph g, Map<String, ByteBuffer> partials) {
        if (!"sum".equals(g.fusionOp)) {
            throw new IllegalArgumentException("unknown fusion op '" + g.fusionOp + "'; this runtime knows 'sum'.");
        }
        int n = (int) g.tensors.get(g.outputTensor).spec().elements();
        float[] out = null;
        for (String t : g.fusionInputs) {
            FusionGraph.Tensor spec = g.tensors.get(t);
            ByteBuffer b = partials.get(t);
            float[] v = new float[n];
            if ("int8".equals(spec.dtype)) {
                float zp = spec.quantization == null ? 0f : (float) spec.quantization.zeroPoint;
                float scale = spec.quantization == null ? 1f : (float) spec.quantization.scale;
                for (int i = 0; i < n; i++) {
                    v[i] = spec.quantization == null ? (float) b.get(i) : ((float) b.get(i) - zp) * scale;
                }
            } else {
                for (int i = 0; i < n; i++) {
                    v[i] = b.getFloat(4 * i);
                }
            }
            if (out == null) {
                out = v;
            } else {
                for (int i = 0; i < n; i++) {
                    out[i] += v[i];
                }
            }
        }
        return out;
    }

    // -- housekeeping -------------------------------------------------------------------------------------

    private void tickLoop() {
        while (running) {
            try {
                Thread.sleep(TICK_MS);
            } catch (InterruptedException e) {
                return;
            }
            long now = System.nanoTime();
            List<Connection> open;
            List<Object[]> expired = new ArrayList<Object[]>();
            Map<String, Integer> dropped = new LinkedHashMap<String, Integer>();
            synchronized (lock) {
                open = new ArrayList<Connection>(conns.values());
                Iterator<Map.Entry<String, ArrayDeque<Object[]>>> hit = held.entrySet().iterator();
                while (hit.hasNext()) {
                    Map.Entry<String, ArrayDeque<Object[]>> e = hit.next();
                    int n = 0;
                    while (!e.getValue().isEmpty() && (Long) e.getValue().peekFirst()[0] - now < 0) {
                        e.getValue().pollFirst();
                        n++;
                    }
                    if (e.getValue().isEmpty()) {
                        hit.remove();
                    }
                    if (n > 0) {
                        dropped.put(e.getKey(), n);
                    }
                }
                for (DeviceProgram p : programs) {
                    if (p.isInput) {
                        continue;  // the input device keeps its own deadlines
                    }
                    Requests table = tables.get(p);
                    Iterator<Map.Entry<Long, Request>> it = table.live.entrySet().iterator();
                    List<Long> late = new ArrayList<Long>();
                    while (it.hasNext()) {
                        Request st = it.next().getValue();
                        if (now - st.created > PeerConfig.nanos(config.requestDeadline)) {
                            late.add(st.rid);
                        }
                    }
                    for (long rid : late) {
                        table.drop(rid);
                        expired.add(new Object[] {p, rid});
                    }
                }
            }
            for (Map.Entry<String, Integer> d : dropped.entrySet()) {
                log("device " + device + ": dropped " + d.getValue() + " frame(s) for device "
                        + d.getKey().substring(d.getKey().lastIndexOf('/') + 1)
                        + ": no connection within " + config.peerDeadline + " s");
            }
            for (Connection c : open) {
                c.tick(now);
            }
            for (Object[] e : expired) {
                notifyInput((DeviceProgram) e[0], ErrorCode.DEADLINE_EXCEEDED, (Long) e[1], "device " + device
                        + " abandoned the request after " + config.requestDeadline + " s"
                        + missingLinks((DeviceProgram) e[0]));
            }
            try {
                listener.onTick(now);
            } catch (RuntimeException e) {  // a defect in a listener must not stop heartbeats and deadlines
                log("device " + device + ": internal error in a tick listener: " + e);
            }
        }
    }
}
