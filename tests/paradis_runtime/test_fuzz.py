"""Fuzzing the frame decoder (issue 13): random and mutated frames against an
oracle written from export/FRAME_FORMAT.md, in process and against a live peer.

* In process: valid frames of every type, built with the codec, are mutated
  (bit flips, byte overwrites per field, boundary values per field, shape and
  rank mismatches, truncation, pure random bytes, the magic kept with the rest
  random) and given to ``check_header`` in several connection states (ready or
  not, peer is the input device or not, small caps, WebSocket message
  lengths). ``check_header`` must return a Header exactly when the oracle says
  the header is valid, and otherwise raise FrameError with the oracle's code;
  any other exception is a crash. The HELLO and ERROR payload decoders get
  the same treatment (only success or FrameError(BAD_PAYLOAD)).
* Live: one real ``paradis peer`` process serves a coordinator while raw
  connections each send it one mutated frame (a HELLO before the handshake,
  or a TENSOR after a correct handshake). Each bad frame must get one ERROR
  with the oracle's code and then the end of the stream; a frame the oracle
  calls valid must be served (the connection goes on to the next check). The
  coordinator's predictions stay bit-equal throughout and the peer survives.

The oracle (``header_oracle`` and the payload oracles) reads only the spec:
it unpacks the 64 bytes with ``struct`` and applies section 6 steps 1-7 in
order, with its own tables of sections 2-4; it never calls frames.py. It is
itself checked against the shared vectors (export/vectors/frames.json), and
``test_the_fuzzer_catches_a_wrong_oracle`` checks that the fuzzer tells a
slightly wrong oracle from the right one (a fuzzer that cannot fail is no test).

The generator is a seeded numpy Generator, one per case (``default_rng([seed,
index])``), not hypothesis or atheris: neither is installed in the venv, and a
seeded generator needs no new dependency. A disagreement names its seed,
index, context and bytes in hex, and reruns exactly.

Sizes: CI runs 50,000 frames in process and 150 live connections; the
``large`` tests run 100,000 and 2,000. PARADIS_FUZZ_COUNT and
PARADIS_FUZZ_LIVE_COUNT override the counts of whichever tests run.
``bench/fuzz.py`` runs the same code at full size and writes docs/results/fuzz.*.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import os
import select
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

from paradis_runtime.frames import (
    ErrorCode, FrameError, FrameType, Header, Hello, TensorSpec, auth_mac, check_header, decode_error, decode_hello,
    encode_error, encode_header, encode_hello, tensor_frame,
)

REPO = Path(__file__).resolve().parents[2]
FUZZ_COUNT = int(os.environ.get("PARADIS_FUZZ_COUNT", 50_000))
LARGE_COUNT = int(os.environ.get("PARADIS_FUZZ_COUNT", 100_000))
LIVE_COUNT = int(os.environ.get("PARADIS_FUZZ_LIVE_COUNT", 150))
LARGE_LIVE_COUNT = int(os.environ.get("PARADIS_FUZZ_LIVE_COUNT", 2_000))
SOCKET_TIMEOUT = 5.0

# ==== the oracle: FRAME_FORMAT.md sections 2-6, written from the text alone ==============================

# §6 "ERROR payload" table (the fatal codes a header or a handshake can get).
CODE = {
    "BAD_MAGIC": 1, "UNSUPPORTED_VERSION": 2, "BAD_HEADER": 3, "BAD_TYPE": 4, "BAD_FLAGS": 5, "TOO_LARGE": 6,
    "UNEXPECTED_FRAME": 7, "BAD_PAYLOAD": 8, "GRAPH_MISMATCH": 9, "BAD_DEVICE": 10, "AUTH_FAILED": 11,
    "HANDSHAKE_TIMEOUT": 12, "UNKNOWN_TENSOR": 13, "BAD_DTYPE": 14, "BAD_SHAPE": 15, "BAD_LENGTH": 16,
    "BAD_REQUEST_ID": 17, "DUPLICATE_TENSOR": 18, "DEVICE_IN_USE": 19,
}
NAME = {v: k for k, v in CODE.items()}
# §3 frame types.
TENSOR, HELLO, AUTH, ERROR, HEARTBEAT, CANCEL = 1, 2, 3, 4, 5, 6
TYPE_NAME = {1: "TENSOR", 2: "HELLO", 3: "AUTH", 4: "ERROR", 5: "HEARTBEAT", 6: "CANCEL"}
READY_TYPES = frozenset({TENSOR, ERROR, HEARTBEAT, CANCEL})  # §5: after ready, HELLO and AUTH are not allowed
# §4 dtype codes: graph dtype -> (code, itemsize).
DTYPE = {"float32": (1, 4), "int8": (2, 1)}
# §2: '<4sBBHHBBIQQ6I8x', with the reserved bytes kept to check them.
LAYOUT = struct.Struct("<4sBBHHBBIQQ6I8s")
# §2 offsets and sizes, for the field-aware mutations.
FIELDS = {
    "magic": (0, 4), "version": (4, 1), "type": (5, 1), "flags": (6, 2), "header_len": (8, 2), "dtype": (10, 1),
    "rank": (11, 1), "tensor_id": (12, 4), "payload_len": (16, 8), "request_id": (24, 8), "dims": (32, 24),
    "reserved": (56, 8),
}


@dataclass(frozen=True)
class Rules:
    """The numbers and the order of sections 3 and 6. The oracle is
    ``header_oracle(..., rules=SPEC)``; other Rules are deliberately wrong
    oracles, used to show that the fuzzer notices a wrong code."""

    max_request_id: int = 2**53 - 1
    # §3: (lowest, highest) request_id and payload_len per type.
    request_range: tuple = ((TENSOR, 1, None), (HELLO, 0, 0), (AUTH, 0, 0), (ERROR, 0, None), (HEARTBEAT, 0, 0),
                            (CANCEL, 1, None))  # None = max_request_id
    payload_range: tuple = ((HELLO, 70, 324), (AUTH, 32, 32), (ERROR, 8, 1032), (HEARTBEAT, 0, 0), (CANCEL, 0, 0))
    pre_ready_cap: int = 1032
    # §6 steps 2-7, one name per check, in the spec's order.
    order: tuple = ("magic", "version", "header", "type", "flags", "size", "length", "state", "request_id",
                    "zeros", "payload", "tensor", "dtype", "shape", "tensor_length")


SPEC = Rules()


@dataclass(frozen=True)
class Context:
    """What a receiver knows when it checks a header: what check_header is given."""

    name: str
    allowed: frozenset
    expected: dict  # tensor id -> (graph dtype, shape) this peer may send
    peer_is_input: bool
    ready: bool
    max_frame_bytes: int = 67_108_864  # §6 step 4 default, 64 MiB

    def specs(self) -> dict:
        return {i: TensorSpec(f"t{i}", d, tuple(s)) for i, (d, s) in self.expected.items()}


def _fields(data: bytes) -> dict:
    (magic, version, type_, flags, header_len, dtype, rank, tensor_id, payload_len, request_id, *rest) = \
        LAYOUT.unpack_from(data)
    return dict(magic=magic, version=version, type=type_, flags=flags, header_len=header_len, dtype=dtype,
                rank=rank, tensor_id=tensor_id, payload_len=payload_len, request_id=request_id,
                dims=tuple(rest[:6]), reserved=rest[6])


def _step(name: str, f: dict, ctx: Context, message_len, rules: Rules) -> Optional[int]:
    """One check of §6; the code it fails with, or None."""
    t = f["type"]
    if name == "magic":  # step 2
        return CODE["BAD_MAGIC"] if f["magic"] != b"PRDS" else None
    if name == "version":
        return CODE["UNSUPPORTED_VERSION"] if f["version"] != 1 else None
    if name == "header":
        return CODE["BAD_HEADER"] if f["header_len"] != 64 or f["reserved"] != bytes(8) else None
    if name == "type":  # step 3
        return CODE["BAD_TYPE"] if t not in TYPE_NAME else None
    if name == "flags":
        return CODE["BAD_FLAGS"] if f["flags"] != 0 else None
    if name == "size":  # step 4, as integers (no u64 wrap-around)
        return CODE["TOO_LARGE"] if 64 + f["payload_len"] > ctx.max_frame_bytes else None
    if name == "length":  # step 4, WebSocket only
        return CODE["BAD_LENGTH"] if message_len is not None and message_len != 64 + f["payload_len"] else None
    if name == "state":  # step 5
        return CODE["UNEXPECTED_FRAME"] if t not in ctx.allowed or (t == CANCEL and not ctx.peer_is_input) else None
    if name == "request_id":  # step 6
        for kind, low, high in rules.request_range:
            if kind == t and not low <= f["request_id"] <= (rules.max_request_id if high is None else high):
                return CODE["BAD_REQUEST_ID"]
        return None
    if t != TENSOR:
        if name == "zeros":
            return CODE["BAD_HEADER"] if f["dtype"] or f["rank"] or f["tensor_id"] or any(f["dims"]) else None
        if name == "payload":
            for kind, low, high in rules.payload_range:
                if kind == t:
                    if not ctx.ready:
                        high = min(high, rules.pre_ready_cap)
                    return CODE["BAD_PAYLOAD"] if not low <= f["payload_len"] <= high else None
        return None
    # step 7, TENSOR only
    spec = ctx.expected.get(f["tensor_id"])
    if name == "tensor":
        return CODE["UNKNOWN_TENSOR"] if spec is None else None
    if spec is None:
        return None
    dtype, shape = spec
    if name == "dtype":
        return CODE["BAD_DTYPE"] if f["dtype"] != DTYPE[dtype][0] else None
    if name == "shape":
        rank, dims = f["rank"], f["dims"]
        ok = rank == len(shape) and list(dims[:rank]) == list(shape) and not any(dims[rank:])
        return None if ok else CODE["BAD_SHAPE"]
    if name == "tensor_length":
        return CODE["BAD_LENGTH"] if f["payload_len"] != int(np.prod(shape)) * DTYPE[dtype][1] else None
    return None


def header_oracle(data: bytes, ctx: Context, message_len: Optional[int] = None, rules: Rules = SPEC) -> Optional[int]:
    """The code §6 gives the first failing check of ``data`` (a header, or a
    whole WebSocket message of ``message_len`` bytes), or None if valid."""
    if len(data) < 64:  # step 1
        return CODE["BAD_HEADER"]
    f = _fields(data)
    for name in rules.order:
        code = _step(name, f, ctx, message_len, rules)
        if code:
            return code
    return None


def hello_oracle(payload: bytes):
    """§5 HELLO layout: (sha256, nonce, device, peer_device, switch), or
    BAD_PAYLOAD when the length disagrees with switch_len (1..255) or the
    switch is not ASCII."""
    if len(payload) < 70:
        return CODE["BAD_PAYLOAD"]
    n = payload[68]
    if n < 1 or len(payload) != 69 + n or any(b >= 0x80 for b in payload[69:]):
        return CODE["BAD_PAYLOAD"]
    device, peer_device = struct.unpack_from("<HH", payload, 64)
    return bytes(payload[:32]), bytes(payload[32:64]), device, peer_device, bytes(payload[69:]).decode("ascii")


def error_oracle(payload: bytes):
    """§6 ERROR layout: (code, tensor_id or None, message), or BAD_PAYLOAD."""
    if len(payload) < 8:
        return CODE["BAD_PAYLOAD"]
    code, n, tensor_id = struct.unpack_from("<HHI", payload)
    if n > 1024 or len(payload) != 8 + n:
        return CODE["BAD_PAYLOAD"]
    return code, None if tensor_id == 0xFFFFFFFF else tensor_id, bytes(payload[8:]).decode("utf-8", "replace")


# ==== contexts and base frames ==========================================================================

# Tensor specs a receiver might expect: rank 1 to 6, both dtypes, a large id.
SPECS_INPUT = {0: ("float32", (1, 28, 28, 1)), 13: ("float32", (1, 28, 28, 1)), 32: ("float32", (1, 28, 28, 2)),
               7: ("int8", (1, 14, 14, 3)), 900: ("int8", (5,)), 0xFFFFFFFE: ("float32", (1, 2, 3, 4, 5, 6))}
SPECS_PEER = {7: ("int8", (1, 14, 14, 3)), 8: ("int8", (1, 7, 7, 16)), 65: ("float32", (1, 10)),
              66: ("float32", (1, 28, 28, 2))}  # 66 is over the 4 KiB cap below

CONTEXTS = (
    Context("ready, peer is the input device", READY_TYPES, SPECS_INPUT, peer_is_input=True, ready=True),
    Context("ready, peer is not the input device, 4 KiB cap", READY_TYPES, SPECS_PEER, peer_is_input=False,
            ready=True, max_frame_bytes=4096),
    Context("listener before HELLO", frozenset({HELLO, ERROR}), {}, peer_is_input=False, ready=False),
    Context("dialer awaiting AUTH", frozenset({AUTH, ERROR}), SPECS_INPUT, peer_is_input=True, ready=False),
    Context("every type allowed (the shared vectors' state)", frozenset(TYPE_NAME), SPECS_INPUT,
            peer_is_input=False, ready=True),
    Context("every type allowed, not ready, 2 KiB cap", frozenset(TYPE_NAME), SPECS_PEER, peer_is_input=True,
            ready=False, max_frame_bytes=2048),
)


def _ascii(rng, n: int) -> str:
    return bytes(rng.integers(0x20, 0x7F, n, dtype=np.uint8)).decode("ascii")


def base_frame(rng, ctx: Context, kind: Optional[int] = None) -> bytes:
    """A valid frame of type ``kind`` (if None: mostly one the state allows), built with frames.py's encoders."""
    if kind is None:
        kind = int(rng.choice(sorted(ctx.allowed))) if rng.random() < 0.8 else int(rng.integers(1, 7))
    if kind == TENSOR and ctx.expected:
        ids = list(ctx.expected)
        tensor_id = ids[int(rng.integers(len(ids)))]
        dtype, shape = ctx.expected[tensor_id]
        rid = int(rng.integers(1, 2**53))
        return tensor_frame(tensor_id, rid, np.zeros(shape, np.float32), dtype)
    if kind == HELLO or (kind == TENSOR and not ctx.expected):
        return encode_hello(Hello(rng.bytes(32), rng.bytes(32), int(rng.integers(0, 65536)),
                                  int(rng.integers(0, 65536)), _ascii(rng, int(rng.integers(1, 256)))))
    if kind == AUTH:
        return encode_header(Header(type=FrameType.AUTH, payload_len=32)) + rng.bytes(32)
    if kind == ERROR:
        message = _ascii(rng, int(rng.integers(0, 40))) if rng.random() < 0.9 else "\u00e9" * 600
        tensor_id = None if rng.random() < 0.5 else int(rng.integers(0, 2**32 - 1))
        return encode_error(int(rng.integers(1, 256)), message, tensor_id, int(rng.integers(0, 2**53)))
    if kind == HEARTBEAT:
        return encode_header(Header(type=FrameType.HEARTBEAT))
    return encode_header(Header(type=FrameType.CANCEL, request_id=int(rng.integers(1, 2**53))))


