#!/usr/bin/env python3
"""Writes the seed corpus of the `decode` target into corpus/decode/.

Run from fuzz/:  python3 seeds.py
Formats: src/protocol/{frame,message,items}.rs. A frame is an 8-byte header
(u32 LE body length, kind byte, three zero bytes) then the body; values
inside result/argument items are MessagePack (rmp-serde, structs as maps).
No third-party modules: the few MessagePack forms needed are written here.
"""

import os
import struct

TASK, READY, REJECT, DONE, FAULT = 0x01, 0x81, 0x82, 0x83, 0x84
PROTOCOL_VERSION = 1
RES_OK, RES_PANIC, RES_ARG_DECODE, RES_RESULT_ENCODE, RES_SKIPPED = 0, 1, 2, 3, 4
ARG_VALUE, ARG_HOLE = 0, 1


def mp(v):
    """MessagePack for None, bool, non-negative int, str, bytes, list, dict."""
    if v is None:
        return b"\xc0"
    if v is True or v is False:
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        assert v >= 0
        if v < 0x80:
            return bytes([v])
        if v < 1 << 8:
            return b"\xcc" + struct.pack(">B", v)
        if v < 1 << 16:
            return b"\xcd" + struct.pack(">H", v)
        if v < 1 << 32:
            return b"\xce" + struct.pack(">I", v)
        return b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xd9" + bytes([len(b)]) + b if len(b) < 256 else b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, list):
        assert len(v) < 16
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        assert len(v) < 16
        return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


def frame(kind, body):
    return struct.pack("<IB3x", len(body), kind) + body


def item(tag, body):
    return struct.pack("<BI", tag, len(body)) + body


def done(job, items):
    # job id, item count, then three timings (decode, run, encode ns): protocol 2
    return frame(DONE, struct.pack("<QIQQQ", job, len(items), 0, 0, 0) + b"".join(items))


def task(job, entry, func, signature, items):
    head = struct.pack("<QQQQI", job, entry, func, signature, len(items))
    return frame(TASK, head + b"".join(items))


PANIC = mp({
    "message": "boom 42",
    "location": {"file": "src/main.rs", "line": 7, "column": 5},
    "backtrace": None,
})

SEEDS = {
    "ready": frame(READY, struct.pack("<II", PROTOCOL_VERSION, 4242)),
    "fault": frame(FAULT, b"worker could not decode its task"),
    "reject": frame(REJECT, b"not the same executable"),
    # u64 results, as decode_chunk::<u64> expects.
    "done_u64": done(7, [item(RES_OK, mp(7)), item(RES_OK, mp(300))]),
    # (String, Vec<u8>) results, a panic and a failed argument.
    "done_mixed": done(8, [
        item(RES_OK, mp(["seven", [1, 2, 3]])),
        item(RES_PANIC, PANIC),
        item(RES_ARG_DECODE, b"bad argument"),
        item(RES_SKIPPED, b""),
    ]),
    # Option<RemotePanic> results.
    "done_panics": done(9, [item(RES_OK, PANIC), item(RES_OK, mp(None))]),
    # A worker's whole session: READY, then two DONEs.
    "session": frame(READY, struct.pack("<II", PROTOCOL_VERSION, 1))
    + done(1, [item(RES_OK, mp(1))])
    + done(2, [item(RES_RESULT_ENCODE, b"no thanks")]),
    # What a worker reads: tasks of (u32, String) arguments.
    "task": task(3, 0xDEAD, 0xBEEF, 11, [
        item(ARG_VALUE, mp([1, "one"])),
        item(ARG_HOLE, b""),
        item(ARG_VALUE, mp([2, "two"])),
    ]),
}

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "decode")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {out}")
