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


def run_cases(count: int, seed: int) -> dict:
    """Decode `count` mutants; tally outcomes and collect anything that is not a clean result."""
    import resource
    import signal
    import traceback

    from mvcodec.decoder import Decoder
    from mvcodec.errors import StreamError

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    def on_alarm(signum, frame):
        raise TimeoutError("decode took too long")

    signal.signal(signal.SIGALRM, on_alarm)
    data = STREAM.read_bytes()
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    failures = []
    for i in range(count):
        mutant = mutate(data, rng)
        signal.alarm(SECONDS_PER_CASE)
        try:
            with Decoder(io.BytesIO(mutant)) as dec:
                for _ in dec.frames():
                    pass
            outcomes["decoded"] += 1
        except StreamError as e:
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


if __name__ == "__main__":
    print(json.dumps(run_cases(int(sys.argv[1]), int(sys.argv[2]))))
