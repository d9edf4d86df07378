package org.paradis.core;

/** The ERROR payload of FRAME_FORMAT.md section 6: code, tensor id (or none) and a display-only message. */
public final class ErrorPayload {
    public final int code;
    /** The tensor concerned, or {@link Frames#NO_TENSOR} (0xFFFFFFFF) for none. */
    public final long tensorId;
    public final String message;

    public ErrorPayload(int code, long tensorId, String message) {
        this.code = code;
        this.tensorId = tensorId;
        this.message = message;
    }

    public boolean hasTensor() {
        return tensorId != Frames.NO_TENSOR;
    }

    @Override
    public String toString() {
        return ErrorCode.name(code) + (hasTensor() ? " (tensor " + tensorId + ")" : "") + ": " + message;
    }
}
