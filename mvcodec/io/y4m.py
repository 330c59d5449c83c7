"""YUV4MPEG2 (.y4m) files, 4:2:0 at 8 to 16 bits: lazy memory-mapped reader and writer."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mvcodec.errors import InputError
from mvcodec.io.formats import PIX_FMTS, Planes, VideoFormat, check_size
from mvcodec.io.raw import RawWriter

SIGNATURE = b"YUV4MPEG2"
_MAX_HEADER = 1024  # bytes; a stream header or FRAME line longer than this is not Y4M

# Y4M chroma tags that describe 4:2:0 data, and the pixel format they carry.
_CHROMA_TAGS = {"420": "yuv420p", "420jpeg": "yuv420p", "420paldv": "yuv420p", "420mpeg2": "yuv420p"}
_CHROMA_TAGS.update({p.y4m_tag: p.name for p in PIX_FMTS.values()})
# The chroma siting each 8-bit tag states, as FFmpeg reads and writes them (C420 and a missing C tag mean
# 420jpeg). The tags of more than 8 bits state none: such files are taken as sited left, the video default.
SITING_OF_TAG = {"420": "center", "420jpeg": "center", "420mpeg2": "left", "420paldv": "top-left"}
TAG_OF_SITING = {"center": "420jpeg", "left": "420mpeg2", "top-left": "420paldv"}


def _ratio(value: str, path: Path, what: str) -> Fraction | None:
    try:
        num, den = (int(x) for x in value.split(":"))
    except ValueError:
        raise InputError(f"{path}: Y4M {what} '{value}' is not of the form N:D") from None
    return Fraction(num, den) if num > 0 and den > 0 else None


class Y4MReader:
    """Reads a Y4M file's header, indexes its frames, and copies frames out of a memory map."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            head = f.read(_MAX_HEADER)
        end = head.find(b"\n")
        if not head.startswith(SIGNATURE) or end < 0:
            raise InputError(f"{self.path}: not a Y4M file (no YUV4MPEG2 header line)")
        width = height = 0
        fps: Fraction | None = None
        chroma = "420jpeg"
        self.aspect: Fraction | None = None
        for token in head[len(SIGNATURE) : end].decode("ascii", "replace").split():
            key, value = token[0], token[1:]
            if key == "W":
                width = int(value) if value.isdigit() else 0
            elif key == "H":
                height = int(value) if value.isdigit() else 0
            elif key == "F":
                fps = _ratio(value, self.path, "frame rate")
            elif key == "A":
                self.aspect = _ratio(value, self.path, "aspect")
            elif key == "C":
                chroma = value
            elif key == "I" and value not in ("p", "?"):
                raise InputError(f"{self.path}: interlaced Y4M (I{value}) is not supported; deinterlace first")
        check_size(width, height, str(self.path))
        if chroma not in _CHROMA_TAGS:
            raise InputError(
                f"{self.path}: Y4M chroma format C{chroma} is not 4:2:0 at 8/10/12/16 bits; "
                "convert with ffmpeg -pix_fmt yuv420p (or yuv420p10le)"
            )
        if fps is None:
            raise InputError(f"{self.path}: Y4M header has no valid frame rate (F); add one or pass --fps")
        self.fmt = VideoFormat(width, height, PIX_FMTS[_CHROMA_TAGS[chroma]], fps)
        self.siting = SITING_OF_TAG.get(chroma, "left")
        self._offsets = self._index(end + 1)
        self.num_frames = len(self._offsets)
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r")

    def _index(self, pos: int) -> list[int]:
        """Byte offsets of every frame's samples, checking each FRAME marker and that no frame is cut short."""
        fb = self.fmt.frame_bytes
        size = self.path.stat().st_size
        offsets = []
        with open(self.path, "rb") as f:
            while pos < size:
                f.seek(pos)
                line = f.read(_MAX_HEADER)
                nl = line.find(b"\n")
                if not line.startswith(b"FRAME") or nl < 0:
                    raise InputError(
                        f"{self.path}: no FRAME marker at byte {pos} (frame {len(offsets)}); "
                        "the file is damaged or its header's size/format is wrong"
                    )
                data = pos + nl + 1
                if data + fb > size:
                    raise InputError(
                        f"{self.path}: frame {len(offsets)} is truncated ({size - data} of {fb} bytes); "
                        "the file is incomplete: re-export it or use -f/--frames to stop before it"
                    )
                offsets.append(data)
                pos = data + fb
        if not offsets:
            raise InputError(f"{self.path}: Y4M file holds no frames")
        return offsets

    def read(self, t: int) -> Planes:
        """Frame t as native-endian uint8/uint16 planes."""
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} outside 0..{self.num_frames - 1} of {self.path}")
        dtype = self.fmt.pix_fmt.dtype
        raw = self._map[self._offsets[t] : self._offsets[t] + self.fmt.frame_bytes]
        buf = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
        return self.fmt.planes_from_buffer(buf)

    def close(self) -> None:
        self._map = None


def y4m_header(fmt: VideoFormat, aspect: Fraction = Fraction(1, 1), siting: str = "left") -> bytes:
    """The YUV4MPEG2 stream header line for `fmt` (progressive; chroma tag C420mpeg2, C420jpeg or C420paldv by
    the chroma siting at 8 bits, C420p10/C420p12/C420p16 above, which state no siting)."""
    tag = TAG_OF_SITING[siting] if fmt.bit_depth == 8 else fmt.pix_fmt.y4m_tag
    return (
        f"YUV4MPEG2 W{fmt.width} H{fmt.height} F{fmt.fps.numerator}:{fmt.fps.denominator} Ip "
        f"A{aspect.numerator}:{aspect.denominator} C{tag}\n"
    ).encode("ascii")


class Y4MWriter(RawWriter):
    """Writes a Y4M stream frame by frame to a path or a binary stream (stdout)."""

    frame_prefix = b"FRAME\n"

    def __init__(
        self, target: Path | BinaryIO, fmt: VideoFormat, aspect: Fraction = Fraction(1, 1), siting: str = "left"
    ):
        self.aspect, self.siting = aspect, siting
        super().__init__(target, fmt)

    def header(self) -> bytes:
        return y4m_header(self.fmt, self.aspect, self.siting)
