"""Robustness: thousands of mutated and truncated copies of a valid stream each end in a clean StreamError
or a valid decode; never another exception, a hang or a runaway allocation.

The mutations run in a child process with its address space capped (a runaway allocation fails there
with MemoryError) and an alarm per case (a hang fails with a timeout).
"""

from __future__ import annotations

import io
import json
import random
import struct
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest

STREAM = Path(__file__).parent / "conformance" / "c07_coding_tools" / "stream.mvinr"
MEMORY_LIMIT = 3 << 30
SECONDS_PER_CASE = 20


def _chunk_spans(data: bytes) -> list[tuple[int, int]]:
    """(offset, payload length) of every chunk."""
    spans, pos = [], 12
    while pos + 12 <= len(data):
        length = struct.unpack_from("<I", data, pos)[0]
        spans.append((pos, length))
        pos += 12 + length
    return spans


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One damaged copy: flipped/overwritten bytes (CRCs left wrong), payload changes with the CRC fixed
    (to reach the field checks and the decoder), truncation or appended bytes."""
    kind = rng.random()
    out = bytearray(data)
    if kind < 0.35:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind < 0.8:
        offset, length = rng.choice([s for s in _chunk_spans(data) if s[1] > 0])
        for _ in range(rng.randint(1, 3)):
            i = offset + 8 + rng.randrange(length)
            out[i] = out[i] ^ (1 << rng.randrange(8)) if rng.random() < 0.7 else rng.randrange(256)
        struct.pack_into("<I", out, offset + 8 + length, zlib.crc32(bytes(out[offset + 4 : offset + 8 + length])))
    elif kind < 0.95:
        del out[rng.randrange(len(out)) :]
    else:
        out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(out)


SPECIAL = (0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)
STRUCTURED_STREAMS = [
    Path(__file__).parent / "conformance" / n / "stream.mvinr"
    for n in ("c07_coding_tools", "c15_pyramid_mc_motion", "c20_coding_tools_lean")
]
DONORS = [
    Path(__file__).parent / "conformance" / n / "stream.mvinr" for n in ("c06_two_segments", "c13_pyramid_mc_arm")
]


def _chunks(data: bytes) -> list[bytes]:
    """The framed chunks of a stream (after its 12-byte header), each whole: length, type, payload, CRC."""
    return [data[pos : pos + 12 + length] for pos, length in _chunk_spans(data)]


def _framed(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload)) + ctype + payload + struct.pack("<I", zlib.crc32(ctype + payload))


def structured_mutate(data: bytes, rng: random.Random, donors: list[bytes]) -> bytes:
    """One damaged copy that keeps the framing valid, to reach the field checks and the decoder: an integer field
    (1, 2 or 4 bytes, most often near the start of a payload, where the headers are) set to 0, 1, 0x7FFF,
    0xFFFF, 0x7FFFFFFF or 0xFFFFFFFF with the CRC fixed; chunks swapped, duplicated, dropped or spliced from
    another stream; a payload cut or grown with its length and CRC fixed; or a chunk's length field set to a
    special value."""
    head, chunks = data[:12], _chunks(data)
    kind = rng.random()
    i = rng.randrange(len(chunks))
    if kind < 0.45:
        c = chunks[i]
        payload = bytearray(c[8:-4])
        if payload:
            width = rng.choice((1, 2, 4))
            limit = len(payload) - width if rng.random() < 0.3 else min(len(payload) - width, 64)
            at = rng.randrange(max(limit, 0) + 1)
            value = rng.choice(SPECIAL) & ((1 << (8 * width)) - 1)
            payload[at : at + width] = value.to_bytes(width, "little")[: len(payload) - at]
        chunks[i] = _framed(c[4:8], bytes(payload))
    elif kind < 0.55:
        j = rng.randrange(len(chunks))
        chunks[i], chunks[j] = chunks[j], chunks[i]
    elif kind < 0.63:
        chunks.insert(rng.randrange(len(chunks) + 1), chunks[i])
    elif kind < 0.71:
        del chunks[i]
    elif kind < 0.81:
        donor = _chunks(rng.choice(donors))
        chunks[i] = rng.choice(donor)
    elif kind < 0.93:
        c = chunks[i]
        payload = c[8:-4]
        if rng.random() < 0.5 and payload:
            payload = payload[: rng.randrange(len(payload))]
        else:
            payload += bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4, 64))))
        chunks[i] = _framed(c[4:8], payload)
    else:
        c = bytearray(chunks[i])
        struct.pack_into("<I", c, 0, rng.choice(SPECIAL))
        chunks[i] = bytes(c)
    return head + b"".join(chunks)


def first_frame_outcomes(data: bytes, seed: int, count: int) -> set:
    """Decode frame 0 of `count` mutants of a stream: the set of outcomes ("decoded" or a StreamError's exit
    code), each error's message checked to be one line; anything else raised propagates."""
    from mvcodec.decoder import Decoder
    from mvcodec.errors import StreamError

    rng, outcomes = random.Random(seed), set()
    for _ in range(count):
        try:
            with Decoder(io.BytesIO(mutate(data, rng))) as dec:
                list(dec.frames(frames=[0]))
            outcomes.add("decoded")
        except StreamError as e:
            assert "\n" not in str(e)
            outcomes.add(e.exit_code)
    return outcomes


