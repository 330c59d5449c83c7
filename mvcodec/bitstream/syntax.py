"""Byte-level syntax of .mvinr: signature, version, chunk framing, and typed little-endian fields.

File:   signature (8 bytes) | major u16 | minor u16 | chunk ...
Chunk:  length u32 | type (4 ASCII letters) | payload (length bytes) | CRC-32 u32 over type and payload
A chunk type whose first letter is upper case is critical (a decoder that does not know it refuses the
stream); lower case is ancillary (skipped when unknown).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from mvcodec.errors import CrcMismatch, InvalidStream, NotAStream, TruncatedStream, UnsupportedVersion

# High-bit byte (catches 7-bit transfers), name, CR LF (catches line-ending conversion), EOF, LF.
SIGNATURE = b"\x8bMVI\r\n\x1a\n"
VERSION = (1, 1)  # the newest version this code reads and writes; it reads every 1.x
FILE_HEADER_BYTES = len(SIGNATURE) + 4
CHUNK_OVERHEAD = 12  # length, type, CRC
MAX_CHUNK_BYTES = 1 << 31
MAX_VARINT_BYTES = 5  # an unsigned LEB128 varint below 2^32


@dataclass(frozen=True)
class ChunkRef:
    """Where a chunk lies in the file: its type, the offset of its payload and the payload's length."""

    type: str
    offset: int
    length: int

    @property
    def critical(self) -> bool:
        return self.type[0].isupper()

    @property
    def total_bytes(self) -> int:
        return self.length + CHUNK_OVERHEAD


def chunk_bytes(ctype: str, payload: bytes) -> bytes:
    """One framed chunk: length, type, payload, CRC-32."""
    tag = ctype.encode("ascii")
    if len(tag) != 4 or not tag.isalpha():
        raise ValueError(f"chunk type must be 4 ASCII letters, got {ctype!r}")
    return struct.pack("<I", len(payload)) + tag + payload + struct.pack("<I", zlib.crc32(tag + payload))


def file_header(version: tuple[int, int]) -> bytes:
    """The signature and the (major, minor) version."""
    return SIGNATURE + struct.pack("<HH", *version)


def read_file_header(f: BinaryIO) -> tuple[int, int]:
    """(major, minor) after checking the signature; NotAStream or UnsupportedVersion otherwise."""
    head = f.read(FILE_HEADER_BYTES)
    sig = head[: len(SIGNATURE)]
    if sig != SIGNATURE:
        if not head:
            raise NotAStream("not an .mvinr stream: the file is empty")
        if len(sig) < len(SIGNATURE) and sig == SIGNATURE[: len(sig)]:
            raise TruncatedStream("stream ends inside its signature (truncated file?)")
        if sig[1:4] == SIGNATURE[1:4]:
            raise NotAStream("not an .mvinr stream: the signature is mangled (was it transferred in text mode?)")
        raise NotAStream("not an .mvinr stream (bad signature)")
    if len(head) < FILE_HEADER_BYTES:
        raise TruncatedStream("stream ends inside its version field")
    major, minor = struct.unpack("<HH", head[len(SIGNATURE) :])
    if major != VERSION[0]:
        raise UnsupportedVersion(
            f"stream version {major}.{minor}: this decoder reads version {VERSION[0]}.x; use a newer mvcodec"
        )
    return major, minor


def scan_chunks(f: BinaryIO, size: int) -> Iterator[ChunkRef]:
    """Chunk headers from the current position to the end chunk, checking each length against the file size."""
    pos = f.tell()
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise TruncatedStream(f"stream ends at byte {pos} before its end chunk (truncated file?)")
        length = struct.unpack("<I", head[:4])[0]
        tag = head[4:]
        if not tag.isalpha():
            raise InvalidStream(f"byte {pos}: chunk type {tag!r} is not 4 ASCII letters")
        if length >= MAX_CHUNK_BYTES:
            raise InvalidStream(f"byte {pos}: chunk length {length} is out of range")
        if pos + CHUNK_OVERHEAD + length > size:
            raise TruncatedStream(f"chunk {tag.decode()} at byte {pos} runs past the end of the file (truncated file?)")
        ref = ChunkRef(tag.decode("ascii"), pos + 8, length)
        yield ref
        pos += CHUNK_OVERHEAD + length
        f.seek(pos)