# ==== mutations ==========================================================================================

def _put(buf: bytearray, name: str, value) -> None:
    offset, size = FIELDS[name]
    if isinstance(value, (bytes, bytearray)):
        buf[offset:offset + size] = bytes(value).ljust(size, b"\0")[:size]
    else:
        buf[offset:offset + size] = (int(value) % (1 << (8 * size))).to_bytes(size, "little")


def _get(buf: bytes, name: str) -> int:
    offset, size = FIELDS[name]
    return int.from_bytes(buf[offset:offset + size], "little")


def _boundaries(name: str, ctx: Context, buf: bytes) -> list:
    """Values a check of ``name`` turns on: 0, 1, the limits, one past them, the width's max, 2^53, 2^64-1."""
    lengths = sorted({int(np.prod(s)) * DTYPE[d][1] for d, s in ctx.expected.values()})
    cap = ctx.max_frame_bytes - 64
    shape_ranks = sorted({len(s) for _, s in ctx.expected.values()}) or [4]
    return {
        "magic": [b"PRDS", b"PRDT", b"prds", b"SDRP", b"GET ", b"\x16\x03\x01\x02", b"SSH-", b"{\"a\"", bytes(4),
                  b"\xff" * 4],
        "version": [0, 1, 2, 255],
        "type": [0, 1, 2, 3, 4, 5, 6, 7, 255],
        "flags": [0, 1, 0x8000, 0xFFFF],
        "header_len": [0, 63, 64, 65, 0xFFFF],
        "dtype": [0, 1, 2, 3, 255],
        "rank": sorted({0, 1, 6, 7, 255} | {r + d for r in shape_ranks for d in (-1, 0, 1)}),
        "tensor_id": sorted({0, 1, 2**32 - 2, 2**32 - 1} | {i + d for i in ctx.expected for d in (-1, 0, 1)}),
        "payload_len": sorted({0, 1, 7, 8, 9, 31, 32, 33, 69, 70, 71, 323, 324, 325, 1031, 1032, 1033, cap - 1, cap,
                               cap + 1, 2**32 - 1, 2**32, 2**53, 2**63, 2**64 - 64, 2**64 - 63, 2**64 - 1}
                              | {n + d for n in lengths for d in (-1, 0, 1)}),
        "request_id": [0, 1, 2, 2**32, 2**53 - 2, 2**53 - 1, 2**53, 2**53 + 1, 2**63, 2**64 - 1],
        "reserved": [bytes(8), b"\x01" + bytes(7), bytes(7) + b"\x80", b"\xff" * 8],
    }[name]


