package org.paradis.app;

import android.app.Notification;
import android.app.NotificationChannel;
import android.app.NotificationManager;
import android.app.PendingIntent;
import android.app.Service;
import android.content.Intent;
import android.content.pm.ServiceInfo;
import android.os.Binder;
import android.os.Build;
import android.os.IBinder;
import android.os.PowerManager;
import java.io.File;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import org.paradis.core.Addresses;
import org.paradis.core.Bundle;
import org.paradis.core.DeviceProgram;
import org.paradis.core.Frames;
import org.paradis.core.Peer;
import org.paradis.core.PeerConfig;

/**
 * A device >= 1 of a bundle, served by the core's {@link Peer} (what {@code paradis peer} does on a laptop) in
 * a foreground service, so it keeps serving with the screen off. Advertised with NSD so device 0 finds it.
 * {@link PeerStatusActivity} binds to it and shows {@link #snapshot()}.
 */
public final class PeerService extends Service {
    static final String EXTRA_BUNDLE = "bundle";
    static final String EXTRA_DEVICE = "device";
    static final String EXTRA_KEY = "key";
    static final String EXTRA_PEERS = "peers";
    static final String EXTRA_PORT = "port";
    static final String EXTRA_THREADS = "threads";
    private static final String CHANNEL = "paradis-peer";
    private static final int NOTIFICATION = 1;
    private static final int LOG_LINES = 200;

    /** What the status screen shows. */
    static final class Status {
        final String state;
        final int device;
        final String listen;
        final List<String> switches;
        /** switch -> devices connected on it. */
        final Map<String, TreeSet<Integer>> connected;
        final List<String> log;

        Status(String state, int device, String listen, List<String> switches, Map<String, TreeSet<Integer>> connected,
                List<String> log) {
            this.state = state;
            this.device = device;
            this.listen = listen;
            this.switches = switches;
            this.connected = connected;
            this.log = log;
        }
    }

    final class Local extends Binder {
        PeerService service() {
            return PeerService.this;
        }
    }

    private final Local binder = new Local();
    private final Object lock = new Object();
    private final ArrayDeque<String> log = new ArrayDeque<>();
    private final Map<String, TreeSet<Integer>> connected = new TreeMap<>();
    private final List<String> switches = new ArrayList<>();
    private String state = "starting";
    private int device = -1;
    private String listen = "";
    private Peer peer;
    private Nsd nsd;
    private volatile Thread starter;
    private PowerManager.WakeLock wake;

    @Override
    public IBinder onBind(Intent intent) {
        return binder;
    }

    Status snapshot() {
        synchronized (lock) {
            Map<String, TreeSet<Integer>> c = new TreeMap<>();
            for (Map.Entry<String, TreeSet<Integer>> e : connected.entrySet()) {
                c.put(e.getKey(), new TreeSet<>(e.getValue()));
            }
            return new Status(state, device, listen, new ArrayList<>(switches), c, new ArrayList<>(log));
        }
    }

    private void log(String line) {
        synchronized (lock) {
            log.addLast(line);
            while (log.size() > LOG_LINES) {
                log.removeFirst();
            }
        }
    }

    private void state(String s) {
        synchronized (lock) {
            state = s;
        }
        log(s);
    }

    @Override
    public int onStartCommand(Intent intent, int flags, int startId) {
        // Foreground at once: Android stops a service started with startForegroundService that waits longer.
        startForeground();
        if (intent == null || peer != null || starter != null) {
            return START_NOT_STICKY;  // already serving; a restart without the settings cannot serve
        }
        final File bundle = new File(intent.getStringExtra(EXTRA_BUNDLE));
        final int dev = intent.getIntExtra(EXTRA_DEVICE, -1);
        final byte[] key = intent.getStringExtra(EXTRA_KEY).trim().getBytes(StandardCharsets.UTF_8);
        final String peersText = intent.getStringExtra(EXTRA_PEERS);
        final int port = intent.getIntExtra(EXTRA_PORT, 7000 + dev);
        final int threads = intent.getIntExtra(EXTRA_THREADS, 2);
        synchronized (lock) {
            device = dev;
        }
        PowerManager pm = (PowerManager) getSystemService(POWER_SERVICE);
        wake = pm.newWakeLock(PowerManager.PARTIAL_WAKE_LOCK, "paradis:peer");
        wake.acquire();
        // Loading the bundle (sha256 of every file) and binding a socket are not for the main thread.
        starter = new Thread(() -> serve(bundle, dev, key, peersText, port, threads), "paradis-peer-start");
        starter.start();
        return START_NOT_STICKY;
    }