def read_payload(f: BinaryIO, ref: ChunkRef) -> bytes:
    """A chunk's payload after checking its CRC-32."""
    f.seek(ref.offset - 4)
    data = f.read(ref.length + 8)
    if len(data) != ref.length + 8:
        raise TruncatedStream(f"chunk {ref.type} at byte {ref.offset - 8} is cut short")
    crc = struct.unpack("<I", data[-4:])[0]
    if zlib.crc32(data[:-4]) != crc:
        raise CrcMismatch(f"chunk {ref.type} at byte {ref.offset - 8}: CRC mismatch (the file is damaged)")
    return data[4:-4]


class ByteReader:
    """Reads typed little-endian fields from a chunk payload; InvalidStream when they run out."""

    def __init__(self, data: bytes, ctype: str):
        self.data, self.ctype, self.pos = data, ctype, 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise InvalidStream(f"chunk {self.ctype}: payload ends early (field at byte {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def _unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self._take(struct.calcsize(fmt)))[0]

    def u8(self) -> int:
        return self._unpack("B")

    def u16(self) -> int:
        return self._unpack("H")

    def u32(self) -> int:
        return self._unpack("I")

    def i32(self) -> int:
        return self._unpack("i")

    def vu(self) -> int:
        """An unsigned LEB128 varint: 1 to 5 bytes, 7 bits each, least significant first, the high bit set on
        every byte but the last; below 2^32 and in its shortest form (no final 0 byte after another)."""
        value = 0
        for k in range(MAX_VARINT_BYTES):
            byte = self.u8()
            value |= (byte & 0x7F) << (7 * k)
            if not byte & 0x80:
                self.check(byte or k == 0, "a varint is not in its shortest form")
                self.check(value < 1 << 32, f"a varint of {value} is out of range")
                return value
        raise InvalidStream(f"chunk {self.ctype}: a varint runs past {MAX_VARINT_BYTES} bytes")

    def vs(self) -> int:
        """A signed varint: zigzag (0, -1, 1, -2, ... as 0, 1, 2, 3, ...) over vu; -2^31 to 2^31 - 1."""
        u = self.vu()
        return (u >> 1) ^ -(u & 1)

    def raw(self, n: int) -> bytes:
        return self._take(n)

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def array(self, dtype: str, count: int) -> np.ndarray:
        """count little-endian values ('<f4', '<u4'), after checking they fit in what is left."""
        itemsize = np.dtype(dtype).itemsize
        if count < 0 or count * itemsize > self.remaining:
            raise InvalidStream(f"chunk {self.ctype}: {count} values do not fit in the {self.remaining} bytes left")
        return np.frombuffer(self._take(count * itemsize), dtype=dtype).copy()

    def text(self, n: int, what: str) -> str:
        try:
            return self._take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidStream(f"chunk {self.ctype}: {what} is not UTF-8") from None

    def check(self, ok: bool, message: str) -> None:
        """InvalidStream naming the chunk unless ok."""
        if not ok:
            raise InvalidStream(f"chunk {self.ctype}: {message}")

    def end(self) -> None:
        self.check(self.remaining == 0, f"{self.remaining} unexpected bytes at the end of the payload")


class ByteWriter:
    """Builds a chunk payload from typed little-endian fields."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, v: int) -> None:
        self.parts.append(struct.pack("<B", v))

    def u16(self, v: int) -> None:
        self.parts.append(struct.pack("<H", v))

    def u32(self, v: int) -> None:
        self.parts.append(struct.pack("<I", v))

    def i32(self, v: int) -> None:
        self.parts.append(struct.pack("<i", v))

    def vu(self, v: int) -> None:
        """An unsigned LEB128 varint (ByteReader.vu)."""
        if not 0 <= v < 1 << 32:
            raise ValueError(f"varint {v} is out of range")
        out = bytearray()
        while True:
            low, v = v & 0x7F, v >> 7
            out.append(low | (0x80 if v else 0))
            if not v:
                break
        self.parts.append(bytes(out))

    def vs(self, v: int) -> None:
        """A signed zigzag varint (ByteReader.vs)."""
        if not -(1 << 31) <= v < 1 << 31:
            raise ValueError(f"varint {v} is out of range")
        self.vu(((v << 1) ^ (v >> 31)) & 0xFFFFFFFF)

    def raw(self, b: bytes) -> None:
        self.parts.append(bytes(b))

    def array(self, a: np.ndarray, dtype: str) -> None:
        self.parts.append(np.ascontiguousarray(a, dtype=dtype).tobytes())

    def bytes(self) -> bytes:
        return b"".join(self.parts)
