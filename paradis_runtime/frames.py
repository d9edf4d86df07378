"""The wire frames of ``export/FRAME_FORMAT.md`` (version 1), byte for byte.

A frame is a 64-byte little-endian header and ``payload_len`` payload bytes.
This module encodes and decodes headers and the control payloads (HELLO,
AUTH, ERROR), computes the handshake MAC, and validates a received header in
the order the spec's section 6 gives, so that the first failure gets the
specified code and nothing is allocated for a payload before every header
check passed. It holds no sockets and no connection state: a peer passes in
what the state decides (which frame types are allowed now, which tensors it
expects from this peer).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

__all__ = [
    "MAGIC", "VERSION", "HEADER_LEN", "MAX_FRAME_BYTES", "MAX_REQUEST_ID", "NO_TENSOR",
    "FrameType", "ErrorCode", "DTYPE_CODES", "FrameError", "Header", "TensorSpec", "Hello",
    "encode_header", "decode_header", "check_header", "tensor_frame", "encode_hello", "decode_hello",
    "auth_mac", "check_key", "encode_error", "decode_error",
]

MAGIC = b"PRDS"
VERSION = 1
HEADER_LEN = 64
# '<4sBBHHBBIQQ6I8x': magic, version, type, flags, header_len, dtype, rank,
# tensor_id, payload_len, request_id, dims[6], 8 reserved bytes.
_HEADER = struct.Struct("<4sBBHHBBIQQ6I8s")
assert _HEADER.size == HEADER_LEN
MAX_FRAME_BYTES = 64 * 1024 * 1024  # default cap, header included
MAX_REQUEST_ID = 2**53 - 1  # JavaScript holds request ids as a Number
NO_TENSOR = 0xFFFFFFFF  # ERROR's tensor_id when none is concerned
_PRE_READY_PAYLOAD = 1032  # HELLO <= 324, ERROR <= 1032 before a connection is ready
_AUTH_LABEL = b"PRDS-AUTH-1"
MIN_KEY_BYTES = 16


class FrameType(enum.IntEnum):
    TENSOR = 1
    HELLO = 2
    AUTH = 3
    ERROR = 4
    HEARTBEAT = 5
    CANCEL = 6


class ErrorCode(enum.IntEnum):
    BAD_MAGIC = 1
    UNSUPPORTED_VERSION = 2
    BAD_HEADER = 3
    BAD_TYPE = 4
    BAD_FLAGS = 5
    TOO_LARGE = 6
    UNEXPECTED_FRAME = 7
    BAD_PAYLOAD = 8
    GRAPH_MISMATCH = 9
    BAD_DEVICE = 10
    AUTH_FAILED = 11
    HANDSHAKE_TIMEOUT = 12
    UNKNOWN_TENSOR = 13
    BAD_DTYPE = 14
    BAD_SHAPE = 15
    BAD_LENGTH = 16
    BAD_REQUEST_ID = 17
    DUPLICATE_TENSOR = 18
    DEVICE_IN_USE = 19
    SHUTTING_DOWN = 64
    STAGE_FAILED = 128
    OVERLOADED = 129
    DEADLINE_EXCEEDED = 130


# Graph dtype -> (wire code, itemsize, numpy dtype on the wire).
DTYPE_CODES = {"float32": (1, 4, np.dtype("<f4")), "int8": (2, 1, np.dtype("i1"))}

# §3: (lowest, highest) request_id and payload_len per non-TENSOR type.
_REQUEST_RANGE = {
    FrameType.TENSOR: (1, MAX_REQUEST_ID), FrameType.HELLO: (0, 0), FrameType.AUTH: (0, 0),
    FrameType.ERROR: (0, MAX_REQUEST_ID), FrameType.HEARTBEAT: (0, 0), FrameType.CANCEL: (1, MAX_REQUEST_ID),
}
_PAYLOAD_RANGE = {
    FrameType.HELLO: (70, 324), FrameType.AUTH: (32, 32), FrameType.ERROR: (8, 1032),
    FrameType.HEARTBEAT: (0, 0), FrameType.CANCEL: (0, 0),
}


class FrameError(ValueError):
    """A frame that breaks the spec: ``code`` is what the ERROR frame carries."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.detail = message


@dataclass(frozen=True)
class Header:
    type: int
    payload_len: int = 0
    request_id: int = 0
    tensor_id: int = 0
    dtype: int = 0
    dims: tuple = ()
    flags: int = 0
    version: int = VERSION


