"""The desktop stand-in for LiteRT's Java ``Interpreter.runSignature``: runs
the real stages of one ``.tflite`` with ``ai_edge_litert`` for the Java core's
``SubprocessEngine`` (LiteRT for Java cannot be obtained on these machines).

    python litert_engine.py DEVICE_FILE.tflite

Speaks a length-prefixed binary protocol on stdin/stdout, all integers
little-endian (stdout carries nothing else; messages go to stderr):

* at start-up: u32 count, then count x (u32 len, UTF-8 signature key);
* per call, request: u32 len + key, u32 n, then n x (u32 len + input name,
  u64 nbytes, the tensor's exact bytes);
* reply: u8 0, u32 n, then n x (u32 len + output name, u64 nbytes, bytes);
  or u8 1, u32 len, UTF-8 message (the call failed; the helper keeps serving).

Inputs are fed by name, as ``paradis_runtime`` feeds its signature runners
(one interpreter, one thread), so the Java peer computes the same bytes as a
Python peer. EOF on stdin ends the helper.
"""

import struct
import sys

import numpy as np


def _read(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


def _name(stream) -> str:
    (n,) = struct.unpack("<I", _read(stream, 4))
    return _read(stream, n).decode("utf-8")


def _put_name(out: list, name: str) -> None:
    raw = name.encode("utf-8")
    out.append(struct.pack("<I", len(raw)) + raw)


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} DEVICE_FILE.tflite (received {sys.argv[1:]!r})", file=sys.stderr)
        return 2
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
    keys = sorted(interpreter.get_signature_list())
    runners = {k: interpreter.get_signature_runner(k) for k in keys}
    details = {k: r.get_input_details() for k, r in runners.items()}
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    hello = [struct.pack("<I", len(keys))]
    for k in keys:
        _put_name(hello, k)
    stdout.write(b"".join(hello))
    stdout.flush()
    while True:
        try:
            key = _name(stdin)
            (count,) = struct.unpack("<I", _read(stdin, 4))
            raw = {}
            for _ in range(count):
                name = _name(stdin)
                (nbytes,) = struct.unpack("<Q", _read(stdin, 8))
                raw[name] = _read(stdin, nbytes)
        except EOFError:
            return 0
        try:
            if key not in runners:
                raise KeyError(f"no signature {key!r} in {sys.argv[1]} (it has {keys})")
            feeds = {}
            for name, data in raw.items():
                if name not in details[key]:
                    raise KeyError(f"signature {key!r} has no input {name!r} (it has {sorted(details[key])})")
                d = details[key][name]
                feeds[name] = np.frombuffer(data, dtype=d["dtype"]).reshape(d["shape"])
            outputs = runners[key](**feeds)
            reply = [b"\x00", struct.pack("<I", len(outputs))]
            for name, value in outputs.items():
                data = np.ascontiguousarray(value).tobytes()
                _put_name(reply, name)
                reply.append(struct.pack("<Q", len(data)) + data)
        except Exception as e:  # the call fails, the helper keeps serving (as a LiteRT error would)
            message = f"{type(e).__name__}: {e}".encode("utf-8")[:4000]
            reply = [b"\x01", struct.pack("<I", len(message)), message]
        stdout.write(b"".join(reply))
        stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