    private void serve(File bundle, int dev, byte[] key, String peersText, int port, int threads) {
        try {
            PeerConfig config = new PeerConfig(key);
            Map<Integer, InetSocketAddress> peers = Addresses.parsePeers(peersText);
            List<DeviceProgram> programs = Bundle.programsFor(bundle, dev, null, config.maxFrameBytes());
            // A switch is served when every device this one dials (the higher ones it exchanges with) has an
            // address, as `paradis peer` decides.
            List<DeviceProgram> staffed = new ArrayList<>();
            for (DeviceProgram p : programs) {
                boolean ok = true;
                for (int d : p.neighbours) {
                    ok &= d < dev || peers.containsKey(d);
                }
                if (ok) {
                    staffed.add(p);
                } else {
                    log("not serving " + p.switchName + ": the addresses list no device above " + dev + " it needs");
                }
            }
            if (staffed.isEmpty()) {
                throw new IllegalArgumentException("device " + dev + ": no switch of " + bundle.getName()
                        + " can be served with the " + peers.size() + " address(es) given: enter the addresses of "
                        + "devices 1, 2, ... (this one's included) or use Discover.");
            }
            int listenPort = peers.containsKey(dev) ? peers.get(dev).getPort() : port;
            Peer p = new Peer(staffed, config, peers, new InetSocketAddress("0.0.0.0", listenPort),
                    LiteRtEngine.factory(threads), new Events()).start();
            synchronized (lock) {
                peer = p;
                StringBuilder at = new StringBuilder();
                for (String a : Bundles.localAddresses()) {
                    at.append(at.length() == 0 ? "" : ", ").append(a).append(':').append(p.listenAddress().getPort());
                }
                listen = at.length() == 0 ? "port " + p.listenAddress().getPort() + " (no network address)"
                        : at.toString();
                for (DeviceProgram d : staffed) {
                    switches.add(d.switchName);
                    connected.put(d.switchName, new TreeSet<>());
                }
            }
            state("device " + dev + " serving " + switches + " on port " + p.listenAddress().getPort());
            nsd = new Nsd(this);
            nsd.advertise(Bundle.id(bundle), dev, staffed.get(0).graph.model, p.listenAddress().getPort(),
                    new Nsd.Callback() {
                        @Override
                        public void onPeer(int device, String host, int port) {
                        }

                        @Override
                        public void onLog(String line) {
                            log(line);
                        }
                    });
        } catch (Exception e) {
            state("stopped: " + (e.getMessage() != null ? e.getMessage() : e.toString()));
        } finally {
            starter = null;
        }
    }

    /** The peer's events, kept for the status screen. */
    private final class Events implements Peer.Listener {
        @Override
        public void onLog(String line) {
            log(line);
        }

        @Override
        public void onPeerReady(DeviceProgram program, int d) {
            synchronized (lock) {
                connected.get(program.switchName).add(d);
            }
        }

        @Override
        public void onPeerLost(DeviceProgram program, int d, String reason, int code) {
            synchronized (lock) {
                connected.get(program.switchName).remove(d);
            }
        }

        @Override
        public void onRequestError(DeviceProgram program, int d, long requestId, int code, String message) {
            log("request " + requestId + " (" + program.switchName + "): device " + d + ": " + message);
        }
    }

    private void startForeground() {
        NotificationManager nm = getSystemService(NotificationManager.class);
        nm.createNotificationChannel(new NotificationChannel(CHANNEL, getString(R.string.peer_channel),
                NotificationManager.IMPORTANCE_LOW));
        PendingIntent open = PendingIntent.getActivity(this, 0, new Intent(this, PeerStatusActivity.class),
                PendingIntent.FLAG_IMMUTABLE | PendingIntent.FLAG_UPDATE_CURRENT);
        Notification n = new Notification.Builder(this, CHANNEL)
                .setSmallIcon(android.R.drawable.stat_sys_upload)
                .setContentTitle(getString(R.string.app_name))
                .setContentText(getString(R.string.peer_serving))
                .setContentIntent(open)
                .setOngoing(true)
                .build();
        if (Build.VERSION.SDK_INT >= 29) {
            startForeground(NOTIFICATION, n, ServiceInfo.FOREGROUND_SERVICE_TYPE_CONNECTED_DEVICE);
        } else {
            startForeground(NOTIFICATION, n);
        }
    }

    @Override
    public void onDestroy() {
        Peer p;
        synchronized (lock) {
            p = peer;
            peer = null;
        }
        if (nsd != null) {
            nsd.stopAdvertising();
        }
        if (p != null) {
            // SHUTTING_DOWN to every connected device: device 0 falls back to a switch without this one at once.
            final Peer leaving = p;
            Thread t = new Thread(() -> leaving.stop(true), "paradis-peer-stop");
            t.start();
        }
        if (wake != null && wake.isHeld()) {
            wake.release();
        }
        super.onDestroy();
    }

    /** The frame format this build speaks (shown on the status screen). */
    static int frameVersion() {
        return Frames.VERSION;
    }
}
