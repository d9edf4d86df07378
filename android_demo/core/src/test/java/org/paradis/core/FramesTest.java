package org.paradis.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Collections;
import java.util.HashMap;
import java.util.Map;
import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.jupiter.api.Test;

/** The codec against FRAME_FORMAT.md and the shared vectors export/vectors/frames.json. */
class FramesTest {
    private static final String WORKED = "505244530101000040000204070000004c02000000000000010000000000000001000000"
            + "0e0000000e0000000300000000000000000000000000000000000000";

    private static int[] ints(JSONArray a) throws org.json.JSONException {
        int[] out = new int[a.length()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.getInt(i);
        }
        return out;
    }

    @Test
    void workedExampleEncodesAndDecodes() throws Exception {
        Header h = new Header(FrameType.TENSOR, 588, 1, 7, 2, new int[] {1, 14, 14, 3});
        assertEquals(WORKED, Frames.hex(Frames.encodeHeader(h)));
        assertEquals(h, Frames.decodeHeader(Frames.unhex(WORKED)));
        Map<Long, TensorSpec> expected = Collections.singletonMap(7L, new TensorSpec("t", "int8",
                new int[] {1, 14, 14, 3}));
        assertEquals(h, Frames.checkHeader(Frames.unhex(WORKED), FrameType.ALL, expected, false));
        byte[] frame = Frames.tensorFrame(expected.get(7L), 7, 1, new byte[588]);
        assertEquals(WORKED, Frames.hex(java.util.Arrays.copyOf(frame, 64)));
        assertEquals(64 + 588, frame.length);
        assertEquals(WORKED, Vectors.frames().getJSONObject("worked_example").getString("header_hex"));
    }

