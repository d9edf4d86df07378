package org.paradis.core;

import java.io.File;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

/**
 * A Java peer process serving one device of a bundle, with the flags of {@code paradis peer}:
 *
 * <pre>
 * java -cp build/classes:/usr/share/java/com.android.json.jar org.paradis.core.Main \
 *     --bundle DIR --device 1 --peers 10.0.0.5:7001,10.0.0.6:7002 --session-key-file key.txt \
 *     [--switch 2x0.5,...] [--listen HOST:PORT] [--engine-cmd "python tools/litert_engine.py"] \
 *     [--peer-deadline 2] [--request-deadline 2]
 * </pre>
 *
 * Prints "device N ready on HOST:PORT: switches ..." once serving; SIGINT/SIGTERM leaves gracefully
 * (SHUTTING_DOWN to every connected device). Exit code 2 for a usage error, 1 for a bundle it refuses.
 *
 * <p>As the input device ({@code --device 0}, what the phone with the camera runs) it is a {@link Coordinator}:
 *
 * <pre>
 * ... org.paradis.core.Main --bundle DIR --device 0 --peers HOST:PORT,... --session-key-file key.txt \
 *     --engine-cmd "..." --input x.npy [--output y.npy] [--switch S,...] [--request-deadline S] \
 *     [--connect-timeout S]
 * </pre>
 *
 * {@code --input}: a float32 {@code .npy} of one or more model inputs (the graph's input shape, batch axis
 * optional), or raw float32 little-endian bytes (any other extension) holding a whole number of inputs. One
 * inference each, in order: a line per inference ("result N: request R switch S class K compute_ms ..."),
 * then "output N: v0 v1 ..."; {@code --output} writes the fused outputs as one float32 {@code .npy}, batch
 * first. Exit code 1 when the peers cannot be reached or an inference fails (the message names the devices).
 */
public final class Main {
    private Main() {
    }

    static final class UsageError extends Exception {
        private static final long serialVersionUID = 1L;

        UsageError(String message) {
            super(message);
        }
    }

    static InetSocketAddress address(String text, String what) throws UsageError {
        String t = text.trim();
        int colon = t.lastIndexOf(':');
        String host = colon > 0 ? t.substring(0, colon).replace("[", "").replace("]", "") : "";
        String port = colon > 0 ? t.substring(colon + 1) : "";
        int p = -1;
        if (port.matches("[0-9]{1,5}")) {
            p = Integer.parseInt(port);
        }
        if (host.isEmpty() || p < 1 || p > 65535) {
            throw new UsageError(what + " must be HOST:PORT with a port in 1..65535, received '" + text + "'.");
        }
        return new InetSocketAddress(host, p);
    }

    /** {@code "HOST:PORT,HOST:PORT"} -> {1: first, 2: second, ...}. */
    static Map<Integer, InetSocketAddress> peers(String text) throws UsageError {
        Map<Integer, InetSocketAddress> out = new HashMap<Integer, InetSocketAddress>();
        int k = 1;
        for (String item : text.split(",")) {
            if (!item.trim().isEmpty()) {
                out.put(k, address(item, "--peers: peer address " + k + " (device " + k + ")"));
                k++;
            }
        }
        return out;
    }

    /** The key file's bytes without surrounding ASCII whitespace (as `paradis peer` reads it). */
    static byte[] readKey(String path) throws UsageError, IOException {
        File f = new File(path);
        if (!f.isFile()) {
            throw new UsageError("--session-key-file " + path + ": no such file (write one with `python -c 'import "
                    + "secrets; print(secrets.token_hex(32))' > KEY`).");
        }
        byte[] raw = FusionGraph.readAll(f);
        int a = 0;
        int b = raw.length;
        while (a < b && " \t\n\r\u000b\f".indexOf(raw[a]) >= 0) {
            a++;
        }
        while (b > a && " \t\n\r\u000b\f".indexOf(raw[b - 1]) >= 0) {
            b--;
        }
        byte[] key = Arrays.copyOfRange(raw, a, b);
        if (key.length < Frames.MIN_KEY_BYTES) {
            throw new UsageError("--session-key-file " + path + ": the session key must be at least 16 bytes, "
                    + "received " + key.length + "; 32 random bytes written as hex are recommended.");
        }
        return key;
    }

