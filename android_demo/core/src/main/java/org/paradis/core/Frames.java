package org.paradis.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.Charset;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Arrays;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The wire frames of export/FRAME_FORMAT.md (version 1), byte for byte: header encode/decode, the checks of
 * section 6 in their order (the first failure gets the specified code, nothing is allocated for a payload
 * before every header check passed), the HELLO/AUTH/ERROR payloads and the handshake MAC.
 *
 * <p>Holds no sockets and no connection state: the caller passes what its state decides (which frame types
 * are allowed now, which tensors it expects from this peer), as paradis_runtime/frames.py does.
 */
public final class Frames {
    public static final int VERSION = 1;
    public static final int HEADER_LEN = 64;
    /** The default cap on 64 + payload_len. */
    public static final long MAX_FRAME_BYTES = 64L * 1024 * 1024;
    /** Request ids stay below 2^53 so that JavaScript holds them exactly. */
    public static final long MAX_REQUEST_ID = (1L << 53) - 1;
    /** ERROR's tensor_id when no tensor is concerned. */
    public static final long NO_TENSOR = 0xFFFFFFFFL;
    public static final int MIN_KEY_BYTES = 16;
    static final Charset UTF_8 = Charset.forName("UTF-8");
    static final Charset ASCII = Charset.forName("US-ASCII");
    private static final byte[] MAGIC = {'P', 'R', 'D', 'S'};
    private static final byte[] AUTH_LABEL = "PRDS-AUTH-1".getBytes(ASCII);
    /** Before a connection is ready a payload is at most 1032 bytes (HELLO <= 324, ERROR <= 1032). */
    private static final long PRE_READY_PAYLOAD = 1032;

    private Frames() {
    }

    /** Wire dtype code of a graph dtype (section 4). */
    public static int dtypeCode(String dtype) {
        if ("float32".equals(dtype)) {
            return 1;
        }
        if ("int8".equals(dtype)) {
            return 2;
        }
        throw new IllegalArgumentException("dtype must be float32 or int8, received '" + dtype + "'.");
    }

    static ByteBuffer le(byte[] data, int offset, int length) {
        return ByteBuffer.wrap(data, offset, length).order(ByteOrder.LITTLE_ENDIAN);
    }

    // -- header -------------------------------------------------------------------------------------------

    /** The 64 header bytes of {@code h} (no validation beyond the field widths). */
    public static byte[] encodeHeader(Header h) {
        byte[] out = new byte[HEADER_LEN];
        writeHeader(h, out, 0);
        return out;
    }

    /** Writes the 64 header bytes of {@code h} into {@code out} at {@code offset}. */
    public static void writeHeader(Header h, byte[] out, int offset) {
        ByteBuffer b = le(out, offset, HEADER_LEN);
        b.put(MAGIC).put((byte) h.version).put((byte) h.type).putShort((short) h.flags)
                .putShort((short) HEADER_LEN).put((byte) h.dtype).put((byte) h.rank())
                .putInt((int) h.tensorId).putLong(h.payloadLen).putLong(h.requestId);
        int[] shape = h.shape();
        for (int i = 0; i < 6; i++) {
            b.putInt(i < shape.length ? shape[i] : 0);
        }
        for (int i = 0; i < 8; i++) {
            b.put((byte) 0);
        }
    }

    /** Writes {@code requestId} into a whole frame's header (bytes 24..32). */
    public static void putRequestId(byte[] frame, long requestId) {
        le(frame, 24, 8).putLong(requestId);
    }

    /** Unpacks 64 bytes into a Header without checking them ({@link #checkHeader} does). */
    public static Header decodeHeader(byte[] data) {
        if (data.length < HEADER_LEN) {
            throw new IllegalArgumentException("a header is 64 bytes, received " + data.length + ".");
        }
        Raw r = new Raw(data);
        int rank = Math.min(r.rank, 6);
        int[] shape = new int[rank];
        for (int i = 0; i < rank; i++) {
            shape[i] = (int) r.dims[i];
        }
        return new Header(r.version, r.type, r.flags, r.dtype, r.tensorId, r.payloadLen, r.requestId, shape);
    }

