package org.paradis.core;

import java.net.InetSocketAddress;
import java.util.HashMap;
import java.util.Map;

/**
 * Peer addresses as {@code paradis peer --peers} takes them ({@code HOST:PORT,HOST:PORT,...}: entry k is
 * device k), with messages naming the entry and the value received. Hosts are not resolved here (a phone
 * resolves on its network thread, when it dials).
 */
public final class Addresses {
    private Addresses() {
    }

    /** One {@code HOST:PORT} ({@code [v6]:PORT} too); {@code what} names it in the message. */
    public static InetSocketAddress parse(String text, String what) {
        String t = text == null ? "" : text.trim();
        int colon = t.lastIndexOf(':');
        String host = colon > 0 ? t.substring(0, colon).replace("[", "").replace("]", "") : "";
        String port = colon > 0 ? t.substring(colon + 1) : "";
        int p = port.matches("[0-9]{1,5}") ? Integer.parseInt(port) : -1;
        if (host.isEmpty() || p < 1 || p > 65535) {
            throw new IllegalArgumentException(what + " must be HOST:PORT with a port in 1..65535, received '" + text
                    + "'.");
        }
        return InetSocketAddress.createUnresolved(host, p);
    }

    /** {@code "HOST:PORT,HOST:PORT"} -> {1: first, 2: second, ...}; blank entries are skipped. */
    public static Map<Integer, InetSocketAddress> parsePeers(String text) {
        Map<Integer, InetSocketAddress> out = new HashMap<Integer, InetSocketAddress>();
        int k = 1;
        for (String item : (text == null ? "" : text).split(",")) {
            if (!item.trim().isEmpty()) {
                out.put(k, parse(item, "--peers: peer address " + k + " (device " + k + ")"));
                k++;
            }
        }
        return out;
    }
}
