package org.paradis.core;

import java.io.File;
import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The input device (device 0, the phone with the camera), as paradis_runtime/coordinator.py: dials every peer
 * of the bundle's switches, checks and quantizes each input as the graph declares ({@link InputTensor}), draws
 * the request ids (the first at random in [1, 2^32], FRAME_FORMAT.md section 7), sends the input, runs device
 * 0's stages, fuses the partials ({@link Peer#fuse}) and reports each inference with its timing on this device.
 *
 * <p>Failures: a request that passes the request deadline is cancelled on every peer (CANCEL) and fails with
 * {@link RequestFailed} naming the devices whose frames are missing; a request whose switch loses a device is
 * cancelled and started again once on the best switch still staffed (the bundle's fallback order); an ERROR
 * from a peer fails its request. Every future is resolved exactly once.
 *
 * <pre>
 * Coordinator c = Coordinator.open(bundle, null, new PeerConfig(key), peers, engines, listener).connect(10);
 * Coordinator.Result r = c.run(InputTensor.fromPixels(c.graph(), argb, w, h), 10);
 * </pre>
 */
public final class Coordinator {
    private static final int MAX_ATTEMPTS = 2;  // the original switch, then one fallback
    // A peer that refuses the handshake for one of these is misconfigured: waiting cannot help.
    private static final int[] FATAL = {ErrorCode.GRAPH_MISMATCH, ErrorCode.BAD_DEVICE, ErrorCode.AUTH_FAILED,
        ErrorCode.UNSUPPORTED_VERSION, ErrorCode.BAD_MAGIC};
    private static final SecureRandom RANDOM = new SecureRandom();

    /** One inference. */
    public static final class Result {
        /** The fused output, float32, row-major in {@link #shape}. */
        public final float[] output;
        public final String switchName;
        public final long requestId;
        /** From submit to the fused output (a retry on a fallback switch included). */
        public final double latencyS;
        /** On this device during the attempt that answered: its stages, writing frames, the rest (waiting). */
        public final double computeS;
        public final double wireS;
        public final double waitS;
        /** Frame bytes (64-byte headers included) this device wrote and read for the request. */
        public final long bytesSent;
        public final long bytesReceived;
        /** device -> seconds after the attempt began at which its last frame arrived. */
        public final Map<Integer, Double> arrivals;
        public final int attempts;
        private final int[] shape;

        Result(float[] output, int[] shape, String switchName, long requestId, double latencyS, Peer.Timing t,
                double attemptS, int attempts) {
            this.output = output;
            this.shape = shape;
            this.switchName = switchName;
            this.requestId = requestId;
            this.latencyS = latencyS;
            this.computeS = t.computeS;
            this.wireS = t.wireS;
            this.waitS = Math.max(0.0, attemptS - t.computeS - t.wireS);
            this.bytesSent = t.bytesSent;
            this.bytesReceived = t.bytesReceived;
            this.arrivals = t.arrivals;
            this.attempts = attempts;
        }

        public int[] shape() {
            return shape.clone();
        }

        /** The index of the largest output value (the class, for logits); the first on ties. */
        public int argmax() {
            int best = 0;
            for (int i = 1; i < output.length; i++) {
                if (output[i] > output[best]) {
                    best = i;
                }
            }
            return best;
        }
    }

    /** An inference that no switch answered: a device failed or was lost, or the deadline passed. */
    public static final class RequestFailed extends Exception {
        private static final long serialVersionUID = 1L;
        public final long requestId;
        /** The devices whose frames had not arrived (deadline), or the device that failed or was lost. */
        public final List<Integer> devices;

        RequestFailed(String message, long requestId, List<Integer> devices) {
            super(message);
            this.requestId = requestId;
            this.devices = Collections.unmodifiableList(new ArrayList<Integer>(devices));
        }
    }

    private static final class Pending {
        final float[] image;
        final CompletableFuture<Result> future = new CompletableFuture<Result>();
        final long submitted = System.nanoTime();
        long started;
        int attempts;
        DeviceProgram program;
        long rid;

        Pending(float[] image) {
            this.image = image;
        }
    }

    private final List<DeviceProgram> programs;
    private final PeerConfig config;
    private final Map<Integer, InetSocketAddress> peers;
    private final Peer.Listener listener;
    private final Peer peer;
    private final Object lock = new Object();
    private final Map<Long, Pending> pending = new LinkedHashMap<Long, Pending>();
    private final Semaphore slots;
    private final List<String> switchLog = new ArrayList<String>();
    private long nextRid = (RANDOM.nextLong() >>> 32) + 1;
    private DeviceProgram current;
    private volatile boolean connected;
    /** "switch/device" -> the ErrorCode reportRefusals() last said for it. */
    private final Map<String, Integer> refusals = new HashMap<String, Integer>();
    private volatile boolean closed;
    private volatile String warned;

    /**
     * @param programs device 0 of each switch, best first (Bundle.programsFor(bundle, 0, ...))
     * @param config key, deadlines, caps
     * @param peers device -> address of devices 1, 2, ...; a switch whose devices are not all listed is dropped
     * @param engines opens the engine of device 0's file of each switch
     * @param inFlight requests on the wire at once ({@link #submit} blocks beyond)
     * @param listener logs and peer events (may be null)
     */
    public Coordinator(List<DeviceProgram> programs, PeerConfig config, Map<Integer, InetSocketAddress> peers,
            Engine.Factory engines, int inFlight, Peer.Listener listener) {
        if (programs == null || programs.isEmpty()) {
            throw new IllegalArgumentException("Coordinator: programs must hold device 0 of at least one switch, "
                    + "received none.");
        }
        if (inFlight < 1) {
            throw new IllegalArgumentException("Coordinator: inFlight must be an int >= 1, received " + inFlight
                    + ".");
        }
        this.config = config;
        this.peers = peers == null ? new HashMap<Integer, InetSocketAddress>()
                : new HashMap<Integer, InetSocketAddress>(peers);
        List<DeviceProgram> staffed = new ArrayList<DeviceProgram>();
        for (DeviceProgram p : programs) {
            if (!p.isInput || !p.isFusion) {
                throw new IllegalArgumentException(p.graphPath + ": the coordinator runs the input and fusion "
                        + "device; this graph has input on device " + p.graph.inputDevice + " and fusion on "
                        + p.graph.fusionDevice + ", and this program is device " + p.device + ".");
            }
            boolean ok = true;
            for (int d : p.neighbours) {
                ok &= this.peers.containsKey(d);
            }
            if (ok) {
                staffed.add(p);
            }
        }
        if (staffed.isEmpty()) {
            List<String> names = new ArrayList<String>();
            for (DeviceProgram p : programs) {
                names.add(p.switchName + " (" + p.numDevices + " devices)");
            }
            throw new IllegalArgumentException("Coordinator: every switch needs more devices than the "
                    + this.peers.size() + " peer address(es) given plus this one: " + names + "; give the "
                    + "addresses of devices 1, 2, ... in order.");
        }
        this.programs = Collections.unmodifiableList(staffed);
        this.listener = listener != null ? listener : new Peer.Listener() {
        };
        this.slots = new Semaphore(inFlight);
        this.peer = new Peer(staffed, config, this.peers, null, engines, new Events());
    }

    /** Device 0 of every switch of {@code bundle} (or of those named), best first; see the constructor. */
    public static Coordinator open(File bundle, List<String> switches, PeerConfig config,
            Map<Integer, InetSocketAddress> peers, Engine.Factory engines, Peer.Listener listener)
            throws IOException {
        return new Coordinator(Bundle.programsFor(bundle, 0, switches, config.maxFrameBytes()), config, peers,
                engines, 1, listener);
    }

    /** The switches this coordinator can use, best first. */
    public List<DeviceProgram> programs() {
        return programs;
    }

    /** The best switch's graph (every switch of a bundle takes the same input). */
    public FusionGraph graph() {
        return programs.get(0).graph;
    }

    /** The switch new requests go to, or null when none is staffed. */
    public String currentSwitch() {
        synchronized (lock) {
            return current == null ? null : current.switchName;
        }
    }

    /** Every move between switches so far, one line each ("from -> to: why"). */
    public List<String> switchLog() {
        synchronized (lock) {
            return new ArrayList<String>(switchLog);
        }
    }

    public Peer peer() {
        return peer;
    }

    // -- connection ---------------------------------------------------------------------------------------

    /**
     * Opens the engines, dials every peer and waits up to {@code timeoutS} until the best switch is ready. If
     * it is not by then, starts on the best switch whose devices all answered (logging the missing ones; new
     * requests move up when they answer). Throws ConnectException naming each missing device when no switch
     * is ready, and at once for a refused handshake (wrong key, other bundle). As
     * paradis_runtime/coordinator.py does.
     */
    public Coordinator connect(double timeoutS) throws Exception {
        peer.start();
        DeviceProgram best = programs.get(0);
        long deadline = System.nanoTime() + PeerConfig.nanos(timeoutS);
        while (true) {
            List<Integer> missing = new ArrayList<Integer>();
            for (int d : best.neighbours) {
                if (!peer.connected(best, d)) {
                    missing.add(d);
                }
            }
            if (missing.isEmpty()) {
                break;
            }
            List<String> fatal = new ArrayList<String>();
            List<String> all = new ArrayList<String>();
            for (int d : missing) {
                Peer.DialError e = peer.dialError(best, d);
                InetSocketAddress a = peers.get(d);
                String line = "device " + d + " at " + a.getHostString() + ":" + a.getPort() + ": "
                        + (e == null ? "no answer" : e.message);
                all.add(line);
                if (e != null && isFatal(e.code)) {
                    fatal.add(line);
                }
            }
            boolean late = fatal.isEmpty() && System.nanoTime() > deadline;
            if (!fatal.isEmpty() || late) {
                // A device down at start is what ParaDiS serves: the run goes on the devices there, as after
                // losing one mid-run. A misconfigured one is not: the user must fix it.
                DeviceProgram ready = null;
                if (late) {
                    synchronized (lock) {
                        ready = available();
                    }
                }
                if (ready != null) {
                    listener.onLog("device 0: warning: switch '" + best.switchName + "' not ready within " + timeoutS
                            + " s (" + join(all) + "); starting on switch '" + ready.switchName + "', the best one "
                            + "whose devices all answered; new requests move up when the missing devices answer");
                    break;
                }
                close();
                boolean inUse = false;
                for (int d : missing) {
                    Peer.DialError e = peer.dialError(best, d);
                    inUse |= e != null && e.code == ErrorCode.DEVICE_IN_USE;
                }
                String hint = !fatal.isEmpty() ? "the peers must serve the same bundle with the same session key"
                        : "not ready within " + timeoutS + " s, and no other switch allowed is either: " + (inUse
                        ? "another device 0 holds those peers; let it end first"
                        : "is `paradis peer` (or the app as that device) running there?");
                throw new ConnectException("switch '" + best.switchName + "' cannot start: "
                        + join(fatal.isEmpty() ? all : fatal) + " (" + hint + ").");
            }
            Thread.sleep(20);
        }
        synchronized (lock) {
            current = available();
        }
        connected = true;
        listener.onLog("device 0: connected, switch " + currentSwitch());
        return this;
    }

    /**
     * Once connected, says once per device and cause when a peer refuses the handshake as misconfigured (a
     * device restarted with another export or key), which otherwise left it out of the run with nothing said
     * here; connect() throws instead. As paradis_runtime/coordinator.py does.
     */
    private void reportRefusals() {
        if (!connected) {
            return;
        }
        for (DeviceProgram p : programs) {
            for (int d : p.neighbours) {
                String key = p.switchName + "/" + d;
                Peer.DialError e = peer.dialError(p, d);
                if (e == null || !isFatal(e.code)) {
                    refusals.remove(key);  // connected since, or not a misconfiguration: news again next time
                    continue;
                }
                Integer said = refusals.put(key, e.code);
                if (said == null || said != e.code) {
                    InetSocketAddress a = peers.get(d);
                    listener.onLog("device " + d + " at " + a.getHostString() + ":" + a.getPort() + " refuses switch "
                            + p.switchName + ": " + e.message + "; the run goes on without it until that peer serves "
                            + "the same bundle with the same session key");
                }
            }
        }
    }

    private static boolean isFatal(int code) {
        for (int f : FATAL) {
            if (f == code) {
                return true;
            }
        }
        return false;
    }

    private static String join(List<String> lines) {
        StringBuilder b = new StringBuilder();
        for (String s : lines) {
            b.append(b.length() == 0 ? "" : "; ").append(s);
        }
        return b.toString();
    }

    /** Fails what is still pending and leaves (SHUTTING_DOWN to the peers). */
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        List<Pending> left;
        synchronized (lock) {
            left = new ArrayList<Pending>(pending.values());
            pending.clear();
        }
        for (Pending p : left) {
            fail(p, "request " + p.rid + ": the coordinator closed", Collections.<Integer>emptyList());
        }
        peer.stop(true);
    }

    /** The best switch whose devices are all connected (holding the lock), or null. */
    private DeviceProgram available() {
        for (DeviceProgram p : programs) {
            if (staffed(p)) {
                return p;
            }
        }
        return null;
    }

    /** Whether every device {@code p} talks to is connected. */
    private boolean staffed(DeviceProgram p) {
        for (int d : p.neighbours) {
            if (!peer.connected(p, d)) {
                return false;
            }
        }
        return true;
    }

    /** Moves new requests to the best staffed switch and says why ({@code why} null: a device came back). */
    private void updateSwitch(String why) {
        if (!connected || closed) {
            return;
        }
        String line;
        synchronized (lock) {
            DeviceProgram next = available();
            if (next == current) {
                return;
            }
            DeviceProgram old = current;
            if (why == null && old != null && !staffed(old)) {
                // A device of the current switch is gone and the tick saw it first: the peer calls
                // onPeerLost right after (it drops the connection, then calls), which moves with the
                // reason (a reset, SHUTTING_DOWN, unresponsive).
                return;
            }
            current = next;
            if (why == null) {
                why = old == null || (next != null && programs.indexOf(next) < programs.indexOf(old))
                        ? "a better switch is ready" : "another switch is ready";
            }
            line = (old == null ? "none" : old.switchName) + " -> " + (next == null ? "none" : next.switchName)
                    + ": " + why;
            switchLog.add(line);
        }
        listener.onLog("device 0: switch " + line);
    }

    // -- requests -----------------------------------------------------------------------------------------

    /**
     * Starts one inference of {@code image} (float32, the graph's input shape, preprocessed as its
     * input.preprocessing says: {@link InputTensor#fromPixels}); blocks while {@code inFlight} requests are out.
     * The future gives a {@link Result} or fails with {@link RequestFailed}.
     */
    public Future<Result> submit(float[] image) throws InterruptedException {
        if (closed) {
            throw new IllegalStateException("Coordinator.submit: this coordinator is closed; open a new one.");
        }
        if (!connected) {
            throw new IllegalStateException("Coordinator.submit: call connect() first.");
        }
        String warning = InputTensor.check(graph(), image);
        if (warning != null && warned == null) {
            warned = warning;  // once: a stream of such inputs would flood the log
            listener.onLog("device 0: warning: " + warning);
        }
        slots.acquire();
        Pending p = new Pending(image.clone());
        start(p);
        return p.future;
    }

    /** One inference, waited for at most {@code timeoutS}; RequestFailed if it failed. */
    public Result run(float[] image, double timeoutS) throws RequestFailed, InterruptedException {
        Future<Result> f = submit(image);
        try {
            return f.get(PeerConfig.nanos(timeoutS), TimeUnit.NANOSECONDS);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RequestFailed) {
                throw (RequestFailed) e.getCause();
            }
            throw new RequestFailed("the inference failed: " + e.getCause(), -1, Collections.<Integer>emptyList());
        } catch (TimeoutException e) {
            // Not cancelled here: the request deadline resolves it (and frees its slot) on its own.
            throw new RequestFailed("no result within " + timeoutS + " s (the request deadline is "
                    + config.requestDeadline() + " s)", -1, Collections.<Integer>emptyList());
        }
    }

    private void start(Pending p) {
        DeviceProgram program;
        long rid;
        byte[] wire;
        synchronized (lock) {
            if (current == null) {
                current = available();
            }
            program = current;
            if (program == null || closed) {
                rid = p.rid;
                wire = null;
            } else {
                rid = nextRid++;
                p.program = program;
                p.rid = rid;
                p.started = System.nanoTime();
                p.attempts++;
                pending.put(rid, p);
                wire = InputTensor.wireBytes(program.graph, p.image);
                Map<String, ByteBuffer> local = new HashMap<String, ByteBuffer>();
                local.put(program.graph.inputTensor, ByteBuffer.wrap(wire));
                // State first, so no answer can arrive for an id the peer does not know yet.
                peer.begin(program, rid, local);
            }
        }
        if (wire == null) {
            fail(p, "no switch of the bundle can run: every one needs a device that is down "
                    + (closed ? "(the coordinator closed)" : "(" + switchLogTail() + ")"),
                    Collections.<Integer>emptyList());
            return;
        }
        String input = program.graph.inputTensor;
        List<Integer> targets = program.sendTo.get(input);
        if (targets != null) {
            byte[] frame = Frames.tensorFrame(program.spec(input), program.id(input), rid, wire);
            long t0 = System.nanoTime();
            long sent = 0;
            for (int d : targets) {
                if (peer.sendTo(program, d, frame, 0)) {
                    sent += frame.length;
                }
            }
            peer.account(program, rid, System.nanoTime() - t0, sent);
        }
        peer.kick(program, rid);
    }

    private String switchLogTail() {
        synchronized (lock) {
            return switchLog.isEmpty() ? "no switch change recorded" : switchLog.get(switchLog.size() - 1);
        }
    }

    private void resolve(Pending p, Result result) {
        if (p.future.complete(result)) {
            slots.release();
        }
    }

    private void fail(Pending p, String message, List<Integer> devices) {
        if (p.future.completeExceptionally(new RequestFailed(message, p.rid, devices))) {
            slots.release();
        }
    }

    /** Abandons {@code p}'s current attempt here and on every peer of its switch. */
    private void cancel(Pending p) {
        peer.abandon(p.program, p.rid);
        byte[] frame = Frames.encodeHeader(Header.control(FrameType.CANCEL, 0, p.rid));
        for (int d : p.program.neighbours) {
            peer.sendTo(p.program, d, frame, 0);
        }
    }

    private void retryOrFail(Pending p, String why, int device) {
        if (p.attempts < MAX_ATTEMPTS && !closed) {
            start(p);
        } else {
            fail(p, "request " + p.rid + " (" + p.program.switchName + "): " + why, Arrays.asList(device));
        }
    }

    /** The Peer's events, as the coordinator acts on them (and forwarded to the app's listener). */
    private final class Events implements Peer.Listener {
        @Override
        public void onLog(String line) {
            listener.onLog(line);
        }

        @Override
        public void onPeerReady(DeviceProgram program, int device) {
            listener.onPeerReady(program, device);
            updateSwitch(null);
        }

        @Override
        public void onPeerLost(DeviceProgram program, int device, String reason, int code) {
            listener.onPeerLost(program, device, reason, code);
            updateSwitch("device " + device + " lost (" + reason + ")");
            List<Pending> hit = new ArrayList<Pending>();
            synchronized (lock) {
                for (Pending p : new ArrayList<Pending>(pending.values())) {
                    if (p.program == program) {
                        pending.remove(p.rid);
                        hit.add(p);
                    }
                }
            }
            for (Pending p : hit) {
                cancel(p);
                retryOrFail(p, "device " + device + " was lost (" + reason + ")", device);
            }
        }

        @Override
        public void onRequestError(DeviceProgram program, int device, long rid, int code, String message) {
            listener.onRequestError(program, device, rid, code, message);
            Pending p;
            synchronized (lock) {
                p = pending.remove(rid);
            }
            if (p == null) {
                return;
            }
            cancel(p);
            fail(p, "request " + rid + " (" + program.switchName + "): device " + device + " sent "
                    + ErrorCode.name(code) + ": " + message, Arrays.asList(device));
        }

        @Override
        public void onFused(DeviceProgram program, long rid, float[] output, Peer.Timing timing) {
            Pending p;
            synchronized (lock) {
                p = pending.get(rid);
                if (p == null || p.program != program) {
                    return;
                }
                pending.remove(rid);
            }
            long now = System.nanoTime();
            resolve(p, new Result(output, program.graph.tensors.get(program.graph.outputTensor).shape(),
                    program.switchName, rid, (now - p.submitted) / 1e9, timing, (now - p.started) / 1e9,
                    p.attempts));
        }

        @Override
        public void onTick(long now) {
            updateSwitch(null);
            reportRefusals();
            List<Pending> expired = new ArrayList<Pending>();
            synchronized (lock) {
                for (Pending p : new ArrayList<Pending>(pending.values())) {
                    if (now - p.started > PeerConfig.nanos(config.requestDeadline())) {
                        pending.remove(p.rid);
                        expired.add(p);
                    }
                }
            }
            for (Pending p : expired) {
                List<Integer> missing = peer.missingFrom(p.program, p.rid);
                cancel(p);
                fail(p, "request " + p.rid + " (" + p.program.switchName + "): no answer within "
                        + config.requestDeadline() + " s; frames missing from device(s) " + missing, missing);
            }
        }
    }
}