    /** The raw fields of a header, unsigned values widened. */
    private static final class Raw {
        final boolean magicOk;
        final int version;
        final int type;
        final int flags;
        final int headerLen;
        final int dtype;
        final int rank;
        final long tensorId;
        final long payloadLen;
        final long requestId;
        final long[] dims = new long[6];
        final boolean reservedZero;

        Raw(byte[] data) {
            ByteBuffer b = le(data, 0, HEADER_LEN);
            magicOk = data[0] == MAGIC[0] && data[1] == MAGIC[1] && data[2] == MAGIC[2] && data[3] == MAGIC[3];
            b.position(4);
            version = b.get() & 0xFF;
            type = b.get() & 0xFF;
            flags = b.getShort() & 0xFFFF;
            headerLen = b.getShort() & 0xFFFF;
            dtype = b.get() & 0xFF;
            rank = b.get() & 0xFF;
            tensorId = b.getInt() & 0xFFFFFFFFL;
            payloadLen = b.getLong();
            requestId = b.getLong();
            for (int i = 0; i < 6; i++) {
                dims[i] = b.getInt() & 0xFFFFFFFFL;
            }
            boolean zero = true;
            for (int i = 56; i < 64; i++) {
                zero &= data[i] == 0;
            }
            reservedZero = zero;
        }
    }

    /** The checks of section 6 with the defaults of a ready TCP connection. */
    public static Header checkHeader(byte[] data, int allowed, Map<Long, TensorSpec> expected, boolean peerIsInput)
            throws FrameException {
        return checkHeader(data, data.length, allowed, expected, peerIsInput, true, MAX_FRAME_BYTES, -1);
    }

