"""Writes frames.json: shared test vectors for the Python, Java and JavaScript
frame codecs (export/FRAME_FORMAT.md, version 1).

The valid frames are the spec's worked example and HMAC vectors; each bad
frame is the worked example with one field patched, and the code it must be
rejected with follows from section 6's order (written here by hand, not
computed by a codec). Every implementation's tests read frames.json and
check its decoder against every entry.

Generated vectors (packed here with ``struct`` from the spec's tables, never
with a runtime's codec, so that a codec bug cannot leak into its own oracle):

* ``good_frames``: whole frames (header + payload) of every frame type and
  every TENSOR dtype, with the fields a decoder must read back. ``dtype`` is
  the graph's dtype name for TENSOR frames and ``null`` (code 0) otherwise;
  ``shape`` is ``[]`` for non-TENSOR frames. Each decoder must decode them,
  each encoder must reproduce ``frame_hex`` from ``fields`` (and the payload).
* ``error_payloads``: ERROR payloads (``tensor_id`` ``null`` = 0xFFFFFFFF);
  ``message`` is the decoded text (a message longer than 1024 UTF-8 bytes is
  cut at a character boundary, so encoding ``message`` gives ``payload_hex``).
* ``hello_payloads``: HELLO payloads with their fields.
* ``bad_payloads``: control payloads whose layout is broken, each rejected
  with ``BAD_PAYLOAD`` by the payload decoder (§6 step 8).

    python export/vectors/make_frames.py   # rewrites frames.json next to it
"""

import json
import struct
from pathlib import Path

WORKED = bytes.fromhex(
    "505244530101000040000204070000004c020000000000000100000000000000"
    "010000000e0000000e0000000300000000000000000000000000000000000000")

# (name, [(offset, struct format, value), ...] patched into WORKED, expected error code name)
BAD = [
    ("short_header", None, "BAD_HEADER"),
    ("bad_magic", [(0, "<4s", b"GET ")], "BAD_MAGIC"),
    ("bad_magic_before_version", [(0, "<4s", b"GET "), (4, "<B", 2)], "BAD_MAGIC"),
    ("version_2", [(4, "<B", 2)], "UNSUPPORTED_VERSION"),
    ("header_len_63", [(8, "<H", 63)], "BAD_HEADER"),
    ("reserved_set", [(60, "<B", 1)], "BAD_HEADER"),
    ("type_9", [(5, "<B", 9)], "BAD_TYPE"),
    ("type_before_flags", [(5, "<B", 0), (6, "<H", 1)], "BAD_TYPE"),
    ("flag_set", [(6, "<H", 1)], "BAD_FLAGS"),
    ("payload_len_u64_max", [(16, "<Q", 2**64 - 1)], "TOO_LARGE"),
    ("too_large_before_request_id", [(16, "<Q", 2**64 - 1), (24, "<Q", 0)], "TOO_LARGE"),
    ("request_id_0", [(24, "<Q", 0)], "BAD_REQUEST_ID"),
    ("request_id_2_53", [(24, "<Q", 2**53)], "BAD_REQUEST_ID"),
    ("unknown_tensor", [(12, "<I", 8)], "UNKNOWN_TENSOR"),
    ("float32_dtype", [(10, "<B", 1)], "BAD_DTYPE"),
    ("dtype_before_shape", [(10, "<B", 1), (36, "<I", 15)], "BAD_DTYPE"),
    ("dims_differ", [(36, "<I", 15)], "BAD_SHAPE"),
    ("spare_dim_set", [(48, "<I", 1)], "BAD_SHAPE"),
    ("rank_3", [(11, "<B", 3)], "BAD_SHAPE"),
    ("payload_len_587", [(16, "<Q", 587)], "BAD_LENGTH"),
    ("heartbeat_with_tensor_id", [(5, "<B", 5), (24, "<Q", 0)], "BAD_HEADER"),
    ("cancel_from_a_non_input_peer", [(5, "<B", 6), (10, "<B", 0), (11, "<B", 0), (12, "<I", 0),
                                      (16, "<Q", 0), (32, "<6I", None)], "UNEXPECTED_FRAME"),
    ("auth_of_31_bytes", [(5, "<B", 3), (10, "<B", 0), (11, "<B", 0), (12, "<I", 0), (16, "<Q", 31),
                          (24, "<Q", 0), (32, "<6I", None)], "BAD_PAYLOAD"),
]

ERROR_CODES = {
    "BAD_MAGIC": 1, "UNSUPPORTED_VERSION": 2, "BAD_HEADER": 3, "BAD_TYPE": 4, "BAD_FLAGS": 5, "TOO_LARGE": 6,
    "UNEXPECTED_FRAME": 7, "BAD_PAYLOAD": 8, "UNKNOWN_TENSOR": 13, "BAD_DTYPE": 14, "BAD_SHAPE": 15,
    "BAD_LENGTH": 16, "BAD_REQUEST_ID": 17,
}


def patched(patches) -> bytes:
    if patches is None:
        return WORKED[:63]
    out = bytearray(WORKED)
    for offset, fmt, value in patches:
        if value is None:  # zero the field
            struct.pack_into(fmt, out, offset, *([0] * len(struct.unpack_from(fmt, out, offset))))
        else:
            struct.pack_into(fmt, out, offset, value)
    return bytes(out)