# The limits of §3 per type, for boundary values that fit the frame's own type.
_TYPE_PAYLOAD = {HELLO: (70, 324), AUTH: (32, 32), ERROR: (8, 1032), HEARTBEAT: (0, 0), CANCEL: (0, 0)}
_TYPE_REQUEST = {TENSOR: (1, 2**53 - 1), HELLO: (0, 0), AUTH: (0, 0), ERROR: (0, 2**53 - 1), HEARTBEAT: (0, 0),
                 CANCEL: (1, 2**53 - 1)}


def _type_boundaries(name: str, ctx: Context, buf: bytes) -> list:
    """payload_len and request_id at and one past the limits of the frame's current type."""
    kind = _get(buf, "type")
    if name == "payload_len":
        if kind == TENSOR:
            lengths = [int(np.prod(s)) * DTYPE[d][1] for d, s in ctx.expected.values()] or [0]
            return [n + d for n in lengths for d in (-1, 0, 1) if n + d >= 0]
        low, high = _TYPE_PAYLOAD.get(kind, (0, 0))
    elif name == "request_id":
        low, high = _TYPE_REQUEST.get(kind, (0, 0))
    else:
        return []
    return [v for v in (low - 1, low, low + 1, high - 1, high, high + 1) if v >= 0]


def _mutate_shape(rng, buf: bytearray, ctx: Context) -> None:
    """Rank and dims that disagree with the graph (or agree, to reach the later checks)."""
    shapes = [list(s) for _, s in ctx.expected.values()] or [[1, 28, 28, 1]]
    shape = shapes[int(rng.integers(len(shapes)))]
    choice = int(rng.integers(8))
    rank = len(shape)
    dims = shape + [0] * (6 - len(shape))
    if choice == 0:  # rank 7 (and every dim as the spec's shape)
        rank = 7
    elif choice == 1:  # rank one off
        rank += 1 if rng.random() < 0.5 else -1
    elif choice == 2:  # one dim one off
        i = int(rng.integers(len(shape)))
        dims[i] += 1 if rng.random() < 0.5 or dims[i] == 0 else -1
    elif choice == 3 and len(shape) < 6:  # a spare dim set
        dims[int(rng.integers(len(shape), 6))] = int(rng.integers(1, 2**32))
    elif choice == 4:  # dims permuted
        dims[:len(shape)] = list(rng.permutation(shape))
    elif choice == 5:  # a dim at u32 max
        dims[int(rng.integers(6))] = 2**32 - 1
    elif choice == 6:  # all zero
        rank, dims = 0, [0] * 6
    # choice 7 (and 3 at rank 6): the graph's shape, rank and dims exactly
    _put(buf, "rank", rank)
    buf[32:56] = struct.pack("<6I", *dims)


