package org.paradis.core;

/**
 * What every connection of a peer obeys (FRAME_FORMAT.md defaults; paradis_runtime PeerConfig). Seconds are
 * doubles; set fields with the fluent setters, each of which checks its value.
 */
public final class PeerConfig {
    final byte[] key;
    double handshakeTimeout = 5.0;
    double heartbeatInterval = 0.5;
    double peerDeadline = 2.0;
    double requestDeadline = 2.0;
    int maxInflight = 8;
    long maxFrameBytes = Frames.MAX_FRAME_BYTES;
    int maxPending = 8;
    double connectTimeout = 2.0;

    /** {@code key}: the shared secret (at least 16 bytes; the UTF-8 bytes of the configured text). */
    public PeerConfig(byte[] key) {
        this.key = Frames.checkKey(key).clone();
    }

    private static double seconds(String name, double value) {
        if (!(value > 0) || Double.isInfinite(value)) {
            throw new IllegalArgumentException("PeerConfig: " + name + " must be a number of seconds > 0, received "
                    + value + ".");
        }
        return value;
    }

    public PeerConfig handshakeTimeout(double s) {
        handshakeTimeout = seconds("handshake_timeout", s);
        return this;
    }

    public PeerConfig heartbeatInterval(double s) {
        heartbeatInterval = seconds("heartbeat_interval", s);
        checkDeadline();
        return this;
    }

    public PeerConfig peerDeadline(double s) {
        peerDeadline = seconds("peer_deadline", s);
        checkDeadline();
        return this;
    }

    public PeerConfig requestDeadline(double s) {
        requestDeadline = seconds("request_deadline", s);
        return this;
    }

    public PeerConfig connectTimeout(double s) {
        connectTimeout = seconds("connect_timeout", s);
        return this;
    }

    public PeerConfig maxInflight(int n) {
        if (n < 1) {
            throw new IllegalArgumentException("PeerConfig: max_inflight must be an int >= 1, received " + n + ".");
        }
        maxInflight = n;
        return this;
    }

    public PeerConfig maxPending(int n) {
        if (n < 1) {
            throw new IllegalArgumentException("PeerConfig: max_pending must be an int >= 1, received " + n + ".");
        }
        maxPending = n;
        return this;
    }

    public PeerConfig maxFrameBytes(long n) {
        if (n < Frames.HEADER_LEN) {
            throw new IllegalArgumentException("PeerConfig: max_frame_bytes must be >= 64, received " + n + ".");
        }
        maxFrameBytes = n;
        return this;
    }

    private void checkDeadline() {
        if (peerDeadline <= heartbeatInterval) {
            throw new IllegalArgumentException("PeerConfig: peer_deadline (" + peerDeadline + " s) must exceed "
                    + "heartbeat_interval (" + heartbeatInterval + " s), or live peers are declared dead.");
        }
    }

    public double peerDeadline() {
        return peerDeadline;
    }

    public double requestDeadline() {
        return requestDeadline;
    }

    public long maxFrameBytes() {
        return maxFrameBytes;
    }

    static long nanos(double seconds) {
        return (long) (seconds * 1e9);
    }
}