    /**
     * Validates a received header in section 6's order and returns it; throws FrameException with the first
     * failing check's code, before anything of the payload is read.
     *
     * @param data the header bytes received (a WebSocket message may be longer)
     * @param available how many bytes were received (fewer than 64: BAD_HEADER)
     * @param allowed the frame types the connection's state allows now ({@link FrameType#mask})
     * @param expected tensor id -> TensorSpec this peer may send (TENSOR frames); null: none
     * @param peerIsInput the peer is the graph's input device (may CANCEL)
     * @param ready the handshake completed (before it, payloads cap at 1032 bytes)
     * @param maxFrameBytes the cap on 64 + payload_len
     * @param messageLen WebSocket: the message's length, which must equal the frame's; -1 on TCP
     */
    public static Header checkHeader(byte[] data, int available, int allowed, Map<Long, TensorSpec> expected,
            boolean peerIsInput, boolean ready, long maxFrameBytes, long messageLen) throws FrameException {
        // 1. exactly 64 header bytes
        if (available < HEADER_LEN || data.length < HEADER_LEN) {
            throw new FrameException(ErrorCode.BAD_HEADER, "a header is 64 bytes, received "
                    + Math.min(available, data.length));
        }
        Raw r = new Raw(data);
        // 2. magic, version, header_len, reserved
        if (!r.magicOk) {
            throw new FrameException(ErrorCode.BAD_MAGIC, "magic is " + hex(Arrays.copyOf(data, 4))
                    + ", expected 50524453 (PRDS)");
        }
        if (r.version != VERSION) {
            throw new FrameException(ErrorCode.UNSUPPORTED_VERSION, "version " + r.version + ", this peer speaks "
                    + VERSION);
        }
        if (r.headerLen != HEADER_LEN || !r.reservedZero) {
            throw new FrameException(ErrorCode.BAD_HEADER, "header_len " + r.headerLen
                    + " (expected 64) or reserved bytes set");
        }
        // 3. type, flags
        if (r.type < FrameType.TENSOR || r.type > FrameType.CANCEL) {
            throw new FrameException(ErrorCode.BAD_TYPE, "frame type " + r.type + " is not 1..6");
        }
        if (r.flags != 0) {
            throw new FrameException(ErrorCode.BAD_FLAGS, String.format("flags 0x%04x: version 1 defines none",
                    r.flags));
        }
        // 4. size cap, unsigned: a payload_len that reads as a negative long is over any cap
        if (r.payloadLen < 0 || r.payloadLen > maxFrameBytes - HEADER_LEN) {
            throw new FrameException(ErrorCode.TOO_LARGE, "frame of 64 + " + Long.toUnsignedString(r.payloadLen)
                    + " bytes, cap " + maxFrameBytes);
        }
        if (messageLen >= 0 && messageLen != HEADER_LEN + r.payloadLen) {
            throw new FrameException(ErrorCode.BAD_LENGTH, "message of " + messageLen + " bytes for a frame of "
                    + (HEADER_LEN + r.payloadLen));
        }
        // 5. allowed in this state; CANCEL only from the input device
        if ((allowed & (1 << r.type)) == 0 || (r.type == FrameType.CANCEL && !peerIsInput)) {
            throw new FrameException(ErrorCode.UNEXPECTED_FRAME, FrameType.name(r.type) + " is not allowed here"
                    + (r.type == FrameType.CANCEL ? " (only the input device may cancel)" : ""));
        }
        // 6. request id range; zero fields and payload range of control frames
        long low = r.type == FrameType.TENSOR || r.type == FrameType.CANCEL ? 1 : 0;
        long high = r.type == FrameType.TENSOR || r.type == FrameType.CANCEL || r.type == FrameType.ERROR
                ? MAX_REQUEST_ID : 0;
        if (r.requestId < low || r.requestId > high) {
            throw new FrameException(ErrorCode.BAD_REQUEST_ID, "request_id " + Long.toUnsignedString(r.requestId)
                    + " outside " + low + ".." + high + " for " + FrameType.name(r.type));
        }
        if (r.type != FrameType.TENSOR) {
            boolean dimsZero = true;
            for (long d : r.dims) {
                dimsZero &= d == 0;
            }
            if (r.dtype != 0 || r.rank != 0 || r.tensorId != 0 || !dimsZero) {
                throw new FrameException(ErrorCode.BAD_HEADER, FrameType.name(r.type)
                        + ": dtype, rank, tensor_id and dims must be 0");
            }
            long[] range = payloadRange(r.type);
            long max = ready ? range[1] : Math.min(range[1], PRE_READY_PAYLOAD);
            if (r.payloadLen < range[0] || r.payloadLen > max) {
                throw new FrameException(ErrorCode.BAD_PAYLOAD, FrameType.name(r.type) + " payload of " + r.payloadLen
                        + " bytes, expected " + range[0] + ".." + max);
            }
            return Header.control(r.type, r.payloadLen, r.requestId);
        }
        // 7. TENSOR against the graph
        TensorSpec spec = expected == null ? null : expected.get(r.tensorId);
        if (spec == null) {
            throw new FrameException(ErrorCode.UNKNOWN_TENSOR, "tensor id " + r.tensorId
                    + " is not expected from this peer");
        }
        if (r.dtype != spec.dtypeCode()) {
            throw new FrameException(ErrorCode.BAD_DTYPE, "dtype code " + r.dtype + ", the graph's " + spec.name
                    + " is " + spec.dtype);
        }
        boolean shapeOk = r.rank == spec.rank();
        for (int i = 0; i < 6 && shapeOk; i++) {
            shapeOk = r.dims[i] == (i < spec.rank() ? spec.dim(i) : 0);
        }
        if (!shapeOk) {
            throw new FrameException(ErrorCode.BAD_SHAPE, "rank " + r.rank + " dims " + Arrays.toString(r.dims)
                    + ", the graph's " + spec.name + " is " + Arrays.toString(spec.shape()));
        }
        if (r.payloadLen != spec.payloadLen()) {
            throw new FrameException(ErrorCode.BAD_LENGTH, "payload_len " + r.payloadLen + ", " + spec.name
                    + " needs " + spec.payloadLen());
        }
        return new Header(FrameType.TENSOR, r.payloadLen, r.requestId, r.tensorId, r.dtype, spec.shape());
    }

    /** Section 3: {lowest, highest} payload_len of a non-TENSOR type. */
    private static long[] payloadRange(int type) {
        switch (type) {
            case FrameType.HELLO:
                return new long[] {70, 324};
            case FrameType.AUTH:
                return new long[] {32, 32};
            case FrameType.ERROR:
                return new long[] {8, 1032};
            default:
                return new long[] {0, 0};
        }
    }

    // -- TENSOR -------------------------------------------------------------------------------------------