@dataclass(frozen=True)
class TensorSpec:
    """What the graph says a TENSOR frame from a given peer must be."""

    name: str
    dtype: str  # "float32" or "int8"
    shape: tuple

    @property
    def payload_len(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * DTYPE_CODES[self.dtype][1]


def encode_header(h: Header) -> bytes:
    """The 64 header bytes of ``h`` (no validation beyond what struct enforces)."""
    if len(h.dims) > 6:
        raise ValueError(f"dims holds at most 6 entries (rank <= 6), received {h.dims!r}.")
    dims = tuple(int(d) for d in h.dims) + (0,) * (6 - len(h.dims))
    return _HEADER.pack(MAGIC, h.version, int(h.type), h.flags, HEADER_LEN, h.dtype, len(h.dims), h.tensor_id,
                        h.payload_len, h.request_id, *dims, bytes(8))


def _unpack(data: bytes) -> tuple:
    """(magic, version, type, flags, header_len, dtype, rank, tensor_id,
    payload_len, request_id, dims (6,), reserved) of the first 64 bytes."""
    if len(data) < HEADER_LEN:
        raise FrameError(ErrorCode.BAD_HEADER, f"a header is {HEADER_LEN} bytes, received {len(data)}")
    fields = _HEADER.unpack_from(data)
    return fields[:10] + (tuple(fields[10:16]), fields[16])


def decode_header(data: bytes) -> Header:
    """Unpacks 64 bytes into a Header without checking them (``check_header`` does)."""
    _, version, type_, flags, _, dtype, rank, tensor_id, payload_len, request_id, dims, _ = _unpack(data)
    return Header(type=type_, payload_len=payload_len, request_id=request_id, tensor_id=tensor_id, dtype=dtype,
                  dims=dims[: rank] if rank <= 6 else dims, flags=flags, version=version)


def check_header(
    data: bytes,
    allowed: Sequence[int],
    expected: Optional[Mapping[int, TensorSpec]] = None,
    peer_is_input: bool = False,
    ready: bool = True,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    message_len: Optional[int] = None,
) -> Header:
    """Validates a received header in §6's order; raises FrameError with the
    first failing check's code, before anything is read of the payload.

    Args:
        data: the header bytes received (a WebSocket message may be longer:
            pass the whole message and its length as ``message_len``).
        allowed: the frame types the connection's state allows now.
        expected: tensor id -> TensorSpec this peer may send (TENSOR frames).
        peer_is_input: the peer is the graph's input device (may CANCEL).
        ready: the handshake completed (before it, payloads cap at 1032 B).
        max_frame_bytes: the cap on ``64 + payload_len``.
        message_len: WebSocket: the message's length, which must equal the frame's.
    """
    # 1. exactly 64 header bytes
    (magic, version, type_, flags, header_len, dtype, rank, tensor_id, payload_len, request_id, dims,
     reserved) = _unpack(data)
    # 2. magic, version, header_len, reserved
    if magic != MAGIC:
        raise FrameError(ErrorCode.BAD_MAGIC, f"magic is {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise FrameError(ErrorCode.UNSUPPORTED_VERSION, f"version {version}, this peer speaks {VERSION}")
    if header_len != HEADER_LEN or reserved != bytes(8):
        raise FrameError(ErrorCode.BAD_HEADER, f"header_len {header_len} (expected 64) or reserved bytes set")
    # 3. type, flags
    if type_ not in FrameType._value2member_map_:
        raise FrameError(ErrorCode.BAD_TYPE, f"frame type {type_} is not 1..6")
    type_ = FrameType(type_)
    if flags:
        raise FrameError(ErrorCode.BAD_FLAGS, f"flags 0x{flags:04x}: version 1 defines none")
    # 4. size cap (unsigned 64-bit compare: Python ints do not wrap)
    if HEADER_LEN + payload_len > max_frame_bytes:
        raise FrameError(ErrorCode.TOO_LARGE, f"frame of {HEADER_LEN + payload_len} bytes, cap {max_frame_bytes}")
    if message_len is not None and message_len != HEADER_LEN + payload_len:
        raise FrameError(ErrorCode.BAD_LENGTH, f"message of {message_len} bytes for a frame of "
                                               f"{HEADER_LEN + payload_len}")
    # 5. allowed in this state; CANCEL only from the input device
    if type_ not in allowed or (type_ is FrameType.CANCEL and not peer_is_input):
        raise FrameError(ErrorCode.UNEXPECTED_FRAME, f"{type_.name} is not allowed here")
    # 6. request id range; zero fields and payload range of control frames
    low, high = _REQUEST_RANGE[type_]
    if not low <= request_id <= high:
        raise FrameError(ErrorCode.BAD_REQUEST_ID, f"request_id {request_id} outside {low}..{high} for {type_.name}")
    if type_ is not FrameType.TENSOR:
        if dtype or rank or tensor_id or any(dims):
            raise FrameError(ErrorCode.BAD_HEADER, f"{type_.name}: dtype, rank, tensor_id and dims must be 0")
        low, high = _PAYLOAD_RANGE[type_]
        if not ready:
            high = min(high, _PRE_READY_PAYLOAD)
        if not low <= payload_len <= high:
            raise FrameError(ErrorCode.BAD_PAYLOAD, f"{type_.name} payload of {payload_len} bytes, "
                                                    f"expected {low}..{high}")
        return Header(type=type_, payload_len=payload_len, request_id=request_id)
    # 7. TENSOR against the graph
    spec = (expected or {}).get(tensor_id)
    if spec is None:
        raise FrameError(ErrorCode.UNKNOWN_TENSOR, f"tensor id {tensor_id} is not expected from this peer")
    if dtype != DTYPE_CODES[spec.dtype][0]:
        raise FrameError(ErrorCode.BAD_DTYPE, f"dtype code {dtype}, the graph's {spec.name} is {spec.dtype}")
    if rank != len(spec.shape) or dims[:rank] != tuple(spec.shape) or any(dims[rank:]):
        raise FrameError(ErrorCode.BAD_SHAPE, f"rank {rank} dims {list(dims)}, the graph's {spec.name} is "
                                              f"{list(spec.shape)}")
    if payload_len != spec.payload_len:
        raise FrameError(ErrorCode.BAD_LENGTH, f"payload_len {payload_len}, {spec.name} needs {spec.payload_len}")
    return Header(type=type_, payload_len=payload_len, request_id=request_id, tensor_id=tensor_id, dtype=dtype,
                  dims=tuple(spec.shape))


def tensor_frame(tensor_id: int, request_id: int, array: np.ndarray, dtype: str) -> bytes:
    """One TENSOR frame (header and payload, one buffer for one write)."""
    code, _, wire = DTYPE_CODES[dtype]
    array = np.asarray(array)
    if array.ndim < 1 or array.ndim > 6:
        raise ValueError(f"a TENSOR frame carries rank 1..6, received shape {array.shape}.")
    payload = np.ascontiguousarray(array, dtype=wire).tobytes()
    header = encode_header(Header(type=FrameType.TENSOR, payload_len=len(payload), request_id=request_id,
                                  tensor_id=tensor_id, dtype=code, dims=array.shape))
    return header + payload


@dataclass(frozen=True)
class Hello:
    graph_sha256: bytes
    nonce: bytes
    device: int
    peer_device: int
    switch: str


def encode_hello(hello: Hello) -> bytes:
    """A whole HELLO frame."""
    name = hello.switch.encode("ascii")
    if not 1 <= len(name) <= 255 or len(hello.graph_sha256) != 32 or len(hello.nonce) != 32:
        raise ValueError(f"HELLO needs a 32-byte hash, a 32-byte nonce and a 1..255-byte switch, received "
                         f"{len(hello.graph_sha256)}, {len(hello.nonce)} and {hello.switch!r}.")
    payload = (hello.graph_sha256 + hello.nonce + struct.pack("<HHB", hello.device, hello.peer_device, len(name))
               + name)
    return encode_header(Header(type=FrameType.HELLO, payload_len=len(payload))) + payload


def decode_hello(payload: bytes) -> Hello:
    if len(payload) < 70 or len(payload) != 69 + payload[68]:
        raise FrameError(ErrorCode.BAD_PAYLOAD, f"HELLO payload of {len(payload)} bytes does not match its "
                                                "switch_len")
    device, peer_device, n = struct.unpack_from("<HHB", payload, 64)
    try:
        switch = payload[69:69 + n].decode("ascii")
    except UnicodeDecodeError:
        raise FrameError(ErrorCode.BAD_PAYLOAD, "HELLO switch name is not ASCII") from None
    return Hello(bytes(payload[:32]), bytes(payload[32:64]), device, peer_device, switch)


def check_key(key: bytes) -> bytes:
    """The shared secret as bytes; refuses one shorter than 16 bytes."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the session key must be at least {MIN_KEY_BYTES} bytes, received {len(key)}; "
                         "32 random bytes written as hex are recommended.")
    return key


def auth_mac(key: bytes, graph_sha256: bytes, sender: int, receiver: int, nonce_sender: bytes,
             nonce_receiver: bytes) -> bytes:
    """HMAC-SHA256(K, "PRDS-AUTH-1" | sha256 | u16(X) | u16(Y) | nonce_X | nonce_Y), X the AUTH's sender."""
    message = _AUTH_LABEL + graph_sha256 + struct.pack("<HH", sender, receiver) + nonce_sender + nonce_receiver
    return hmac.new(check_key(key), message, hashlib.sha256).digest()


def encode_error(code: int, message: str = "", tensor_id: Optional[int] = None, request_id: int = 0) -> bytes:
    """A whole ERROR frame; the message is cut to 1024 UTF-8 bytes."""
    text = message.encode("utf-8")[:1024]
    text = text.decode("utf-8", errors="ignore").encode("utf-8")  # never cut inside a character
    payload = struct.pack("<HHI", int(code), len(text), NO_TENSOR if tensor_id is None else tensor_id) + text
    return encode_header(Header(type=FrameType.ERROR, payload_len=len(payload), request_id=request_id)) + payload


def decode_error(payload: bytes) -> tuple:
    """(code, tensor_id or None, message) of an ERROR payload."""
    if len(payload) < 8:
        raise FrameError(ErrorCode.BAD_PAYLOAD, f"ERROR payload of {len(payload)} bytes, at least 8")
    code, n, tensor_id = struct.unpack_from("<HHI", payload)
    if n > 1024 or len(payload) != 8 + n:
        raise FrameError(ErrorCode.BAD_PAYLOAD, f"ERROR message_len {n} for a payload of {len(payload)} bytes")
    return code, None if tensor_id == NO_TENSOR else tensor_id, payload[8:].decode("utf-8", errors="replace")