def mutate(rng, frame: bytes, ctx: Context) -> tuple:
    """(data, message_len, how): one case from a valid frame. ``data`` is the
    64 bytes a TCP receiver reads (fewer when truncated), or a whole WebSocket
    message whose length is ``message_len``."""
    buf = bytearray(frame[:64])
    how = []
    for _ in range(1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)):
        op = rng.choice(("valid", "bitflip", "byte", "boundary", "random_field", "shape", "type", "truncate",
                         "random", "magic_kept"),
                        p=(0.07, 0.12, 0.10, 0.33, 0.08, 0.10, 0.08, 0.04, 0.04, 0.04))
        how.append(str(op))
        if op == "bitflip":
            for bit in rng.integers(0, 64 * 8, int(rng.integers(1, 5))):
                buf[bit // 8] ^= 1 << (bit % 8)
        elif op == "byte":
            name = list(FIELDS)[int(rng.integers(len(FIELDS)))]
            offset, size = FIELDS[name]
            buf[offset + int(rng.integers(size))] = int(rng.integers(256))
            how[-1] += ":" + name
        elif op == "boundary":
            for _ in range(int(rng.integers(1, 4))):
                name = [n for n in FIELDS if n != "dims"][int(rng.integers(len(FIELDS) - 1))]
                values = (rng.random() < 0.5 and _type_boundaries(name, ctx, bytes(buf))
                          or _boundaries(name, ctx, bytes(buf)))
                _put(buf, name, values[int(rng.integers(len(values)))])
                how[-1] += ":" + name
        elif op == "random_field":
            name = list(FIELDS)[int(rng.integers(len(FIELDS)))]
            offset, size = FIELDS[name]
            buf[offset:offset + size] = rng.bytes(size)
            how[-1] += ":" + name
        elif op == "shape":
            _mutate_shape(rng, buf, ctx)
        elif op == "type":  # another valid type on this frame's fields
            _put(buf, "type", int(rng.integers(1, 7)))
        elif op == "random":
            buf = bytearray(rng.bytes(64))
        elif op == "magic_kept":
            buf = bytearray(b"PRDS" + rng.bytes(60))
        elif op == "truncate":
            return bytes(buf[:int(rng.integers(0, 64))]), None, "+".join(how)
    data = bytes(buf)
    if rng.random() < 0.15:  # a WebSocket message: header and payload, its length checked (§6 step 4)
        payload_len = _get(data, "payload_len")
        n = payload_len + int(rng.choice((0, 0, 0, -1, 1))) if payload_len <= 70_000 else int(rng.integers(4096))
        data += bytes(max(n, 0))
        return data, len(data), "+".join(how) + "+websocket"
    return data, None, "+".join(how)


def mutate_payload(rng, payload: bytes, kind: int) -> bytes:
    """A HELLO or ERROR payload: valid, bit-flipped, with its length byte(s) off, cut, extended or random."""
    buf = bytearray(payload)
    op = int(rng.integers(9))
    if op == 1 and buf:
        for bit in rng.integers(0, len(buf) * 8, int(rng.integers(1, 5))):
            buf[bit // 8] ^= 1 << (bit % 8)
    elif op == 2 and buf:  # the length field
        if kind == HELLO and len(buf) > 68:
            n = len(buf) - 69
            buf[68] = int(rng.choice((0, 1, max(n - 1, 0), min(n + 1, 255), 255, int(rng.integers(256)))))
        elif kind == ERROR and len(buf) >= 4:
            n = len(buf) - 8
            struct.pack_into("<H", buf, 2, int(rng.choice((0, max(n - 1, 0), n + 1, 1024, 1025, 65535,
                                                           int(rng.integers(65536))))))
    elif op == 3:
        buf = buf[:int(rng.integers(0, len(buf) + 1))]
    elif op == 4:
        buf += rng.bytes(int(rng.integers(1, 12)))
    elif op == 5:
        buf = bytearray(rng.bytes(int(rng.integers(0, 1100 if kind == ERROR else 400))))
    elif op == 6 and len(buf) > 69 - 61 * (kind == ERROR):  # a non-ASCII / invalid UTF-8 byte in the text
        start = 69 if kind == HELLO else 8
        buf[int(rng.integers(start, len(buf)))] = int(rng.integers(0x80, 0x100))
    elif op == 7 and len(buf) > 2:  # one byte anywhere
        buf[int(rng.integers(len(buf)))] = int(rng.integers(256))
    return bytes(buf)  # op 0 (and the ops that did not apply): unchanged


# ==== the in-process fuzzer ==============================================================================

@dataclass
class FuzzStats:
    frames: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)  # code name -> frames
    by_context: dict = field(default_factory=dict)  # context name -> {"accepted": n, "rejected": n}
    payloads: Counter = field(default_factory=Counter)  # "HELLO ok", "HELLO BAD_PAYLOAD", ... -> payloads
    mismatches: list = field(default_factory=list)  # the first ones: another code than the oracle's
    crashes: list = field(default_factory=list)  # the first ones: an exception other than FrameError
    n_mismatches: int = 0
    n_crashes: int = 0
    seconds: float = 0.0
    slowest_call_s: float = 0.0

    def keep(self, problem: dict, limit: int) -> None:
        crash = problem["kind"] == "crash"
        if crash:
            self.n_crashes += 1
        else:
            self.n_mismatches += 1
        bucket = self.crashes if crash else self.mismatches
        if len(bucket) < limit:
            bucket.append(problem)

    def report(self, limit: int = 5) -> str:
        return "\n".join(str(x) for x in (self.crashes + self.mismatches)[:limit])


def fuzz(count: int, seed: int = 0, oracle: Callable = header_oracle, contexts=CONTEXTS, payload_every: int = 2,
         keep: int = 20, watchdog_s: Optional[float] = None) -> FuzzStats:
    """``count`` mutated headers through check_header (the contexts in turn),
    and one HELLO or ERROR payload through its decoder every
    ``payload_every`` frames. Never raises for a finding: FuzzStats counts
    them and keeps the first ``keep`` of each kind with what reproduces them
    (seed, index, bytes). ``watchdog_s``: if the run takes longer (a hang),
    dump every thread's stack and exit."""
    stats = FuzzStats(by_context={c.name: Counter() for c in contexts})
    specs = [c.specs() for c in contexts]
    allowed = [tuple(sorted(c.allowed)) for c in contexts]
    if watchdog_s:
        faulthandler.dump_traceback_later(watchdog_s, exit=True)
    start = time.perf_counter()
    try:
        for i in range(count):
            rng = np.random.default_rng([seed, i])
            k = i % len(contexts)
            ctx = contexts[k]
            data, message_len, how = mutate(rng, base_frame(rng, ctx), ctx)
            want = oracle(data, ctx, message_len)
            if rng.random() < 0.3:
                data = bytearray(data)  # what the TCP reader hands over
            t0 = time.perf_counter()
            try:
                header = check_header(data, allowed[k], specs[k], peer_is_input=ctx.peer_is_input, ready=ctx.ready,
                                      max_frame_bytes=ctx.max_frame_bytes, message_len=message_len)
                got = None
            except FrameError as e:
                got, header = int(e.code), None
            except Exception as e:  # a crash: any other exception
                got, header = e, None
            stats.slowest_call_s = max(stats.slowest_call_s, time.perf_counter() - t0)
            stats.frames += 1
            case = dict(seed=seed, index=i, context=ctx.name, how=how, message_len=message_len, hex=bytes(data).hex())
            if isinstance(got, Exception):
                stats.keep(dict(case, kind="crash", error=f"{type(got).__name__}: {got}"), keep)
                continue
            if got != want:
                stats.keep(dict(case, kind="header", expected=NAME.get(want, want) if want else "valid",
                                actual=NAME.get(got, got) if got else "valid"), keep)
                continue
            if got is None and not _same_header(header, data):
                stats.keep(dict(case, kind="header", expected="valid", actual=f"valid but decoded as {header}"), keep)
                continue
            if got is None:
                stats.accepted += 1
                stats.by_context[ctx.name]["accepted"] += 1
            else:
                stats.rejected[NAME[got]] += 1
                stats.by_context[ctx.name]["rejected"] += 1
            if payload_every and i % payload_every == 0:
                problem = _fuzz_payload(rng, stats)
                if problem is not None:
                    stats.keep(dict(problem, seed=seed, index=i), keep)
    finally:
        if watchdog_s:
            faulthandler.cancel_dump_traceback_later()
    stats.seconds = time.perf_counter() - start
    return stats


def _same_header(header, data: bytes) -> bool:
    """An accepted header carries the frame's own type, lengths and ids."""
    f = _fields(data)
    ok = (int(header.type) == f["type"] and header.payload_len == f["payload_len"]
          and header.request_id == f["request_id"])
    if f["type"] == TENSOR:
        ok = ok and header.tensor_id == f["tensor_id"] and tuple(header.dims) == f["dims"][:f["rank"]]
    return ok


def _fuzz_payload(rng, stats: FuzzStats) -> Optional[dict]:
    """One HELLO or ERROR payload through its decoder against its oracle."""
    kind = HELLO if rng.random() < 0.5 else ERROR
    frame = base_frame(rng, CONTEXTS[0], kind)
    payload = mutate_payload(rng, frame[64:], kind)
    if rng.random() < 0.5:
        payload = bytearray(payload)  # what the TCP reader hands over
    decoder, oracle = (decode_hello, hello_oracle) if kind == HELLO else (decode_error, error_oracle)
    want = oracle(payload)
    try:
        got = decoder(payload)
        if kind == HELLO:
            got = (got.graph_sha256, got.nonce, got.device, got.peer_device, got.switch)
    except FrameError as e:
        got = int(e.code)
    except Exception as e:
        return dict(kind="crash", decoder=decoder.__name__, hex=bytes(payload).hex(),
                    error=f"{type(e).__name__}: {e}")
    label = f"{TYPE_NAME[kind]} {'ok' if not isinstance(want, int) else NAME[want]}"
    if got != want:
        return dict(kind="payload", decoder=decoder.__name__, hex=bytes(payload).hex(), expected=label,
                    actual=repr(got))
    stats.payloads[label] += 1
    return None


# ==== the oracle against the shared vectors, and the fuzzer against wrong oracles =========================

VECTORS = json.loads((REPO / "export" / "vectors" / "frames.json").read_text())


def _vector_context() -> Context:
    c = VECTORS["context"]
    expected = {t["tensor_id"]: (t["dtype"], tuple(t["shape"])) for t in c["expected_tensors"]}
    return Context("shared vectors", frozenset(TYPE_NAME), expected, peer_is_input=c["peer_is_input"], ready=True,
                   max_frame_bytes=c["max_frame_bytes"])


def test_the_oracles_tables_are_the_codecs_names():
    # The oracle keeps its own copy of the spec's tables; the names must be the codec's.
    assert CODE == {e.name: int(e) for e in ErrorCode if int(e) < 64}
    assert TYPE_NAME == {int(t): t.name for t in FrameType}


@pytest.mark.parametrize("case", VECTORS["bad_headers"], ids=lambda c: c["name"])
def test_oracle_and_check_header_agree_on_the_shared_vectors(case):
    ctx = _vector_context()
    data = bytes.fromhex(case["header_hex"])
    assert header_oracle(data, ctx) == case["error_code"] == CODE[case["error"]]
    with pytest.raises(FrameError) as e:
        check_header(data, tuple(ctx.allowed), ctx.specs(), peer_is_input=ctx.peer_is_input,
                     max_frame_bytes=ctx.max_frame_bytes)
    assert int(e.value.code) == case["error_code"]


def test_oracle_accepts_the_worked_example_and_every_base_frame():
    ctx = _vector_context()
    assert header_oracle(bytes.fromhex(VECTORS["worked_example"]["header_hex"]), ctx) is None
    rng = np.random.default_rng(0)
    for c in CONTEXTS:
        for kind in sorted(c.allowed):
            frame = base_frame(rng, c, kind)
            code = header_oracle(frame[:64], c)
            # Valid, but for frames over the context's cap (a TENSOR of 6,272 bytes under 4 KiB) and a
            # CANCEL from a peer that is not the input device.
            assert (code is None or (code == CODE["TOO_LARGE"] and len(frame) > c.max_frame_bytes)
                    or (code == CODE["UNEXPECTED_FRAME"] and kind == CANCEL and not c.peer_is_input)), (c.name, kind)
            if kind == HELLO:
                assert not isinstance(hello_oracle(frame[64:]), int)
            if kind == ERROR:
                assert not isinstance(error_oracle(frame[64:]), int)


WRONG_ORACLES = {
    # Each differs from the spec in one place a careless implementation might.
    "flags checked before type": replace(SPEC, order=("magic", "version", "header", "flags", "type", "size",
                                                      "length", "state", "request_id", "zeros", "payload", "tensor",
                                                      "dtype", "shape", "tensor_length")),
    "shape checked before dtype": replace(SPEC, order=SPEC.order[:12] + ("shape", "dtype", "tensor_length")),
    "state checked after request_id": replace(SPEC, order=SPEC.order[:7] + ("request_id", "state")
                                              + SPEC.order[9:]),
    "request id 2^53 allowed": replace(SPEC, max_request_id=2**53),
    "HELLO of 69 bytes allowed": replace(SPEC, payload_range=((HELLO, 69, 324),) + SPEC.payload_range[1:]),
    "ERROR capped at 1031 bytes before ready": replace(SPEC, pre_ready_cap=1031),
}


@pytest.mark.parametrize("name", sorted(WRONG_ORACLES))
def test_the_fuzzer_catches_a_wrong_oracle(name):
    rules = WRONG_ORACLES[name]
    stats = fuzz(10_000, seed=1, oracle=lambda d, c, m: header_oracle(d, c, m, rules=rules), payload_every=0)
    assert stats.n_mismatches > 0, f"the fuzzer did not notice the oracle with {name}"
    assert stats.n_crashes == 0


def _assert_clean(stats: FuzzStats, count: int) -> None:
    assert stats.n_crashes == 0, f"{stats.n_crashes} crashes; first:\n{stats.report()}"
    assert stats.n_mismatches == 0, f"{stats.n_mismatches} disagreements with the oracle; first:\n{stats.report()}"
    assert stats.frames == count
    # Every code a header can get was reached, and each state both accepted and rejected frames.
    reachable = {"BAD_MAGIC", "UNSUPPORTED_VERSION", "BAD_HEADER", "BAD_TYPE", "BAD_FLAGS", "TOO_LARGE",
                 "UNEXPECTED_FRAME", "BAD_PAYLOAD", "UNKNOWN_TENSOR", "BAD_DTYPE", "BAD_SHAPE", "BAD_LENGTH",
                 "BAD_REQUEST_ID"}
    assert reachable <= set(stats.rejected), f"codes never produced: {reachable - set(stats.rejected)}"
    for name, c in stats.by_context.items():
        assert c["accepted"] > 0 and c["rejected"] > 0, (name, c)
    assert {"HELLO ok", "HELLO BAD_PAYLOAD", "ERROR ok", "ERROR BAD_PAYLOAD"} <= set(stats.payloads), stats.payloads


def test_fuzz_check_header_against_the_oracle():
    stats = fuzz(FUZZ_COUNT, seed=0, watchdog_s=600)
    _assert_clean(stats, FUZZ_COUNT)
    assert stats.slowest_call_s < 0.5, stats.slowest_call_s


@pytest.mark.large
def test_fuzz_check_header_against_the_oracle_large():
    stats = fuzz(LARGE_COUNT, seed=1, watchdog_s=1800)
    _assert_clean(stats, LARGE_COUNT)
    assert stats.frames >= 100_000 or "PARADIS_FUZZ_COUNT" in os.environ


# ==== live: a real peer process fed garbage ==============================================================

# Two 2-device switches. A raw client that completes a handshake is device 0 of that switch's graph, and
# by §5 a device has one connection per graph: on the coordinator's own switch a raw device 0 is refused
# (DEVICE_IN_USE) while the coordinator is connected. So the coordinator runs 2x0.5 and the raw
# connections that get past the handshake use 0.6+0.4, one after the other, each ended by the peer before
# the next opens; the peer serves both. HELLOs before the handshake go to both graphs (a valid one
# claiming device 0 of 2x0.5 gets DEVICE_IN_USE).
LIVE_SWITCHES = "2x0.5,0.6+0.4"
COORDINATOR_SWITCH = "2x0.5"
RAW_SWITCH = "0.6+0.4"


@dataclass(frozen=True)
class LiveGraph:
    """What a raw client needs of one switch's graph, read from the file (not from the runtime)."""

    switch: str
    sha256: bytes
    num_devices: int
    expected: dict  # tensor id -> (dtype, shape) device 1 takes from device 0 (§6 step 7)

    @staticmethod
    def read(path: Path) -> "LiveGraph":
        raw = path.read_bytes()
        g = json.loads(raw)
        by_name = g["tensors"]
        names = {s["tensor"] for s in g["sends"] if s["from"]["device"] == 0 and s["to"]["device"] == 1}
        if g["input"]["device"] == 0:
            names.add(g["input"]["tensor"])
        expected = {by_name[n]["id"]: (by_name[n]["dtype"], tuple(by_name[n]["shape"])) for n in names}
        return LiveGraph(g["switch"], hashlib.sha256(raw).digest(), len(g["devices"]), expected)


def build_bundle(folder: Path) -> Path:
    """A small float32 bundle (ResNet-8 at width 0.25 with sparse gates, as
    test_peer.py builds it) with two 2-device switches."""
    from paradis_export import export_bundle
    from tests.paradis_export.helpers import resnet8

    model = resnet8(switches=LIVE_SWITCHES)
    export_bundle(model, LIVE_SWITCHES, folder, progress=None)
    return folder


def _read_exact(sock, n: int) -> Optional[bytes]:
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


def _read_frame(sock) -> Optional[tuple]:
    """(type, request_id, payload) of the next frame, or None at the end of the stream."""
    header = _read_exact(sock, 64)
    if header is None:
        return None
    f = _fields(header)
    assert f["magic"] == b"PRDS" and f["payload_len"] < 1 << 24, f"the peer sent a broken frame: {header.hex()}"
    payload = _read_exact(sock, f["payload_len"]) if f["payload_len"] else b""
    if payload is None:
        return None
    return f["type"], f["request_id"], payload


def _next_fatal(sock) -> tuple:
    """Reads on to the first fatal ERROR (code < 128) or the end of the stream:
    ("error", code, whether the stream then ended cleanly) or ("closed",). TENSOR, HEARTBEAT,
    HELLO, AUTH and request-level ERRORs (the peer's own traffic) are skipped."""
    while True:
        frame = _read_frame(sock)
        if frame is None:
            return ("closed",)
        kind, _, payload = frame
        if kind == ERROR:
            code = struct.unpack_from("<H", payload)[0]
            if code < 128:
                try:  # then the end of the stream (a reset would mean the peer left bytes unread)
                    closed = sock.recv(1) == b""
                except ConnectionResetError:
                    closed = False
                return ("error", code, closed)


def _quiet(sock, seconds: float) -> Optional[tuple]:
    """Reads the peer's traffic until ``seconds`` pass without a frame other
    than HEARTBEAT; returns a fatal outcome if one came instead."""
    sock.settimeout(seconds)
    try:
        while True:
            frame = _read_frame(sock)
            if frame is None:
                return ("closed",)
            kind, _, payload = frame
            if kind == ERROR and struct.unpack_from("<H", payload)[0] < 128:
                return ("error", struct.unpack_from("<H", payload)[0], True)
    except socket.timeout:
        return None
    finally:
        sock.settimeout(SOCKET_TIMEOUT)


def _send(sock, data: bytes, rng) -> None:
    """One write, or now and then two or three with a pause between (the reader must reassemble them)."""
    if rng.random() < 0.1 and len(data) > 2:
        cuts = sorted(int(c) for c in rng.integers(1, len(data), int(rng.integers(1, 3))))
        for a, b in zip([0] + cuts, cuts + [len(data)]):
            sock.sendall(data[a:b])
            time.sleep(0.002)
    else:
        sock.sendall(data)


def _fit(payload: bytes, n: int, rng) -> bytes:
    """Exactly ``n`` payload bytes (a valid header's length is what the peer reads)."""
    return payload[:n] if len(payload) >= n else payload + rng.bytes(n - len(payload))


LIVE_PRE = Context("live listener before HELLO", frozenset({HELLO, ERROR}), {}, peer_is_input=False, ready=False)


def _live_expectation_pre(header: bytes, payload: bytes, graphs: dict) -> tuple:
    """What a listener must answer to a HELLO-phase frame: ("error", code),
    ("closed",) (a valid fatal ERROR from the stranger) or ("hello",) (it
    answers HELLO and AUTH)."""
    code = header_oracle(header, LIVE_PRE)
    if code:
        return ("error", code)
    kind = _fields(header)["type"]
    if kind == ERROR:  # before ready there is no request to abandon: any valid ERROR ends the handshake
        parsed = error_oracle(payload)
        return ("error", parsed) if isinstance(parsed, int) else ("closed",)
    parsed = hello_oracle(payload)  # kind == HELLO: §5's checks in order
    if isinstance(parsed, int):
        return ("error", parsed)
    sha, _, device, peer_device, switch = parsed
    graph = next((g for g in graphs.values() if g.sha256 == sha), None)
    if graph is None or switch != graph.switch:
        return ("error", CODE["GRAPH_MISMATCH"])
    if not 0 <= device < graph.num_devices or device == 1 or peer_device != 1:
        return ("error", CODE["BAD_DEVICE"])
    if graph.switch == COORDINATOR_SWITCH and device == 0:
        # §5: the coordinator, device 0 of this switch, holds a live connection the whole run (the raw
        # switch's device 0 connections end before the next one opens).
        return ("error", CODE["DEVICE_IN_USE"])
    return ("hello",)


def _handshake(sock, graph: LiveGraph, key: bytes, nonce: bytes) -> bytes:
    """Device 0's side of §5 as test_peer.py's test_right_key does it; returns the AUTH frame to send."""
    sock.sendall(encode_hello(Hello(graph.sha256, nonce, 0, 1, graph.switch)))
    kind, _, payload = _read_frame(sock)
    assert kind == HELLO, kind
    theirs = hello_oracle(payload)
    kind, _, mac = _read_frame(sock)
    assert kind == AUTH and mac == auth_mac(key, graph.sha256, 1, 0, theirs[1], nonce)
    return encode_header(Header(type=FrameType.AUTH, payload_len=32)) + auth_mac(key, graph.sha256, 0, 1, nonce,
                                                                                 theirs[1])


@dataclass
class LiveStats:
    connections: int = 0
    pre_handshake: int = 0
    post_handshake: int = 0
    rejected: Counter = field(default_factory=Counter)  # code name -> connections answered with it
    accepted: Counter = field(default_factory=Counter)  # frame type -> frames the oracle called valid, served
    closed_quietly: int = 0  # a header cut short, or a valid fatal ERROR from the client: closed, nothing sent
    mismatches: list = field(default_factory=list)  # the first ones
    n_mismatches: int = 0
    hangs: list = field(default_factory=list)
    checks: int = 0  # coordinator predictions compared
    check_failures: list = field(default_factory=list)
    seconds: float = 0.0
    slowest_connection_s: float = 0.0


def live_fuzz(address: tuple, graphs: dict, count: int, key: bytes, seed: int = 0, check: Optional[Callable] = None,
              every: int = 25, post_share: float = 0.4, keep: int = 20) -> LiveStats:
    """``count`` raw connections to the peer at ``address``, one after the
    other, each with one mutated frame; ``check()`` (the coordinator still
    serving: None, or what went wrong) runs every ``every`` connections and
    after the last. Never raises for a finding: LiveStats holds them."""
    stats = LiveStats()
    start = time.perf_counter()
    raw = graphs[RAW_SWITCH]
    post_ctx = Context("live ready, from the input device", READY_TYPES, raw.expected, peer_is_input=True,
                       ready=True)
    for i in range(count):
        rng = np.random.default_rng([seed, 1_000_003, i])
        post = bool(rng.random() < post_share)
        case = dict(seed=seed, index=i, phase="after the handshake" if post else "before the handshake")
        sock = None
        t0 = time.perf_counter()
        try:
            # One connection at a time: the listener holds at most 8 unauthenticated ones (§6).
            sock = socket.create_connection(address, timeout=SOCKET_TIMEOUT)
            sock.settimeout(SOCKET_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # split writes stay split
            run = _live_post if post else _live_pre
            outcome, allowed, sent, label = run(sock, rng, graphs, post_ctx, key)
            if outcome in allowed:
                if label.startswith("accepted "):
                    stats.accepted[label.split()[1]] += 1
                elif label == "closed":
                    stats.closed_quietly += 1
                else:
                    stats.rejected[label] += 1
            else:
                stats.n_mismatches += 1
                if len(stats.mismatches) < keep:
                    stats.mismatches.append(dict(case, hex=sent.hex(), expected=" or ".join(map(_describe, allowed)),
                                                 actual=_describe(outcome)))
        except socket.timeout:
            stats.hangs.append(dict(case, where=f"no answer within {SOCKET_TIMEOUT:g} s"))
        except (OSError, AssertionError) as e:  # refused, reset, or a handshake that went wrong
            stats.n_mismatches += 1
            if len(stats.mismatches) < keep:
                stats.mismatches.append(dict(case, expected="a connection that answers", actual=repr(e)))
        finally:
            if sock is not None:
                sock.close()
        stats.slowest_connection_s = max(stats.slowest_connection_s, time.perf_counter() - t0)
        stats.connections += 1
        stats.post_handshake += post
        stats.pre_handshake += not post
        if check is not None and ((i + 1) % every == 0 or i + 1 == count):
            stats.checks += 1
            problem = check()
            if problem:
                stats.check_failures.append(dict(after=i + 1, problem=problem))
    stats.seconds = time.perf_counter() - start
    return stats


def _describe(outcome: tuple) -> str:
    if outcome[0] == "error":
        name = NAME.get(outcome[1], str(outcome[1]))
        return f"ERROR {name}" + ("" if outcome[2] else ", the stream left open")
    return " ".join(map(str, outcome))


# A header cut short on TCP: the stream ends inside it, so the peer may close with or without BAD_HEADER.
CUT_SHORT = (("closed",), ("error", 3, True))


def _refused(sock, code: int, sent: bytes) -> tuple:
    """The answer to a frame the oracle refuses with ``code``: that ERROR, then the end of the stream."""
    return _next_fatal(sock), (("error", code, True),), sent, NAME[code]


def _live_pre(sock, rng, graphs: dict, post_ctx: Context, key: bytes) -> tuple:
    """A mutated HELLO on a fresh connection: (outcome, allowed outcomes, bytes
    sent, label). (``post_ctx`` and ``key``: the signature of ``_live_post``.)"""
    graph = list(graphs.values())[int(rng.integers(len(graphs)))]
    frame = encode_hello(Hello(graph.sha256, rng.bytes(32), 0, 1, graph.switch))
    header, payload = frame[:64], frame[64:]
    mode = rng.random()
    if mode < 0.75:  # the header (and from 0.5 on the payload too)
        header = mutate(rng, frame, LIVE_PRE)[0][:64]
    if mode >= 0.5:  # the payload, field-aware: device, peer_device, the other graph's hash or switch
        payload = _mutate_hello_payload(rng, payload, graphs)
    if len(header) < 64:  # §6 step 1 on TCP
        _send(sock, header, rng)
        sock.shutdown(socket.SHUT_WR)
        return _next_fatal(sock), CUT_SHORT, header, "closed"
    code = header_oracle(header, LIVE_PRE)
    if code:  # rejected before the payload: the peer reads these 64 bytes and no more
        _send(sock, header, rng)
        return _refused(sock, code, header)
    payload = _fit(payload, _fields(header)["payload_len"], rng)
    sent = header + payload
    _send(sock, sent, rng)
    want = _live_expectation_pre(header, payload, graphs)
    if want[0] == "error":
        return _refused(sock, want[1], sent)
    if want[0] == "closed":
        return _next_fatal(sock), (("closed",),), sent, "closed"
    # Accepted: the listener answers HELLO and AUTH; a wrong MAC then ends it with AUTH_FAILED.
    first = _read_frame(sock)
    second = _read_frame(sock) if first is not None else None
    got = (first and first[0], second and second[0])
    if got != (HELLO, AUTH):
        return ("answered", *got), (("answered", HELLO, AUTH),), sent, "accepted HELLO"
    sock.sendall(encode_header(Header(type=FrameType.AUTH, payload_len=32)) + bytes(32))
    return _next_fatal(sock), (("error", CODE["AUTH_FAILED"], True),), sent, "accepted HELLO"


def _mutate_hello_payload(rng, payload: bytes, graphs: dict) -> bytes:
    buf = bytearray(payload)
    op = int(rng.integers(5))
    other = list(graphs.values())[int(rng.integers(len(graphs)))]
    if op == 0:
        struct.pack_into("<H", buf, 64, int(rng.choice((0, 1, 2, 65535))))  # device
    elif op == 1:
        struct.pack_into("<H", buf, 66, int(rng.choice((0, 1, 2, 65535))))  # peer_device
    elif op == 2:
        buf[:32] = other.sha256 if rng.random() < 0.7 else rng.bytes(32)
    elif op == 3:
        name = other.switch.encode() if rng.random() < 0.5 else b"9x0.1"
        buf = buf[:68] + bytes([len(name)]) + name
    else:
        return mutate_payload(rng, payload, HELLO)
    return bytes(buf)


def _live_post(sock, rng, graphs: dict, ctx: Context, key: bytes) -> tuple:
    """A correct handshake on the raw switch's graph, then one mutated frame
    (mostly TENSOR): (outcome, allowed outcomes, bytes sent after the handshake, label)."""
    auth = _handshake(sock, graphs[RAW_SWITCH], key, rng.bytes(32))
    kind = TENSOR if rng.random() < 0.8 else int(rng.choice((ERROR, HEARTBEAT, CANCEL)))
    frame = base_frame(rng, ctx, kind)
    if kind == TENSOR:  # random bytes as the payload (float values are never inspected)
        frame = frame[:64] + rng.bytes(len(frame) - 64)
    header = mutate(rng, frame, ctx)[0][:64]
    if len(header) < 64:
        _send(sock, auth + header, rng)
        sock.shutdown(socket.SHUT_WR)
        return _next_fatal(sock), CUT_SHORT, header, "closed"
    code = header_oracle(header, ctx)
    if code:
        _send(sock, auth + header, rng)
        return _refused(sock, code, header)
    f = _fields(header)
    payload = _fit(frame[64:], f["payload_len"], rng)
    sent = header + payload
    _send(sock, auth + sent, rng)
    if f["type"] == ERROR:
        parsed = error_oracle(payload)
        if isinstance(parsed, int):
            return _refused(sock, parsed, sent)
        if parsed[0] < 128:  # a fatal ERROR from the client: the peer closes without answering it (§6)
            return _next_fatal(sock), (("closed",),), sent, "closed"
    if f["type"] == TENSOR:
        # Served: the peer may run a stage and send its output back; let it, before the next frame.
        early = _quiet(sock, 0.2)
        if early is not None:
            return early, (("served",),), sent, "accepted TENSOR"
    # Still open and checking: a header with a bad magic ends the connection with BAD_MAGIC.
    sock.sendall(b"GET " + bytes(60))
    outcome = _next_fatal(sock)
    return (("served",) if outcome == ("error", CODE["BAD_MAGIC"], True) else outcome), (("served",),), sent, \
        "accepted " + TYPE_NAME[f["type"]]


@dataclass
class LiveTarget:
    address: tuple
    graphs: dict
    check: Callable
    process: object  # tests.paradis_runtime.peers.PeerProcess
    session: object


def _coordinator_check(session, x, first) -> Callable:
    def check() -> Optional[str]:
        try:
            out = session.predict(x)
        except Exception as e:  # a failed prediction is a finding, not a crash of the fuzzer
            return f"{type(e).__name__}: {e}"
        if session.switch != COORDINATOR_SWITCH or session.switch_log:
            return f"the coordinator moved: {session.switch_log}"
        if not np.array_equal(out, first):
            return f"outputs differ by up to {np.abs(out - first).max()}"
        return None
    return check


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One `paradis peer` (device 1 of both switches) and a coordinator on 2x0.5 streaming through it."""
    from paradis_runtime import connect
    from tests.paradis_export.helpers import real_images
    from tests.paradis_runtime.peers import KEY, peers

    folder = tmp_path_factory.mktemp("fuzz_live")
    bundle = build_bundle(folder / "bundle")
    graphs = {s: LiveGraph.read(bundle / s / "fusion_graph.json") for s in LIVE_SWITCHES.split(",")}
    x, _ = real_images(4)
    with peers(bundle, 1, folder) as (addresses, procs):
        with connect(bundle, addresses, key=KEY, switches=[COORDINATOR_SWITCH]) as session:
            first = session.predict(x)
            host, port = addresses.split(":")
            yield LiveTarget((host, int(port)), graphs, _coordinator_check(session, x, first), procs[0], session)


def _assert_live(target: LiveTarget, stats: LiveStats, count: int) -> None:
    assert not stats.hangs, f"{len(stats.hangs)} connections got no answer within 5 s; first: {stats.hangs[:3]}"
    assert not stats.mismatches, (f"{len(stats.mismatches)} connections answered against the oracle; first:\n"
                                  + "\n".join(str(m) for m in stats.mismatches[:5]))
    assert not stats.check_failures, f"the coordinator stopped serving: {stats.check_failures[:3]}"
    assert stats.connections == count and stats.checks >= count // 25
    assert target.process.proc.poll() is None, "the peer process died"
    log = target.process.log.read_text()
    assert "Traceback" not in log and "Exception in thread" not in log, log[-3000:]
    # Both phases ran, and frames were rejected with several codes and some were served.
    assert stats.pre_handshake and stats.post_handshake and stats.accepted and len(stats.rejected) >= 5, stats
    assert target.check() is None


def test_live_peer_fed_garbage_keeps_serving(live):
    from tests.paradis_runtime.peers import KEY

    stats = live_fuzz(live.address, live.graphs, LIVE_COUNT, KEY.encode(), seed=0, check=live.check)
    _assert_live(live, stats, LIVE_COUNT)


@pytest.mark.large
def test_live_peer_fed_garbage_keeps_serving_large(live):
    from tests.paradis_runtime.peers import KEY

    stats = live_fuzz(live.address, live.graphs, LARGE_LIVE_COUNT, KEY.encode(), seed=1, check=live.check)
    _assert_live(live, stats, LARGE_LIVE_COUNT)


HANDSHAKE_TIMEOUT_S = 5.0  # PeerConfig's default handshake_timeout, which `paradis peer` uses


def test_strangers_trickling_bytes_still_meet_the_handshake_deadline(live):
    """§5: "The handshake must complete within handshake_timeout", else
    HANDSHAKE_TIMEOUT. Eight strangers (the listener's whole allowance of
    unauthenticated connections, §6) each send a valid HELLO one byte every
    0.5 s. Each must be refused with HANDSHAKE_TIMEOUT about 5 s after it
    connected, so that a real device can connect again (while they hold the
    slots, the listener drops every new connection)."""
    graph = live.graphs[RAW_SWITCH]
    frame = encode_hello(Hello(graph.sha256, bytes(range(32)), 0, 1, graph.switch))  # 140 bytes: 70 s at this pace
    socks, answers = [], {}
    start = time.monotonic()
    try:
        for _ in range(8):
            socks.append(socket.create_connection(live.address, timeout=SOCKET_TIMEOUT))
        sent = 0
        while time.monotonic() - start < HANDSHAKE_TIMEOUT_S + 4 and len(answers) < len(socks):
            for k, s in enumerate(socks):
                if k not in answers:
                    try:
                        s.send(frame[sent:sent + 1])
                    except OSError as e:
                        # The peer closed between two of our bytes: its ERROR
                        # frame may still wait in our receive buffer.
                        at = round(time.monotonic() - start, 1)
                        try:
                            answers[k] = (at, _describe(_next_fatal(s)))
                        except OSError:
                            answers[k] = (at, repr(e))
            sent += 1
            waiting = [s for k, s in enumerate(socks) if k not in answers]
            readable = select.select(waiting, [], [], 0.5)[0] if waiting else []
            for s in readable:
                answers[socks.index(s)] = (round(time.monotonic() - start, 1), _describe(_next_fatal(s)))
        # Then a real device (a correct HELLO in one write) must get the listener's HELLO back (three
        # tries: a refused stranger's slot is given back just after its socket closes).
        for _ in range(3):
            time.sleep(0.2)
            fresh = socket.create_connection(live.address, timeout=SOCKET_TIMEOUT)
            try:
                fresh.sendall(encode_hello(Hello(graph.sha256, bytes(range(1, 33)), 0, 1, graph.switch)))
                reply = _read_frame(fresh)
                fresh_answer = "HELLO" if reply and reply[0] == HELLO else f"{reply} (the connection was dropped)"
            except OSError as e:
                fresh_answer = repr(e)
            finally:
                fresh.close()
            if fresh_answer == "HELLO":
                break
    finally:
        for s in socks:
            s.close()
    late = {k: a for k, a in answers.items() if a[1] != "ERROR HANDSHAKE_TIMEOUT" or a[0] > HANDSHAKE_TIMEOUT_S + 1.5}
    assert len(answers) == len(socks) and not late and fresh_answer == "HELLO", (
        f"after {sent} bytes sent one every 0.5 s by each of {len(socks)} strangers: answers (seconds, what) "
        f"{answers}; {len(socks) - len(answers)} got none within {HANDSHAKE_TIMEOUT_S + 4:g} s; a real device "
        f"meanwhile got: {fresh_answer}")