    /** The header of a TENSOR frame of {@code spec} (id {@code tensorId}) for {@code requestId}. */
    public static Header tensorHeader(TensorSpec spec, long tensorId, long requestId) {
        return new Header(FrameType.TENSOR, spec.payloadLen(), requestId, tensorId, spec.dtypeCode(), spec.shape());
    }

    /** One whole TENSOR frame (header and the payload's exact bytes, one buffer for one write). */
    public static byte[] tensorFrame(TensorSpec spec, long tensorId, long requestId, byte[] payload) {
        if (payload.length != spec.payloadLen()) {
            throw new IllegalArgumentException("tensor '" + spec.name + "' is " + spec + " = " + spec.payloadLen()
                    + " bytes; received a payload of " + payload.length + " bytes.");
        }
        byte[] frame = new byte[HEADER_LEN + payload.length];
        writeHeader(tensorHeader(spec, tensorId, requestId), frame, 0);
        System.arraycopy(payload, 0, frame, HEADER_LEN, payload.length);
        return frame;
    }

    // -- HELLO / AUTH -------------------------------------------------------------------------------------

    /** A whole HELLO frame. */
    public static byte[] encodeHello(Hello hello) {
        byte[] name = hello.switchName.getBytes(ASCII);
        if (name.length < 1 || name.length > 255 || hello.graphSha256().length != 32 || hello.nonce().length != 32
                || !hello.switchName.equals(new String(name, ASCII))) {
            throw new IllegalArgumentException("HELLO needs a 32-byte hash, a 32-byte nonce and a 1..255-character "
                    + "ASCII switch, received " + hello.graphSha256().length + ", " + hello.nonce().length
                    + " and '" + hello.switchName + "'.");
        }
        byte[] frame = new byte[HEADER_LEN + 69 + name.length];
        writeHeader(Header.control(FrameType.HELLO, 69 + name.length, 0), frame, 0);
        ByteBuffer b = le(frame, HEADER_LEN, 69 + name.length);
        b.put(hello.graphSha256()).put(hello.nonce()).putShort((short) hello.device)
                .putShort((short) hello.peerDevice).put((byte) name.length).put(name);
        return frame;
    }

    /** Decodes a HELLO payload; BAD_PAYLOAD when its layout is broken. */
    public static Hello decodeHello(byte[] payload) throws FrameException {
        if (payload.length < 70 || payload.length != 69 + (payload[68] & 0xFF)) {
            throw new FrameException(ErrorCode.BAD_PAYLOAD, "HELLO payload of " + payload.length
                    + " bytes does not match its switch_len");
        }
        ByteBuffer b = le(payload, 64, 4);
        int device = b.getShort() & 0xFFFF;
        int peerDevice = b.getShort() & 0xFFFF;
        for (int i = 69; i < payload.length; i++) {
            if (payload[i] < 0) {  // a byte >= 0x80 is not ASCII
                throw new FrameException(ErrorCode.BAD_PAYLOAD, "HELLO switch name is not ASCII");
            }
        }
        String name = new String(payload, 69, payload.length - 69, ASCII);
        return new Hello(Arrays.copyOfRange(payload, 0, 32), Arrays.copyOfRange(payload, 32, 64), device, peerDevice,
                name);
    }

    /** The shared secret; refuses one shorter than 16 bytes. */
    public static byte[] checkKey(byte[] key) {
        if (key == null || key.length < MIN_KEY_BYTES) {
            throw new IllegalArgumentException("the session key must be at least " + MIN_KEY_BYTES
                    + " bytes, received " + (key == null ? "none" : String.valueOf(key.length))
                    + "; 32 random bytes written as hex are recommended.");
        }
        return key;
    }

