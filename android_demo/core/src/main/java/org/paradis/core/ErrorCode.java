package org.paradis.core;

/** ERROR codes of FRAME_FORMAT.md section 6: 1-127 fatal, 128-255 request-level. */
public final class ErrorCode {
    public static final int BAD_MAGIC = 1;
    public static final int UNSUPPORTED_VERSION = 2;
    public static final int BAD_HEADER = 3;
    public static final int BAD_TYPE = 4;
    public static final int BAD_FLAGS = 5;
    public static final int TOO_LARGE = 6;
    public static final int UNEXPECTED_FRAME = 7;
    public static final int BAD_PAYLOAD = 8;
    public static final int GRAPH_MISMATCH = 9;
    public static final int BAD_DEVICE = 10;
    public static final int AUTH_FAILED = 11;
    public static final int HANDSHAKE_TIMEOUT = 12;
    public static final int UNKNOWN_TENSOR = 13;
    public static final int BAD_DTYPE = 14;
    public static final int BAD_SHAPE = 15;
    public static final int BAD_LENGTH = 16;
    public static final int BAD_REQUEST_ID = 17;
    public static final int DUPLICATE_TENSOR = 18;
    public static final int DEVICE_IN_USE = 19;
    public static final int SHUTTING_DOWN = 64;
    public static final int STAGE_FAILED = 128;
    public static final int OVERLOADED = 129;
    public static final int DEADLINE_EXCEEDED = 130;

    private static final Object[][] NAMES = {
        {BAD_MAGIC, "BAD_MAGIC"}, {UNSUPPORTED_VERSION, "UNSUPPORTED_VERSION"}, {BAD_HEADER, "BAD_HEADER"},
        {BAD_TYPE, "BAD_TYPE"}, {BAD_FLAGS, "BAD_FLAGS"}, {TOO_LARGE, "TOO_LARGE"},
        {UNEXPECTED_FRAME, "UNEXPECTED_FRAME"}, {BAD_PAYLOAD, "BAD_PAYLOAD"}, {GRAPH_MISMATCH, "GRAPH_MISMATCH"},
        {BAD_DEVICE, "BAD_DEVICE"}, {AUTH_FAILED, "AUTH_FAILED"}, {HANDSHAKE_TIMEOUT, "HANDSHAKE_TIMEOUT"},
        {UNKNOWN_TENSOR, "UNKNOWN_TENSOR"}, {BAD_DTYPE, "BAD_DTYPE"}, {BAD_SHAPE, "BAD_SHAPE"},
        {BAD_LENGTH, "BAD_LENGTH"}, {BAD_REQUEST_ID, "BAD_REQUEST_ID"}, {DUPLICATE_TENSOR, "DUPLICATE_TENSOR"},
        {DEVICE_IN_USE, "DEVICE_IN_USE"},
        {SHUTTING_DOWN, "SHUTTING_DOWN"}, {STAGE_FAILED, "STAGE_FAILED"}, {OVERLOADED, "OVERLOADED"},
        {DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"},
    };

    private ErrorCode() {
    }

    /** The spec's name of {@code code}, or "code N" for one it does not define (treated by its range). */
    public static String name(int code) {
        for (Object[] e : NAMES) {
            if ((Integer) e[0] == code) {
                return (String) e[1];
            }
        }
        return "code " + code;
    }

    /** The code of a spec name; IllegalArgumentException otherwise. */
    public static int byName(String name) {
        for (Object[] e : NAMES) {
            if (e[1].equals(name)) {
                return (Integer) e[0];
            }
        }
        throw new IllegalArgumentException("no error code named '" + name + "' in FRAME_FORMAT.md section 6.");
    }

    /** Codes 1-127 close the connection; 128-255 abandon one request only. */
    public static boolean isFatal(int code) {
        return code < 128;
    }
}
