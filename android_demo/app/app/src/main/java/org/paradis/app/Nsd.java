package org.paradis.app;

import android.content.Context;
import android.net.nsd.NsdManager;
import android.net.nsd.NsdServiceInfo;
import android.net.wifi.WifiManager;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.Map;
import org.paradis.core.Frames;

/**
 * DNS-SD on the local Wi-Fi with Android's NsdManager, the same service and TXT records as
 * paradis_runtime/discovery.py: {@code _paradis._tcp}, TXT {@code bundle} (Bundle.id: 16 hex digits naming the
 * export), {@code device}, {@code model}, {@code frames} (the frame format version). Laptops running
 * {@code paradis peer --advertise} and phones running this app find each other. An address found is only a
 * hint: it is dialed and must still pass the HELLO/AUTH handshake.
 *
 * <p>Callbacks come on NsdManager's thread. Old Android versions resolve one service at a time, so found
 * services are resolved one after another.
 */
final class Nsd {
    /** NsdManager takes the type without the ".local." domain. */
    static final String SERVICE = "_paradis._tcp";

    interface Callback {
        /** A peer of this export: device index and the address it listens on. */
        void onPeer(int device, String host, int port);

        void onLog(String line);
    }

    private final NsdManager nsd;
    private final WifiManager.MulticastLock multicast;
    private final ArrayDeque<NsdServiceInfo> toResolve = new ArrayDeque<>();
    private boolean resolving;
    private NsdManager.DiscoveryListener browsing;
    private NsdManager.RegistrationListener advertising;

    Nsd(Context context) {
        nsd = (NsdManager) context.getSystemService(Context.NSD_SERVICE);
        WifiManager wifi = (WifiManager) context.getApplicationContext().getSystemService(Context.WIFI_SERVICE);
        // Some Wi-Fi drivers drop multicast while the screen is off unless a lock is held.
        multicast = wifi.createMulticastLock("paradis-nsd");
        multicast.setReferenceCounted(false);
    }

    /** Browses for peers of export {@code bundleId} until {@link #stopBrowsing}. */
    synchronized void browse(String bundleId, Callback callback) {
        stopBrowsing();
        multicast.acquire();
        browsing = new NsdManager.DiscoveryListener() {
            @Override
            public void onDiscoveryStarted(String type) {
                callback.onLog("discovery: browsing " + type);
            }

            @Override
            public void onServiceFound(NsdServiceInfo info) {
                resolve(info, bundleId, callback);
            }

            @Override
            public void onServiceLost(NsdServiceInfo info) {
                callback.onLog("discovery: " + info.getServiceName() + " left");
            }

            @Override
            public void onDiscoveryStopped(String type) {
            }

            @Override
            public void onStartDiscoveryFailed(String type, int code) {
                callback.onLog("discovery: could not browse " + type + " (NsdManager error " + code
                        + "); enter the addresses by hand");
            }

            @Override
            public void onStopDiscoveryFailed(String type, int code) {
            }
        };
        nsd.discoverServices(SERVICE, NsdManager.PROTOCOL_DNS_SD, browsing);
    }

    synchronized void stopBrowsing() {
        if (browsing != null) {
            try {
                nsd.stopServiceDiscovery(browsing);
            } catch (IllegalArgumentException e) {
                // not registered any more: nothing to stop
            }
            browsing = null;
        }
        toResolve.clear();
        if (advertising == null) {
            multicast.release();
        }
    }

    private synchronized void resolve(NsdServiceInfo info, String bundleId, Callback callback) {
        if (resolving) {
            toResolve.add(info);
            return;
        }
        resolving = true;
        nsd.resolveService(info, new NsdManager.ResolveListener() {
            @Override
            public void onResolveFailed(NsdServiceInfo s, int code) {
                callback.onLog("discovery: could not resolve " + s.getServiceName() + " (NsdManager error " + code
                        + ")");
                next(bundleId, callback);
            }

            @Override
            public void onServiceResolved(NsdServiceInfo s) {
                Map<String, byte[]> txt = s.getAttributes();
                String bundle = text(txt.get("bundle"));
                String device = text(txt.get("device"));
                if (!bundleId.equals(bundle) || !device.matches("[0-9]{1,5}") || s.getHost() == null) {
                    callback.onLog("discovery: " + s.getServiceName() + " holds another export (bundle '" + bundle
                            + "', this one is '" + bundleId + "')");
                } else {
                    callback.onPeer(Integer.parseInt(device), s.getHost().getHostAddress(), s.getPort());
                }
                next(bundleId, callback);
            }
        });
    }

    private void next(String bundleId, Callback callback) {
        NsdServiceInfo info;
        synchronized (this) {
            resolving = false;
            info = toResolve.poll();
        }
        if (info != null) {
            resolve(info, bundleId, callback);
        }
    }

    private static String text(byte[] raw) {
        return raw == null ? "" : new String(raw, StandardCharsets.UTF_8);
    }

    /** Advertises device {@code device} of export {@code bundleId} listening on {@code port}. */
    synchronized void advertise(String bundleId, int device, String model, int port, Callback callback) {
        stopAdvertising();
        multicast.acquire();
        NsdServiceInfo info = new NsdServiceInfo();
        // The instance name discovery.py uses, so a laptop's and a phone's entries read alike.
        info.setServiceName("paradis-" + bundleId.substring(0, 8) + "-d" + device + "-" + port);
        info.setServiceType(SERVICE);
        info.setPort(port);
        info.setAttribute("bundle", bundleId);
        info.setAttribute("device", String.valueOf(device));
        info.setAttribute("model", model);
        info.setAttribute("frames", String.valueOf(Frames.VERSION));
        advertising = new NsdManager.RegistrationListener() {
            @Override
            public void onServiceRegistered(NsdServiceInfo s) {
                callback.onLog("discovery: advertising " + s.getServiceName());
            }

            @Override
            public void onRegistrationFailed(NsdServiceInfo s, int code) {
                callback.onLog("discovery: could not advertise (NsdManager error " + code + "); the other devices "
                        + "need this one's address by hand");
            }

            @Override
            public void onServiceUnregistered(NsdServiceInfo s) {
            }

            @Override
            public void onUnregistrationFailed(NsdServiceInfo s, int code) {
            }
        };
        nsd.registerService(info, NsdManager.PROTOCOL_DNS_SD, advertising);
    }

    synchronized void stopAdvertising() {
        if (advertising != null) {
            try {
                nsd.unregisterService(advertising);
            } catch (IllegalArgumentException e) {
                // not registered any more: nothing to stop
            }
            advertising = null;
        }
        if (browsing == null) {
            multicast.release();
        }
    }
}
