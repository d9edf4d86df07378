package org.paradis.core;

import java.util.Arrays;

/**
 * The 64-byte frame header of FRAME_FORMAT.md section 2, as decoded (u32 and u64 fields are held in longs:
 * a u64 above 2^63 reads as a negative long, which every check treats as out of range).
 */
public final class Header {
    public final int version;
    public final int type;
    public final int flags;
    public final int dtype;
    public final long tensorId;
    public final long payloadLen;
    public final long requestId;
    private final int[] shape;

    /** A version-1 header of {@code type} with the given fields; {@code shape} has rank 0..6. */
    public Header(int type, long payloadLen, long requestId, long tensorId, int dtype, int[] shape) {
        this(Frames.VERSION, type, 0, dtype, tensorId, payloadLen, requestId, shape);
    }

    /** A non-TENSOR header: dtype, rank, tensor id and dims are all 0. */
    public static Header control(int type, long payloadLen, long requestId) {
        return new Header(type, payloadLen, requestId, 0, 0, new int[0]);
    }

    Header(int version, int type, int flags, int dtype, long tensorId, long payloadLen, long requestId, int[] shape) {
        if (shape.length > 6) {
            throw new IllegalArgumentException("a header holds at most 6 dims (rank <= 6), received "
                    + Arrays.toString(shape) + ".");
        }
        this.version = version;
        this.type = type;
        this.flags = flags;
        this.dtype = dtype;
        this.tensorId = tensorId;
        this.payloadLen = payloadLen;
        this.requestId = requestId;
        this.shape = shape.clone();
    }

    /** dims[0..rank-1]. */
    public int[] shape() {
        return shape.clone();
    }

    public int rank() {
        return shape.length;
    }

    /** The same header for another request id. */
    public Header withRequestId(long rid) {
        return new Header(version, type, flags, dtype, tensorId, payloadLen, rid, shape);
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Header)) {
            return false;
        }
        Header h = (Header) o;
        return version == h.version && type == h.type && flags == h.flags && dtype == h.dtype
                && tensorId == h.tensorId && payloadLen == h.payloadLen && requestId == h.requestId
                && Arrays.equals(shape, h.shape);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(shape) * 31 + (int) (requestId ^ tensorId ^ payloadLen) + type;
    }

    @Override
    public String toString() {
        return "Header(" + FrameType.name(type) + ", payload_len=" + Long.toUnsignedString(payloadLen)
                + ", request_id=" + Long.toUnsignedString(requestId) + ", tensor_id=" + tensorId + ", dtype="
                + dtype + ", shape=" + Arrays.toString(shape) + ", flags=" + flags + ")";
    }
}
