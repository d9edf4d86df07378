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
            + " [--peer-deadline S] [--request-deadline S]";

    /** Parses the flags, loads the bundle, starts the peer; returns it (running). */
    static Peer start(String[] argv, Peer.Listener listener) throws Exception {
        Map<String, String> flags = new HashMap<String, String>();
        List<String> known = Arrays.asList("--bundle", "--device", "--peers", "--session-key-file", "--switch",
                "--listen", "--engine-cmd", "--peer-deadline", "--request-deadline");
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
        File bundle = new File(flags.get("--bundle"));
        if (!bundle.exists()) {
            throw new UsageError("--bundle " + bundle + ": no such folder.");
        }
        int device;
        try {
            device = Integer.parseInt(flags.get("--device"));
        } catch (NumberFormatException e) {
            device = -1;
        }
        if (device < 1) {
            throw new UsageError("--device must be an int >= 1 (device 0 is the input device: `paradis run`), "
                    + "received '" + flags.get("--device") + "'.");
        }
        PeerConfig config = new PeerConfig(readKey(flags.get("--session-key-file")));
        if (flags.containsKey("--peer-deadline")) {
            config.peerDeadline(seconds("--peer-deadline", flags.get("--peer-deadline")));
        }
        if (flags.containsKey("--request-deadline")) {
            config.requestDeadline(seconds("--request-deadline", flags.get("--request-deadline")));
        }
        Map<Integer, InetSocketAddress> peers = peers(flags.containsKey("--peers") ? flags.get("--peers") : "");
        List<String> switches = new ArrayList<String>();
        if (flags.containsKey("--switch")) {
            for (String s : flags.get("--switch").split(",")) {
                if (!s.isEmpty()) {
                    switches.add(s);
                }
            }
        }
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
        return new Peer(staffed, config, peers, listen, SubprocessEngine.factory(command), listener).start();
    }

    public static void main(String[] argv) {
        Peer.Listener listener = new Peer.Listener() {
            @Override
            public void onLog(String line) {
                System.err.println(line);
            }
        };
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