    @Test
    void hmacVectors() throws Exception {
        JSONObject h = Vectors.frames().getJSONObject("hmac");
        byte[] key = h.getString("key_ascii").getBytes("US-ASCII");
        byte[] sha = Frames.unhex(h.getString("graph_sha256_hex"));
        byte[] n0 = Frames.unhex(h.getString("nonce_0_hex"));
        byte[] n1 = Frames.unhex(h.getString("nonce_1_hex"));
        // The spec's values, restated here so a regenerated frames.json cannot move them silently.
        assertEquals("0b6a60b9e23cdea6f335fed7434b427425bab66ce1d83246c35301ba4f75f111",
                Frames.hex(Frames.authMac(key, sha, 0, 1, n0, n1)));
        assertEquals(h.getString("mac_1_to_0_hex"), Frames.hex(Frames.authMac(key, sha, 1, 0, n1, n0)));
        assertEquals(h.getString("mac_0_to_1_hex"), Frames.hex(Frames.authMac(key, sha, 0, 1, n0, n1)));
        assertFalse(Frames.macEquals(Frames.authMac(key, sha, 0, 1, n0, n1), Frames.authMac(key, sha, 1, 0, n1, n0)));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Frames.authMac(new byte[15], sha, 0, 1, n0, n1));
        assertTrue(e.getMessage().contains("at least 16 bytes, received 15"), e.getMessage());
    }

    @Test
    void eachBadHeaderGetsThePythonCode() throws Exception {
        JSONObject v = Vectors.frames();
        JSONObject context = v.getJSONObject("context");
        Map<Long, TensorSpec> expected = new HashMap<Long, TensorSpec>();
        JSONArray tensors = context.getJSONArray("expected_tensors");
        for (int i = 0; i < tensors.length(); i++) {
            JSONObject t = tensors.getJSONObject(i);
            expected.put(t.getLong("tensor_id"), new TensorSpec("t", t.getString("dtype"), ints(t.getJSONArray("shape"))));
        }
        JSONArray bad = v.getJSONArray("bad_headers");
        assertTrue(bad.length() >= 20);
        for (int i = 0; i < bad.length(); i++) {
            JSONObject c = bad.getJSONObject(i);
            byte[] header = Frames.unhex(c.getString("header_hex"));
            FrameException e = assertThrows(FrameException.class, () -> Frames.checkHeader(header, header.length,
                    FrameType.ALL, expected, context.getBoolean("peer_is_input"), true,
                    context.getLong("max_frame_bytes"), -1), c.getString("name"));
            assertEquals(c.getInt("error_code"), e.code, c.getString("name") + ": " + e.getMessage());
            assertEquals(c.getString("error"), ErrorCode.name(e.code), c.getString("name"));
        }
    }

    @Test
    void eachGoodFrameDecodesToItsFieldsAndEncodesBack() throws Exception {
        JSONArray good = Vectors.frames().getJSONArray("good_frames");
        java.util.Set<String> types = new java.util.HashSet<String>();
        java.util.Set<Object> dtypes = new java.util.HashSet<Object>();
        for (int i = 0; i < good.length(); i++) {
            JSONObject c = good.getJSONObject(i);
            String name = c.getString("name");
            JSONObject f = c.getJSONObject("fields");
            byte[] frame = Frames.unhex(c.getString("frame_hex"));
            int type = FrameType.byName(f.getString("type"));
            types.add(f.getString("type"));
            dtypes.add(f.get("dtype"));
            Map<Long, TensorSpec> expected = null;
            TensorSpec spec = null;
            if (type == FrameType.TENSOR) {
                spec = new TensorSpec("t", f.getString("dtype"), ints(f.getJSONArray("shape")));
                expected = Collections.singletonMap(f.getLong("tensor_id"), spec);
            }
            Header h = Frames.checkHeader(java.util.Arrays.copyOf(frame, 64), FrameType.ALL, expected, true);
            assertEquals(type, h.type, name);
            assertEquals(f.getInt("flags"), h.flags, name);
            assertEquals(f.isNull("dtype") ? 0 : Frames.dtypeCode(f.getString("dtype")), h.dtype, name);
            assertEquals(f.getLong("tensor_id"), h.tensorId, name);
            assertEquals(f.getLong("payload_len"), h.payloadLen, name);
            assertEquals(f.getLong("request_id"), h.requestId, name);
            assertArrayEquals(ints(f.getJSONArray("shape")), h.shape(), name);
            assertEquals(frame.length, 64 + h.payloadLen, name);
            byte[] payload = java.util.Arrays.copyOfRange(frame, 64, frame.length);
            byte[] again;
            if (type == FrameType.TENSOR) {
                again = Frames.tensorFrame(spec, h.tensorId, h.requestId, payload);
            } else if (type == FrameType.HELLO) {
                again = Frames.encodeHello(Frames.decodeHello(payload));
            } else if (type == FrameType.ERROR) {
                ErrorPayload e = Frames.decodeError(payload);
                again = Frames.encodeError(e.code, e.message, e.tensorId, h.requestId);
            } else if (type == FrameType.AUTH) {
                again = Frames.authFrame(payload);
            } else {
                again = Frames.encodeHeader(Header.control(type, 0, h.requestId));
            }
            assertEquals(c.getString("frame_hex"), Frames.hex(again), name);
        }
        assertEquals(6, types.size(), "every frame type has a good vector: " + types);
        assertTrue(dtypes.contains("float32") && dtypes.contains("int8"), "every dtype: " + dtypes);
    }

    @Test
    void errorPayloadVectors() throws Exception {
        JSONArray cases = Vectors.frames().getJSONArray("error_payloads");
        for (int i = 0; i < cases.length(); i++) {
            JSONObject c = cases.getJSONObject(i);
            byte[] payload = Frames.unhex(c.getString("payload_hex"));
            ErrorPayload e = Frames.decodeError(payload);
            long tensorId = c.isNull("tensor_id") ? Frames.NO_TENSOR : c.getLong("tensor_id");
            assertEquals(c.getInt("code"), e.code);
            assertEquals(tensorId, e.tensorId);
            assertEquals(c.getString("message"), e.message);
            byte[] frame = Frames.encodeError(c.getInt("code"), c.getString("message"), tensorId, 0);
            assertEquals(c.getString("payload_hex"), Frames.hex(java.util.Arrays.copyOfRange(frame, 64, frame.length)));
        }
        // A message of 1200 UTF-8 bytes is cut at a character boundary, to 1024 bytes.
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < 600; i++) {
            s.append('\u00e9');
        }
        byte[] frame = Frames.encodeError(ErrorCode.STAGE_FAILED, s.toString(), Frames.NO_TENSOR, 3);
        ErrorPayload e = Frames.decodeError(java.util.Arrays.copyOfRange(frame, 64, frame.length));
        assertEquals(512, e.message.length());
        assertFalse(e.hasTensor());
    }

    @Test
    void helloPayloadVectors() throws Exception {
        JSONArray cases = Vectors.frames().getJSONArray("hello_payloads");
        for (int i = 0; i < cases.length(); i++) {
            JSONObject c = cases.getJSONObject(i);
            Hello want = new Hello(Frames.unhex(c.getString("graph_sha256_hex")), Frames.unhex(c.getString("nonce_hex")),
                    c.getInt("device"), c.getInt("peer_device"), c.getString("switch"));
            byte[] payload = Frames.unhex(c.getString("payload_hex"));
            assertEquals(want, Frames.decodeHello(payload));
            byte[] frame = Frames.encodeHello(want);
            assertEquals(c.getString("payload_hex"), Frames.hex(java.util.Arrays.copyOfRange(frame, 64, frame.length)));
            assertEquals(ErrorCode.BAD_PAYLOAD, assertThrows(FrameException.class,
                    () -> Frames.decodeHello(java.util.Arrays.copyOf(payload, payload.length - 1))).code);
        }
    }

    @Test
    void eachBadPayloadGetsBadPayload() throws Exception {
        JSONArray cases = Vectors.frames().getJSONArray("bad_payloads");
        assertTrue(cases.length() > 0);
        for (int i = 0; i < cases.length(); i++) {
            JSONObject c = cases.getJSONObject(i);
            byte[] payload = Frames.unhex(c.getString("payload_hex"));
            FrameException e = assertThrows(FrameException.class, () -> {
                if ("HELLO".equals(c.getString("type"))) {
                    Frames.decodeHello(payload);
                } else {
                    Frames.decodeError(payload);
                }
            }, c.getString("name"));
            assertEquals(c.getInt("error_code"), e.code, c.getString("name"));
        }
    }

    @Test
    void stateAndControlFrameRules() throws Exception {
        byte[] worked = Frames.unhex(WORKED);
        Map<Long, TensorSpec> spec = Collections.singletonMap(7L, new TensorSpec("t", "int8", new int[] {1, 14, 14, 3}));
        byte[] heartbeat = Frames.encodeHeader(Header.control(FrameType.HEARTBEAT, 0, 0));
        assertEquals(FrameType.HEARTBEAT, Frames.checkHeader(heartbeat, FrameType.ALL, null, false).type);
        // TENSOR before the handshake completed
        FrameException e = assertThrows(FrameException.class, () -> Frames.checkHeader(worked, 64,
                FrameType.mask(FrameType.HELLO, FrameType.ERROR), spec, false, false, Frames.MAX_FRAME_BYTES, -1));
        assertEquals(ErrorCode.UNEXPECTED_FRAME, e.code);
        byte[] cancel = Frames.encodeHeader(Header.control(FrameType.CANCEL, 0, 5));
        assertEquals(ErrorCode.UNEXPECTED_FRAME, assertThrows(FrameException.class,
                () -> Frames.checkHeader(cancel, FrameType.ALL, null, false)).code);
        assertEquals(5, Frames.checkHeader(cancel, FrameType.ALL, null, true).requestId);
        // An ERROR of 1033 bytes before ready: BAD_PAYLOAD (the pre-ready cap is 1032).
        byte[] bigError = Frames.encodeHeader(Header.control(FrameType.ERROR, 1033, 0));
        assertEquals(ErrorCode.BAD_PAYLOAD, assertThrows(FrameException.class, () -> Frames.checkHeader(bigError, 64,
                FrameType.ALL, null, false, false, Frames.MAX_FRAME_BYTES, -1)).code);
        // WebSocket: the message length must equal the frame's
        assertEquals(ErrorCode.BAD_LENGTH, assertThrows(FrameException.class, () -> Frames.checkHeader(worked, 64,
                FrameType.ALL, spec, false, true, Frames.MAX_FRAME_BYTES, 64 + 587)).code);
        assertEquals(ErrorCode.TOO_LARGE, assertThrows(FrameException.class, () -> Frames.checkHeader(worked, 64,
                FrameType.ALL, spec, false, true, 64 + 587, -1)).code);
        assertEquals(ErrorCode.BAD_HEADER, assertThrows(FrameException.class, () -> Frames.checkHeader(worked, 63,
                FrameType.ALL, spec, false, true, Frames.MAX_FRAME_BYTES, -1)).code);
        assertEquals(67108864L, Frames.MAX_FRAME_BYTES);
    }
}
