package org.paradis.core;

import java.util.Arrays;

/** The HELLO payload of FRAME_FORMAT.md section 5. */
public final class Hello {
    private final byte[] graphSha256;
    private final byte[] nonce;
    public final int device;
    public final int peerDevice;
    public final String switchName;

    public Hello(byte[] graphSha256, byte[] nonce, int device, int peerDevice, String switchName) {
        this.graphSha256 = graphSha256.clone();
        this.nonce = nonce.clone();
        this.device = device;
        this.peerDevice = peerDevice;
        this.switchName = switchName;
    }

    public byte[] graphSha256() {
        return graphSha256.clone();
    }

    public byte[] nonce() {
        return nonce.clone();
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Hello)) {
            return false;
        }
        Hello h = (Hello) o;
        return Arrays.equals(graphSha256, h.graphSha256) && Arrays.equals(nonce, h.nonce) && device == h.device
                && peerDevice == h.peerDevice && switchName.equals(h.switchName);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(nonce) ^ device ^ (peerDevice << 16);
    }
}