    private static double seconds(String flag, String value) throws UsageError {
        try {
            double s = Double.parseDouble(value);
            if (s > 0 && !Double.isInfinite(s)) {
                return s;
            }
        } catch (NumberFormatException e) {
            // reported below with the value
        }
        throw new UsageError(flag + " must be a number of seconds > 0, received '" + value + "'.");
    }

    static final String USAGE = "usage: org.paradis.core.Main --bundle DIR --device N --session-key-file FILE "
            + "[--peers HOST:PORT,...] [--switch S,...] [--listen HOST:PORT] [--engine-cmd 'CMD ARGS']"
            + " [--peer-deadline S] [--request-deadline S] [--input FILE [--output FILE.npy] [--connect-timeout S]"
            + " (device 0)]";

    static Map<String, String> flags(String[] argv) throws UsageError {
        Map<String, String> flags = new HashMap<String, String>();
        List<String> known = Arrays.asList("--bundle", "--device", "--peers", "--session-key-file", "--switch",
                "--listen", "--engine-cmd", "--peer-deadline", "--request-deadline", "--input", "--output",
                "--connect-timeout");
        for (int i = 0; i < argv.length; i++) {
            if (!known.contains(argv[i])) {
                throw new UsageError("unknown argument '" + argv[i] + "'; " + USAGE);
            }
            if (i + 1 >= argv.length) {
                throw new UsageError(argv[i] + " needs a value; " + USAGE);
            }
            flags.put(argv[i], argv[++i]);
        }
        for (String required : new String[] {"--bundle", "--device", "--session-key-file"}) {
            if (!flags.containsKey(required)) {
                throw new UsageError(required + " is required; " + USAGE);
            }
        }
        if (!new File(flags.get("--bundle")).exists()) {
            throw new UsageError("--bundle " + flags.get("--bundle") + ": no such folder.");
        }
        return flags;
    }

    static int device(Map<String, String> flags) throws UsageError {
        try {
            int device = Integer.parseInt(flags.get("--device"));
            if (device >= 0) {
                return device;
            }
        } catch (NumberFormatException e) {
            // reported below with the value
        }
        throw new UsageError("--device must be an int >= 0 (0 is the input device), received '"
                + flags.get("--device") + "'.");
    }

    static PeerConfig config(Map<String, String> flags) throws UsageError, IOException {
        PeerConfig config = new PeerConfig(readKey(flags.get("--session-key-file")));
        if (flags.containsKey("--peer-deadline")) {
            config.peerDeadline(seconds("--peer-deadline", flags.get("--peer-deadline")));
        }
        if (flags.containsKey("--request-deadline")) {
            config.requestDeadline(seconds("--request-deadline", flags.get("--request-deadline")));
        }
        return config;
    }

    static List<String> switches(Map<String, String> flags) {
        List<String> switches = new ArrayList<String>();
        if (flags.containsKey("--switch")) {
            for (String s : flags.get("--switch").split(",")) {
                if (!s.isEmpty()) {
                    switches.add(s);
                }
            }
        }
        return switches;
    }

    static Engine.Factory engines(Map<String, String> flags) throws UsageError {
        if (!flags.containsKey("--engine-cmd")) {
            throw new UsageError("--engine-cmd is required on a desktop: this build has no LiteRT for Java; pass the "
                    + "helper that runs the stages, e.g. --engine-cmd '.venv/bin/python "
                    + "android_demo/core/tools/litert_engine.py'.");
        }
        List<String> command = new ArrayList<String>();
        for (String w : flags.get("--engine-cmd").trim().split("\\s+")) {
            if (!w.isEmpty()) {
                command.add(w);
            }
        }
        if (command.isEmpty()) {
            throw new UsageError("--engine-cmd must name a command, received '" + flags.get("--engine-cmd") + "'.");
        }
        return SubprocessEngine.factory(command);
    }