def run_cases(count: int, seed: int, structured: bool = False) -> dict:
    """Decode `count` mutants (of c07, or `structured`: structure-aware ones of c07 and c15); tally outcomes and
    collect anything that is not a clean result. A decode goes as mvdec's would: refused (exit code 2) where the
    headers ask for more than mvdec's default --max-pixels or this process's memory."""
    import resource
    import signal
    import traceback

    from mvcodec.cli import DEFAULT_MAX_PIXELS
    from mvcodec.decoder import Decoder
    from mvcodec.errors import ResourceLimit, StreamError

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    def on_alarm(signum, frame):
        raise TimeoutError("decode took too long")

    signal.signal(signal.SIGALRM, on_alarm)
    bases = [p.read_bytes() for p in (STRUCTURED_STREAMS if structured else [STREAM])]
    donors = [p.read_bytes() for p in DONORS]
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    failures = []
    for i in range(count):
        base = bases[i % len(bases)]
        mutant = structured_mutate(base, rng, donors) if structured else mutate(base, rng)
        signal.alarm(SECONDS_PER_CASE)
        try:
            with Decoder(io.BytesIO(mutant)) as dec:
                dec.check_limits(range(dec.sequence.frames), DEFAULT_MAX_PIXELS, MEMORY_LIMIT // 2)
                for _ in dec.frames():
                    pass
            outcomes["decoded"] += 1
        except (StreamError, ResourceLimit) as e:
            outcomes[f"exit {e.exit_code}"] += 1
        except BaseException as e:  # anything else is a defect, PanicException included
            failures.append({"case": i, "error": repr(e), "trace": traceback.format_exc()[-800:]})
        finally:
            signal.alarm(0)
    return {"outcomes": dict(outcomes), "failures": failures[:5], "failed": len(failures)}


@pytest.mark.slow
def test_mutated_and_truncated_streams_fail_cleanly_or_decode():
    count = 3000
    proc = subprocess.run([sys.executable, __file__, str(count), "7"], capture_output=True, text=True, timeout=15 * 60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failed"] == 0, result["failures"]
    outcomes = result["outcomes"]
    assert sum(outcomes.values()) == count
    # the mutations reach every layer: CRC, truncation, field checks and the parameter hash
    for code in ("exit 5", "exit 6", "exit 8", "exit 9"):
        assert outcomes.get(code, 0) > 0, outcomes
    assert "thread '<unnamed>' panicked" not in proc.stderr


@pytest.mark.slow
def test_structure_aware_mutants_fail_cleanly_or_decode():
    count = 1200
    cmd = [sys.executable, __file__, str(count), "11", "structured"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=15 * 60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failed"] == 0, result["failures"]
    outcomes = result["outcomes"]
    assert sum(outcomes.values()) == count
    for code in ("exit 5", "exit 7", "exit 8", "exit 9"):  # framing kept, so CRC errors only via donors' order
        assert outcomes.get(code, 0) > 0, outcomes
    assert "thread '<unnamed>' panicked" not in proc.stderr


if __name__ == "__main__":
    print(json.dumps(run_cases(int(sys.argv[1]), int(sys.argv[2]), len(sys.argv) > 3)))