_HEADER = struct.Struct("<4sBBHHBBIQQ6I8x")
_TYPES = {"TENSOR": 1, "HELLO": 2, "AUTH": 3, "ERROR": 4, "HEARTBEAT": 5, "CANCEL": 6}
_DTYPES = {"float32": (1, "<f"), "int8": (2, "<b")}
HMAC_KEY = b"paradis-test-secret-0123456789ab"
HMAC_SHA = bytes([0x11]) * 32
NONCE_0, NONCE_1 = bytes(range(0, 32)), bytes(range(32, 64))
MAC_0_TO_1 = "0b6a60b9e23cdea6f335fed7434b427425bab66ce1d83246c35301ba4f75f111"
MAC_1_TO_0 = "64f4d8f2ae361e365417c2f3d01b5ba15e1176b924abbe99c23c74334a980c7b"


def _header(type_name, payload_len, request_id=0, tensor_id=0, dtype=None, shape=()) -> bytes:
    dims = list(shape) + [0] * (6 - len(shape))
    return _HEADER.pack(b"PRDS", 1, _TYPES[type_name], 0, 64, _DTYPES[dtype][0] if dtype else 0, len(shape),
                        tensor_id, payload_len, request_id, *dims)


def _count(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _tensor_values(dtype: str, n: int) -> list:
    """Deterministic values that exercise sign, byte order and (float32)
    the exponent: int8 walks -128..127, float32 mixes small, negative,
    fractional and large values so every byte of the little-endian word
    varies."""
    if dtype == "int8":
        return [(i * 37 + 11) % 256 - 128 for i in range(n)]
    specials = [0.0, -0.0, 1.0, -1.5, 3.14159274, 1e-7, -65504.0, 2.5e30]
    return [specials[i] if i < len(specials) else (i % 17 - 8) * 0.125 + i * 1e-3 for i in range(n)]


def _error_payload(code: int, message: str, tensor_id) -> tuple:
    text = message.encode("utf-8")[:1024].decode("utf-8", errors="ignore")
    raw = text.encode("utf-8")
    payload = struct.pack("<HHI", code, len(raw), 0xFFFFFFFF if tensor_id is None else tensor_id) + raw
    return text, payload


def _hello_payload(sha: bytes, nonce: bytes, device: int, peer_device: int, switch: str) -> bytes:
    name = switch.encode("ascii")
    return sha + nonce + struct.pack("<HHB", device, peer_device, len(name)) + name


# (name, graph dtype, shape, tensor_id, request_id): every dtype, rank 1..6,
# the largest request id JavaScript holds exactly, the largest tensor id.
GOOD_TENSORS = [
    ("tensor_int8_worked_example", "int8", [1, 14, 14, 3], 7, 1),
    ("tensor_float32_nhwc", "float32", [1, 2, 3, 4], 3, 4294967296),
    ("tensor_float32_rank1", "float32", [8], 0, 9007199254740991),
    ("tensor_int8_rank6", "int8", [1, 2, 1, 3, 1, 2], 4294967294, 123456789),
    ("tensor_float32_rank2_tokens", "float32", [1, 5], 65536, 2),
    ("tensor_int8_rank3", "int8", [1, 1, 300], 12, 77),
]

ERRORS = [  # (code, message, tensor_id)
    (13, "tensor id 8 is not expected from this peer", 8),
    (9, "", None),
    (128, "stage2 raised: division by zero \u00e9\u4e2d\U0001f600", None),
    (130, "request 5 abandoned at the local deadline", 0),
    (129, "x" * 1024, 4294967294),
    (64, "\u00e9" * 600, None),  # 1200 UTF-8 bytes: cut to 512 whole characters
    (200, "an unknown request-level code is still carried", 1),
]

HELLOS = [  # (graph_sha256, nonce, device, peer_device, switch)
    (HMAC_SHA, NONCE_0, 0, 1, "2x0.5"),
    (HMAC_SHA, NONCE_1, 1, 0, "2x0.5"),
    (bytes(range(255, 223, -1)), bytes([0xA5]) * 32, 2, 0, "0.5+0.3+0.2"),
    (bytes(32), bytes([0xFF]) * 32, 65535, 65534, "s" * 255),
    (bytes(range(100, 132)), bytes(range(7, 39)), 3, 1, "4"),
]


def _good_frames() -> list:
    frames = []
    for name, dtype, shape, tensor_id, request_id in GOOD_TENSORS:
        n = _count(shape)
        payload = struct.pack("<%d%s" % (n, _DTYPES[dtype][1][1]), *_tensor_values(dtype, n))
        frames.append((name, _header("TENSOR", len(payload), request_id, tensor_id, dtype, shape) + payload,
                       {"type": "TENSOR", "dtype": dtype, "tensor_id": tensor_id, "request_id": request_id,
                        "shape": shape}))
    for i, hello in enumerate(HELLOS[:3]):
        payload = _hello_payload(*hello)
        frames.append(("hello_%d" % i, _header("HELLO", len(payload)) + payload, {"type": "HELLO"}))
    for name, mac in (("auth_0_to_1", MAC_0_TO_1), ("auth_1_to_0", MAC_1_TO_0)):
        frames.append((name, _header("AUTH", 32) + bytes.fromhex(mac), {"type": "AUTH"}))
    for name, (code, message, tensor_id), request_id in (("error_fatal", ERRORS[0], 0),
                                                         ("error_request_level", ERRORS[2], 9007199254740991),
                                                         ("error_deadline", ERRORS[3], 5)):
        payload = _error_payload(code, message, tensor_id)[1]
        frames.append((name, _header("ERROR", len(payload), request_id) + payload,
                       {"type": "ERROR", "request_id": request_id}))
    frames.append(("heartbeat", _header("HEARTBEAT", 0), {"type": "HEARTBEAT"}))
    frames.append(("cancel", _header("CANCEL", 0, 42), {"type": "CANCEL", "request_id": 42}))
    frames.append(("cancel_max_request_id", _header("CANCEL", 0, 2**53 - 1),
                   {"type": "CANCEL", "request_id": 2**53 - 1}))
    out = []
    for name, frame, given in frames:
        fields = {"type": given["type"], "flags": 0, "dtype": given.get("dtype"),
                  "tensor_id": given.get("tensor_id", 0), "payload_len": len(frame) - 64,
                  "request_id": given.get("request_id", 0), "shape": given.get("shape", [])}
        out.append({"name": name, "frame_hex": frame.hex(), "fields": fields})
    return out


def _bad_payloads() -> list:
    hello = _hello_payload(*HELLOS[0])
    error = _error_payload(13, "abc", 8)[1]
    cases = [
        ("hello_short_by_one", "HELLO", hello[:-1]),
        ("hello_long_by_one", "HELLO", hello + b"x"),
        ("hello_switch_len_0", "HELLO", hello[:68] + b"\x00"),
        ("hello_switch_not_ascii", "HELLO", hello[:68] + b"\x02\xc3\xa9"),
        ("hello_69_bytes", "HELLO", hello[:69]),
        ("error_short", "ERROR", error[:7]),
        ("error_message_len_past_payload", "ERROR", error[:-1]),
        ("error_message_len_short_of_payload", "ERROR", error + b"d"),
        ("error_message_len_1025", "ERROR", struct.pack("<HHI", 3, 1025, 0xFFFFFFFF) + b"y" * 1025),
    ]
    return [{"name": name, "type": type_, "payload_hex": payload.hex(), "error": "BAD_PAYLOAD", "error_code": 8}
            for name, type_, payload in cases]


def build() -> dict:
    """The vectors as written to frames.json."""
    return {
        "spec": "export/FRAME_FORMAT.md",
        "frame_version": 1,
        "context": {
            "note": "every bad frame is checked on a ready connection whose peer is device 1, not the input "
                    "device, and may send only this tensor; all frame types are allowed by the state",
            "expected_tensors": [{"tensor_id": 7, "dtype": "int8", "shape": [1, 14, 14, 3]}],
            "peer_is_input": False,
            "max_frame_bytes": 67108864,
        },
        "worked_example": {
            "header_hex": WORKED.hex(),
            "fields": {"type": "TENSOR", "flags": 0, "dtype": "int8", "tensor_id": 7, "payload_len": 588,
                       "request_id": 1, "shape": [1, 14, 14, 3]},
        },
        "hmac": {
            "key_ascii": HMAC_KEY.decode("ascii"),
            "graph_sha256_hex": HMAC_SHA.hex(),
            "nonce_0_hex": NONCE_0.hex(),
            "nonce_1_hex": NONCE_1.hex(),
            "mac_0_to_1_hex": MAC_0_TO_1,
            "mac_1_to_0_hex": MAC_1_TO_0,
        },
        "bad_headers": [
            {"name": name, "header_hex": patched(p).hex(), "error": code, "error_code": ERROR_CODES[code]}
            for name, p, code in BAD
        ],
        "good_frames": _good_frames(),
        "error_payloads": [
            {"code": code, "tensor_id": tensor_id, "message": text, "payload_hex": payload.hex()}
            for code, message, tensor_id in ERRORS for text, payload in [_error_payload(code, message, tensor_id)]
        ],
        "hello_payloads": [
            {"graph_sha256_hex": sha.hex(), "nonce_hex": nonce.hex(), "device": device, "peer_device": peer,
             "switch": switch, "payload_hex": _hello_payload(sha, nonce, device, peer, switch).hex()}
            for sha, nonce, device, peer, switch in HELLOS
        ],
        "bad_payloads": _bad_payloads(),
    }


def main() -> None:
    path = Path(__file__).with_name("frames.json")
    path.write_text(json.dumps(build(), indent=1) + "\n")
    vectors = build()
    print(f"wrote {path} ({len(BAD)} bad headers, {len(vectors['good_frames'])} good frames, "
          f"{len(ERRORS)} error payloads, {len(HELLOS)} hello payloads, {len(vectors['bad_payloads'])} bad payloads)")


if __name__ == "__main__":
    main()