    /** Parses the flags, loads the bundle, starts the peer (device >= 1); returns it (running). */
    static Peer start(String[] argv, Peer.Listener listener) throws Exception {
        Map<String, String> flags = flags(argv);
        File bundle = new File(flags.get("--bundle"));
        int device = device(flags);
        if (device < 1) {
            throw new UsageError("--device 0 is the input device: it needs --input FILE (see the usage), received "
                    + "--device '" + flags.get("--device") + "' without it.");
        }
        for (String only0 : new String[] {"--input", "--output", "--connect-timeout"}) {
            if (flags.containsKey(only0)) {
                throw new UsageError(only0 + " is for the input device (--device 0); device " + device + " serves "
                        + "requests, received " + only0 + " " + flags.get(only0) + ".");
            }
        }
        PeerConfig config = config(flags);
        Map<Integer, InetSocketAddress> peers = peers(flags.containsKey("--peers") ? flags.get("--peers") : "");
        List<String> switches = switches(flags);
        Engine.Factory engines = engines(flags);
        List<DeviceProgram> programs = Bundle.programsFor(bundle, device, switches, config.maxFrameBytes);
        // A switch is served when every device this one dials (the higher ones it exchanges with) has an address.
        List<DeviceProgram> staffed = new ArrayList<DeviceProgram>();
        List<String> skipped = new ArrayList<String>();
        for (DeviceProgram p : programs) {
            boolean ok = true;
            for (int d : p.neighbours) {
                ok &= d < device || peers.containsKey(d);
            }
            if (ok) {
                staffed.add(p);
            } else {
                skipped.add(p.switchName);
            }
        }
        if (staffed.isEmpty()) {
            DeviceProgram need = programs.get(0);
            throw new UsageError("device " + device + ": no switch of " + bundle + " can be served with the "
                    + peers.size() + " address(es) in --peers: " + need.describe() + " needs devices up to "
                    + (need.numDevices - 1) + " (device 1 first).");
        }
        if (!skipped.isEmpty()) {
            listener.onLog("device " + device + ": not serving " + skipped + " (--peers lists no address for some "
                    + "of their devices)");
        }
        InetSocketAddress listen;
        if (flags.containsKey("--listen")) {
            listen = address(flags.get("--listen"), "--listen");
        } else if (peers.containsKey(device)) {
            listen = peers.get(device);
        } else {
            throw new UsageError("device " + device + " needs an address to listen on: --listen HOST:PORT, or its "
                    + "own entry in --peers (entry " + device + "); received " + peers.size() + " peer address(es).");
        }
        return new Peer(staffed, config, peers, listen, engines, listener).start();
    }

    /** The model inputs of {@code --input}: a float32 .npy, or raw float32 little-endian bytes. */
    static List<float[]> inputs(File file, FusionGraph g) throws UsageError, IOException {
        if (!file.isFile()) {
            throw new UsageError("--input " + file + ": no such file.");
        }
        int n = InputTensor.elements(g);
        float[] all;
        if (file.getName().endsWith(".npy")) {
            all = Npy.read(file).data;
        } else {
            byte[] raw = FusionGraph.readAll(file);
            if (raw.length % 4 != 0) {
                throw new UsageError("--input " + file + ": " + raw.length + " bytes is not whole float32 values.");
            }
            all = new float[raw.length / 4];
            java.nio.ByteBuffer.wrap(raw).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(all);
        }
        if (all.length == 0 || all.length % n != 0) {
            throw new UsageError("--input " + file + ": " + all.length + " float32 values is not a whole number of "
                    + "model inputs of shape " + Arrays.toString(InputTensor.shape(g)) + " (" + n + " values each).");
        }
        List<float[]> out = new ArrayList<float[]>();
        for (int i = 0; i < all.length; i += n) {
            out.add(Arrays.copyOfRange(all, i, i + n));
        }
        return out;
    }

