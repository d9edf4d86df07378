"""The frame codec against export/FRAME_FORMAT.md: the worked example, the
HMAC test vectors, and the validation order of section 6."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from paradis_runtime.frames import (
    MAX_FRAME_BYTES, ErrorCode, FrameError, FrameType, Header, Hello, TensorSpec, auth_mac, check_header,
    check_key, decode_error, decode_header, decode_hello, encode_error, encode_header, encode_hello, tensor_frame,
)

# §8, copied from the spec.
WORKED = bytes.fromhex(
    "505244530101000040000204070000004c020000000000000100000000000000"
    "010000000e0000000e0000000300000000000000000000000000000000000000")
SPEC = {7: TensorSpec("t", "int8", (1, 14, 14, 3))}
ALL = tuple(FrameType)


def test_worked_example_encodes_and_decodes():
    header = Header(type=FrameType.TENSOR, payload_len=588, request_id=1, tensor_id=7, dtype=2, dims=(1, 14, 14, 3))
    assert encode_header(header) == WORKED
    assert WORKED == struct.pack("<4sBBHHBBIQQ6I8x", b"PRDS", 1, 1, 0, 64, 2, 4, 7, 588, 1, 1, 14, 14, 3, 0, 0)
    assert decode_header(WORKED) == header
    assert check_header(WORKED, ALL, SPEC) == header
    frame = tensor_frame(7, 1, np.zeros((1, 14, 14, 3), np.int8), "int8")
    assert frame[:64] == WORKED and len(frame) == 64 + 588


def test_hmac_test_vectors():
    key = b"paradis-test-secret-0123456789ab"
    sha, n0, n1 = bytes([0x11]) * 32, bytes(range(0, 32)), bytes(range(32, 64))
    assert auth_mac(key, sha, 0, 1, n0, n1).hex() == "0b6a60b9e23cdea6f335fed7434b427425bab66ce1d83246c35301ba4f75f111"
    assert auth_mac(key, sha, 1, 0, n1, n0).hex() == "64f4d8f2ae361e365417c2f3d01b5ba15e1176b924abbe99c23c74334a980c7b"
    with pytest.raises(ValueError, match="at least 16 bytes, received 15"):
        check_key(b"x" * 15)


def _patch(data: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


VECTORS = json.loads((Path(__file__).resolve().parents[2] / "export" / "vectors" / "frames.json").read_text())


def test_shared_vectors_hold_the_spec_values():
    assert bytes.fromhex(VECTORS["worked_example"]["header_hex"]) == WORKED
    h = VECTORS["hmac"]
    args = (bytes.fromhex(h["graph_sha256_hex"]), bytes.fromhex(h["nonce_0_hex"]), bytes.fromhex(h["nonce_1_hex"]))
    key = h["key_ascii"].encode("ascii")
    assert auth_mac(key, args[0], 0, 1, args[1], args[2]).hex() == h["mac_0_to_1_hex"]
    assert auth_mac(key, args[0], 1, 0, args[2], args[1]).hex() == h["mac_1_to_0_hex"]


def test_checked_in_vectors_are_what_the_generator_writes():
    import runpy

    generator = runpy.run_path(str(Path(__file__).resolve().parents[2] / "export" / "vectors" / "make_frames.py"))
    assert generator["build"]() == VECTORS, "run python export/vectors/make_frames.py"


@pytest.mark.parametrize("case", VECTORS["bad_headers"], ids=lambda c: c["name"])
def test_each_bad_header_gets_its_code(case):
    context = VECTORS["context"]
    expected = {t["tensor_id"]: TensorSpec("t", t["dtype"], tuple(t["shape"])) for t in context["expected_tensors"]}
    with pytest.raises(FrameError) as e:
        check_header(bytes.fromhex(case["header_hex"]), ALL, expected, peer_is_input=context["peer_is_input"],
                     max_frame_bytes=context["max_frame_bytes"])
    assert e.value.code == ErrorCode[case["error"]] == case["error_code"]


def test_state_and_control_frame_rules():
    heartbeat = encode_header(Header(type=FrameType.HEARTBEAT))
    assert check_header(heartbeat, ALL).type == FrameType.HEARTBEAT
    with pytest.raises(FrameError) as e:  # TENSOR before the handshake completed
        check_header(WORKED, (FrameType.HELLO, FrameType.ERROR), SPEC, ready=False)
    assert e.value.code == ErrorCode.UNEXPECTED_FRAME
    cancel = encode_header(Header(type=FrameType.CANCEL, request_id=5))
    with pytest.raises(FrameError) as e:
        check_header(cancel, ALL, peer_is_input=False)
    assert e.value.code == ErrorCode.UNEXPECTED_FRAME
    assert check_header(cancel, ALL, peer_is_input=True).request_id == 5
    with pytest.raises(FrameError) as e:  # a control frame with a tensor id
        check_header(_patch(heartbeat, 12, "<I", 3), ALL)
    assert e.value.code == ErrorCode.BAD_HEADER
    with pytest.raises(FrameError) as e:  # AUTH is exactly 32 bytes
        check_header(encode_header(Header(type=FrameType.AUTH, payload_len=31)), ALL)
    assert e.value.code == ErrorCode.BAD_PAYLOAD
    big_error = encode_header(Header(type=FrameType.ERROR, payload_len=1033))
    with pytest.raises(FrameError) as e:
        check_header(big_error, ALL, ready=False)
    assert e.value.code == ErrorCode.BAD_PAYLOAD
    with pytest.raises(FrameError) as e:  # WebSocket: message length must equal the frame's
        check_header(WORKED, ALL, SPEC, message_len=64 + 587)
    assert e.value.code == ErrorCode.BAD_LENGTH
    with pytest.raises(FrameError) as e:
        check_header(WORKED, ALL, SPEC, max_frame_bytes=64 + 587)
    assert e.value.code == ErrorCode.TOO_LARGE
    assert MAX_FRAME_BYTES == 67_108_864


def test_hello_and_error_payloads_round_trip():
    hello = Hello(bytes(range(32)), bytes(range(32, 64)), 1, 0, "0.5+0.3+0.2")
    frame = encode_hello(hello)
    header = check_header(frame[:64], ALL, ready=False)
    assert header.payload_len == 69 + len("0.5+0.3+0.2") == len(frame) - 64
    assert decode_hello(frame[64:]) == hello
    with pytest.raises(FrameError) as e:
        decode_hello(frame[64:-1])
    assert e.value.code == ErrorCode.BAD_PAYLOAD
    frame = encode_error(ErrorCode.BAD_SHAPE, "dims differ: \u00e9", tensor_id=7, request_id=3)
    header = check_header(frame[:64], ALL)
    assert header.request_id == 3
    assert decode_error(frame[64:]) == (ErrorCode.BAD_SHAPE, 7, "dims differ: \u00e9")
    long = encode_error(ErrorCode.STAGE_FAILED, "\u00e9" * 600)  # 1200 bytes of UTF-8, cut whole
    code, tensor_id, message = decode_error(long[64:])
    assert tensor_id is None and message == "\u00e9" * 512
    with pytest.raises(FrameError) as e:
        decode_error(long[64:-1])
    assert e.value.code == ErrorCode.BAD_PAYLOAD


def test_float32_payload_is_little_endian_c_order():
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    frame = tensor_frame(4, 9, np.asfortranarray(x), "float32")
    assert frame[64:] == x.astype("<f4").tobytes()
    spec = {4: TensorSpec("x", "float32", (1, 2, 3))}
    assert check_header(frame[:64], ALL, spec).dims == (1, 2, 3)


_DTYPE_NAMES = {None: 0, "float32": 1, "int8": 2}


@pytest.mark.parametrize("case", VECTORS["good_frames"], ids=lambda c: c["name"])
def test_each_good_frame_decodes_to_its_fields_and_encodes_back(case):
    frame, fields = bytes.fromhex(case["frame_hex"]), case["fields"]
    assert len(frame) == 64 + fields["payload_len"]
    tensor = fields["type"] == "TENSOR"
    expected = {fields["tensor_id"]: TensorSpec("t", fields["dtype"], tuple(fields["shape"]))} if tensor else None
    header = check_header(frame[:64], ALL, expected, peer_is_input=True)
    assert (header.type, header.flags, header.dtype, header.tensor_id, header.payload_len, header.request_id,
            list(header.dims)) == (FrameType[fields["type"]], fields["flags"], _DTYPE_NAMES[fields["dtype"]],
                                   fields["tensor_id"], fields["payload_len"], fields["request_id"], fields["shape"])
    assert encode_header(header) == frame[:64]
    payload = frame[64:]
    if tensor:
        wire = np.frombuffer(payload, "<f4" if fields["dtype"] == "float32" else "i1").reshape(fields["shape"])
        assert tensor_frame(fields["tensor_id"], fields["request_id"], wire, fields["dtype"]) == frame
    elif header.type == FrameType.HELLO:
        assert encode_hello(decode_hello(payload)) == frame
    elif header.type == FrameType.ERROR:
        code, tensor_id, message = decode_error(payload)
        assert encode_error(code, message, tensor_id, request_id=header.request_id) == frame


@pytest.mark.parametrize("case", VECTORS["error_payloads"], ids=lambda c: f"code_{c['code']}")
def test_error_payload_vectors(case):
    payload = bytes.fromhex(case["payload_hex"])
    assert decode_error(payload) == (case["code"], case["tensor_id"], case["message"])
    assert encode_error(case["code"], case["message"], case["tensor_id"])[64:] == payload


@pytest.mark.parametrize("case", VECTORS["hello_payloads"], ids=lambda c: c["switch"][:16])
def test_hello_payload_vectors(case):
    hello = Hello(bytes.fromhex(case["graph_sha256_hex"]), bytes.fromhex(case["nonce_hex"]), case["device"],
                  case["peer_device"], case["switch"])
    payload = bytes.fromhex(case["payload_hex"])
    assert decode_hello(payload) == hello
    assert encode_hello(hello)[64:] == payload


@pytest.mark.parametrize("case", VECTORS["bad_payloads"], ids=lambda c: c["name"])
def test_each_bad_payload_gets_bad_payload(case):
    decode = {"HELLO": decode_hello, "ERROR": decode_error}[case["type"]]
    with pytest.raises(FrameError) as e:
        decode(bytes.fromhex(case["payload_hex"]))
    assert e.value.code == ErrorCode[case["error"]] == case["error_code"]
