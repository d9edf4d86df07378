"""Writes frames.json: shared test vectors for the Python, Java and JavaScript
frame codecs (export/FRAME_FORMAT.md, version 1).

The valid frames are the spec's worked example and HMAC vectors; each bad
frame is the worked example with one field patched, and the code it must be
rejected with follows from section 6's order (written here by hand, not
computed by a codec). Every implementation's tests read frames.json and
check its decoder against every entry.

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
            "key_ascii": "paradis-test-secret-0123456789ab",
            "graph_sha256_hex": "11" * 32,
            "nonce_0_hex": bytes(range(0, 32)).hex(),
            "nonce_1_hex": bytes(range(32, 64)).hex(),
            "mac_0_to_1_hex": "0b6a60b9e23cdea6f335fed7434b427425bab66ce1d83246c35301ba4f75f111",
            "mac_1_to_0_hex": "64f4d8f2ae361e365417c2f3d01b5ba15e1176b924abbe99c23c74334a980c7b",
        },
        "bad_headers": [
            {"name": name, "header_hex": patched(p).hex(), "error": code, "error_code": ERROR_CODES[code]}
            for name, p, code in BAD
        ],
    }


def main() -> None:
    path = Path(__file__).with_name("frames.json")
    path.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {path} ({len(BAD)} bad headers)")


if __name__ == "__main__":
    main()