    /** The input device: one inference per input of --input, printed (and written to --output). */
    static int runInput(String[] argv, Peer.Listener listener) throws Exception {
        Map<String, String> flags = flags(argv);
        if (flags.containsKey("--listen")) {
            throw new UsageError("--listen: device 0 dials every peer and listens on nothing, received --listen "
                    + flags.get("--listen") + ".");
        }
        if (!flags.containsKey("--input")) {
            throw new UsageError("--device 0 needs --input FILE (.npy float32 or raw float32 bytes); " + USAGE);
        }
        PeerConfig config = config(flags);
        Map<Integer, InetSocketAddress> peers = peers(flags.containsKey("--peers") ? flags.get("--peers") : "");
        Engine.Factory engines = engines(flags);
        List<DeviceProgram> programs = Bundle.programsFor(new File(flags.get("--bundle")), 0, switches(flags),
                config.maxFrameBytes());
        List<float[]> inputs = inputs(new File(flags.get("--input")), programs.get(0).graph);
        Coordinator c;
        try {
            c = new Coordinator(programs, config, peers, engines, 1, listener);
        } catch (IllegalArgumentException e) {
            throw new UsageError(e.getMessage());
        }
        List<Coordinator.Result> results = new ArrayList<Coordinator.Result>();
        try {
            c.connect(flags.containsKey("--connect-timeout")
                    ? seconds("--connect-timeout", flags.get("--connect-timeout")) : 10.0);
            System.out.println("device 0 connected: switch " + c.currentSwitch());
            for (int i = 0; i < inputs.size(); i++) {
                Coordinator.Result r = c.run(inputs.get(i), config.requestDeadline() * 2 + 5);
                results.add(r);
                System.out.println(String.format(java.util.Locale.ROOT, "result %d: request %d switch %s class %d "
                        + "compute_ms %.3f wire_ms %.3f wait_ms %.3f latency_ms %.3f bytes_sent %d bytes_received %d "
                        + "attempts %d", i, r.requestId, r.switchName, r.argmax(), r.computeS * 1e3, r.wireS * 1e3,
                        r.waitS * 1e3, r.latencyS * 1e3, r.bytesSent, r.bytesReceived, r.attempts));
                StringBuilder values = new StringBuilder("output " + i + ":");
                for (float v : r.output) {
                    values.append(' ').append(v);
                }
                System.out.println(values);
                System.out.flush();
            }
        } finally {
            c.close();
        }
        if (flags.containsKey("--output")) {
            int[] one = results.get(0).shape();
            int per = results.get(0).output.length;
            float[] all = new float[per * results.size()];
            for (int i = 0; i < results.size(); i++) {
                System.arraycopy(results.get(i).output, 0, all, i * per, per);
            }
            one[0] *= results.size();  // batch first, as paradis_runtime's predict concatenates
            new Npy(all, one).write(new File(flags.get("--output")));
        }
        return 0;
    }

    private static boolean isInputDevice(String[] argv) {
        for (int i = 0; i + 1 < argv.length; i++) {
            if (argv[i].equals("--device")) {
                return argv[i + 1].trim().equals("0");
            }
        }
        return false;
    }

    public static void main(String[] argv) {
        Peer.Listener listener = new Peer.Listener() {
            @Override
            public void onLog(String line) {
                System.err.println(line);
            }
        };
        if (isInputDevice(argv)) {
            int code;
            try {
                code = runInput(argv, listener);
            } catch (UsageError e) {
                System.err.println("error: " + e.getMessage());
                code = 2;
            } catch (FusionGraphException | Coordinator.RequestFailed | java.net.ConnectException e) {
                System.err.println("error: " + e.getMessage());
                code = 1;
            } catch (Exception e) {
                System.err.println("error: " + e);
                code = 1;
            }
            System.out.flush();
            System.exit(code);
            return;
        }
        final Peer peer;
        try {
            peer = start(argv, listener);
        } catch (UsageError e) {
            System.err.println("error: " + e.getMessage());
            System.exit(2);
            return;
        } catch (FusionGraphException e) {
            System.err.println("error: " + e.getMessage());
            System.exit(1);
            return;
        } catch (Exception e) {
            System.err.println("error: " + e);
            System.exit(1);
            return;
        }
        final CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("device " + peer.device + " leaving");
            System.out.flush();
            peer.stop(true);
            done.countDown();
            // A leave on SIGINT/SIGTERM is the normal end of a peer: exit 0 as `paradis peer` does (the JVM
            // would report 130/143); halt is allowed here because every hook's work is done.
            System.out.flush();
            Runtime.getRuntime().halt(0);
        }));
        InetSocketAddress at = peer.listenAddress();
        InetAddress host = at.getAddress();
        StringBuilder names = new StringBuilder();
        for (DeviceProgram p : peer.programs()) {
            names.append(names.length() == 0 ? "" : ", ").append(p.switchName);
        }
        try {
            // What a phone's NsdManager matches on: the bundle TXT record of _paradis._tcp (discovery.py).
            listener.onLog("device " + peer.device + ": bundle id " + Bundle.id(new File(flags(argv).get("--bundle"))));
        } catch (IOException | UsageError e) {
            listener.onLog("device " + peer.device + ": no bundle id (" + e.getMessage() + ")");
        }
        System.out.println("device " + peer.device + " ready on " + (host == null ? at.getHostString()
                : host.getHostAddress()) + ":" + at.getPort() + ": switches " + names);
        System.out.flush();
        try {
            done.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