    /**
     * HMAC-SHA256(K, "PRDS-AUTH-1" | sha256 | u16(X) | u16(Y) | nonce_X | nonce_Y), X the AUTH's sender.
     */
    public static byte[] authMac(byte[] key, byte[] graphSha256, int sender, int receiver, byte[] nonceSender,
            byte[] nonceReceiver) {
        checkKey(key);
        ByteBuffer m = ByteBuffer.allocate(111).order(ByteOrder.LITTLE_ENDIAN);
        m.put(AUTH_LABEL).put(graphSha256).putShort((short) sender).putShort((short) receiver).put(nonceSender)
                .put(nonceReceiver);
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key, "HmacSHA256"));
            return mac.doFinal(m.array());
        } catch (GeneralSecurityException e) {
            // Every Java platform (and Android since API 1) ships HmacSHA256: this is a broken runtime.
            throw new IllegalStateException("HmacSHA256 is unavailable on this Java runtime: " + e, e);
        }
    }

    /** A whole AUTH frame carrying {@code mac}. */
    public static byte[] authFrame(byte[] mac) {
        byte[] frame = new byte[HEADER_LEN + 32];
        writeHeader(Header.control(FrameType.AUTH, 32, 0), frame, 0);
        System.arraycopy(mac, 0, frame, HEADER_LEN, 32);
        return frame;
    }

    /** Constant-time comparison of two MACs. */
    public static boolean macEquals(byte[] a, byte[] b) {
        return MessageDigest.isEqual(a, b);
    }

    // -- ERROR --------------------------------------------------------------------------------------------

    /** The UTF-8 bytes of {@code message}, cut to 1024 bytes at a character boundary. */
    static byte[] cutMessage(String message) {
        byte[] text = message.getBytes(UTF_8);
        if (text.length <= 1024) {
            return text;
        }
        int cut = 1024;
        while (cut > 0 && (text[cut] & 0xC0) == 0x80) {  // never cut inside a character
            cut--;
        }
        return Arrays.copyOf(text, cut);
    }

    /** A whole ERROR frame; the message is cut to 1024 UTF-8 bytes; tensorId NO_TENSOR for none. */
    public static byte[] encodeError(int code, String message, long tensorId, long requestId) {
        byte[] text = cutMessage(message == null ? "" : message);
        byte[] frame = new byte[HEADER_LEN + 8 + text.length];
        writeHeader(Header.control(FrameType.ERROR, 8 + text.length, requestId), frame, 0);
        le(frame, HEADER_LEN, 8).putShort((short) code).putShort((short) text.length).putInt((int) tensorId);
        System.arraycopy(text, 0, frame, HEADER_LEN + 8, text.length);
        return frame;
    }

    /** Decodes an ERROR payload (message decoded with replacement, never parsed). */
    public static ErrorPayload decodeError(byte[] payload) throws FrameException {
        if (payload.length < 8) {
            throw new FrameException(ErrorCode.BAD_PAYLOAD, "ERROR payload of " + payload.length
                    + " bytes, at least 8");
        }
        ByteBuffer b = le(payload, 0, 8);
        int code = b.getShort() & 0xFFFF;
        int n = b.getShort() & 0xFFFF;
        long tensorId = b.getInt() & 0xFFFFFFFFL;
        if (n > 1024 || payload.length != 8 + n) {
            throw new FrameException(ErrorCode.BAD_PAYLOAD, "ERROR message_len " + n + " for a payload of "
                    + payload.length + " bytes");
        }
        return new ErrorPayload(code, tensorId, new String(payload, 8, n, UTF_8));
    }

    // -- helpers ------------------------------------------------------------------------------------------

    public static String hex(byte[] data) {
        StringBuilder s = new StringBuilder(data.length * 2);
        for (byte x : data) {
            s.append(Character.forDigit((x >> 4) & 0xF, 16)).append(Character.forDigit(x & 0xF, 16));
        }
        return s.toString();
    }

    public static byte[] unhex(String hex) {
        if (hex.length() % 2 != 0) {
            throw new IllegalArgumentException("hex text must have an even length, received " + hex.length()
                    + " characters.");
        }
        byte[] out = new byte[hex.length() / 2];
        for (int i = 0; i < out.length; i++) {
            int hi = Character.digit(hex.charAt(2 * i), 16);
            int lo = Character.digit(hex.charAt(2 * i + 1), 16);
            if (hi < 0 || lo < 0) {
                throw new IllegalArgumentException("not hex: '" + hex.substring(2 * i, 2 * i + 2) + "' at "
                        + 2 * i + ".");
            }
            out[i] = (byte) (hi * 16 + lo);
        }
        return out;
    }
}
