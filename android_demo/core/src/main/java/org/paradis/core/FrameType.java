package org.paradis.core;

/** Frame type codes of FRAME_FORMAT.md section 3. */
public final class FrameType {
    public static final int TENSOR = 1;
    public static final int HELLO = 2;
    public static final int AUTH = 3;
    public static final int ERROR = 4;
    public static final int HEARTBEAT = 5;
    public static final int CANCEL = 6;

    private static final String[] NAMES = {null, "TENSOR", "HELLO", "AUTH", "ERROR", "HEARTBEAT", "CANCEL"};

    private FrameType() {
    }

    /** The spec's name of {@code type}, or "type N" for a code it does not define. */
    public static String name(int type) {
        return type >= 1 && type <= 6 ? NAMES[type] : "type " + type;
    }

    /** The code of a spec name ("TENSOR" ... "CANCEL"); IllegalArgumentException otherwise. */
    public static int byName(String name) {
        for (int i = 1; i < NAMES.length; i++) {
            if (NAMES[i].equals(name)) {
                return i;
            }
        }
        throw new IllegalArgumentException("frame type must be one of TENSOR, HELLO, AUTH, ERROR, HEARTBEAT, "
                + "CANCEL, received '" + name + "'.");
    }

    /** A set of frame types as a bit mask (bit {@code 1 << type}), what the connection state allows. */
    public static int mask(int... types) {
        int m = 0;
        for (int t : types) {
            m |= 1 << t;
        }
        return m;
    }

    /** Every type: a state that allows everything. */
    public static final int ALL = mask(TENSOR, HELLO, AUTH, ERROR, HEARTBEAT, CANCEL);
}
