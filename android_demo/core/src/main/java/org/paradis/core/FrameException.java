package org.paradis.core;

/** A frame that breaks FRAME_FORMAT.md: {@link #code} is what the ERROR frame carries. */
public class FrameException extends Exception {
    private static final long serialVersionUID = 1L;
    public final int code;
    public final String detail;

    public FrameException(int code, String detail) {
        super(ErrorCode.name(code) + ": " + detail);
        this.code = code;
        this.detail = detail;
    }
}
