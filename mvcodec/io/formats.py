"""Planar YUV 4:2:0 pixel formats, the video format record and parsers for the CLI's options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from mvcodec.errors import InputError


@dataclass(frozen=True)
class PixFmt:
    """A planar 4:2:0 pixel format, named as FFmpeg names it."""

    name: str
    bit_depth: int
    y4m_tag: str  # the value of the Y4M 'C' parameter that writes this format

    @property
    def dtype(self) -> np.dtype:
        """Sample type in memory and on disk: uint8, or little-endian uint16 above 8 bits."""
        return np.dtype(np.uint8) if self.bit_depth == 8 else np.dtype("<u2")

    @property
    def max_value(self) -> int:
        """Largest code value, 2**bit_depth - 1 (the PSNR peak)."""
        return (1 << self.bit_depth) - 1


PIX_FMTS: dict[str, PixFmt] = {
    p.name: p
    for p in (
        PixFmt("yuv420p", 8, "420"),
        PixFmt("yuv420p10le", 10, "420p10"),
        PixFmt("yuv420p12le", 12, "420p12"),
        PixFmt("yuv420p16le", 16, "420p16"),
    )
}


def pix_fmt(name: str, *, origin: str = "--pix-fmt") -> PixFmt:
    """The PixFmt called `name`; InputError naming `origin` if it is not a supported format."""
    try:
        return PIX_FMTS[name]
    except KeyError:
        raise InputError(
            f"{origin}: unknown or unsupported pixel format '{name}'; "
            f"use one of {', '.join(PIX_FMTS)} (convert others with ffmpeg -pix_fmt yuv420p)"
        ) from None


class Planes(NamedTuple):
    """One frame: the Y plane (H, W) and the U and V planes (H/2, W/2), as uint8 or uint16."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray


@dataclass(frozen=True)
class VideoFormat:
    """Frame size, pixel format and frame rate shared by every view of a source."""

    width: int
    height: int
    pix_fmt: PixFmt
    fps: Fraction

    @property
    def bit_depth(self) -> int:
        return self.pix_fmt.bit_depth

    @property
    def plane_shapes(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """(rows, columns) of Y, U and V (chroma rounded up for an odd size, as FFmpeg stores it: such a
        source is read only to be cropped or scaled to an even size)."""
        c = ((self.height + 1) // 2, (self.width + 1) // 2)
        return (self.height, self.width), c, c

    @property
    def frame_bytes(self) -> int:
        """Bytes in one raw frame: W*H + 2 * (W/2)*(H/2) samples of 1 or 2 bytes."""
        (h, w), (ch, cw), _ = self.plane_shapes
        return (h * w + 2 * ch * cw) * self.pix_fmt.dtype.itemsize

    def planes_from_buffer(self, buf: np.ndarray) -> Planes:
        """Split one frame's flat sample array into Y, U, V views."""
        (h, w), (ch, cw), _ = self.plane_shapes
        n, c = h * w, ch * cw
        return Planes(buf[:n].reshape(h, w), buf[n : n + c].reshape(ch, cw), buf[n + c : n + 2 * c].reshape(ch, cw))


MAX_CODED = 16384  # the largest width or height a stream holds (bitstream_spec.md section 4)


def check_size(width: int, height: int, where: str) -> None:
    """InputError unless the frame size is positive (an odd one can still be read, to be cropped or scaled)."""
    if width <= 0 or height <= 0:
        raise InputError(f"{where}: frame size {width}x{height} is empty; give a size like -s 1920x1080")


def check_even_size(width: int, height: int, where: str) -> None:
    """InputError unless width and height are positive and even, as 4:2:0 coding requires; the message
    names mvenc's own --crop and --scale."""
    check_size(width, height, where)
    if width > MAX_CODED or height > MAX_CODED or width < 2 or height < 2:
        raise InputError(
            f"{where}: frame size {width}x{height} is outside what a stream holds (2 to {MAX_CODED} a side); "
            "crop or scale it with --crop/--scale"
        )
    if width % 2 or height % 2:
        even = f"{width - width % 2}x{height - height % 2}"
        raise InputError(
            f"{where}: frame size {width}x{height} is odd; 4:2:0 needs an even width and height: "
            f"add --crop {even}+0+0 (drops the last column or row) or --scale {even}"
        )


_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
_CROP_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*\+\s*(\d+)\s*\+\s*(\d+)\s*$")


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """(width, height) from 'WxH'."""
    m = _SIZE_RE.match(text)
    if not m:
        raise InputError(f"{option}: cannot read '{text}' as WIDTHxHEIGHT; write it like 1920x1080")
    return int(m.group(1)), int(m.group(2))


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """(width, height, x, y) from 'WxH+X+Y' (X, Y: the top-left corner; '+X+Y' may be left out for +0+0)."""
    m = _CROP_RE.match(text if "+" in text else f"{text}+0+0")
    if not m:
        raise InputError(f"--crop: cannot read '{text}' as WIDTHxHEIGHT+X+Y; write it like 1918x1080+0+0")
    w, h, x, y = (int(g) for g in m.groups())
    return w, h, x, y


def parse_fps(text: str) -> Fraction:
    """Frame rate from 'N', 'N.M' or 'N/D' as an exact Fraction."""
    try:
        fps = Fraction(text.strip()).limit_denominator(1_000_000)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"--fps: cannot read '{text}' as a frame rate; write 30, 29.97 or 30000/1001") from None
    if fps <= 0:
        raise InputError(f"--fps: frame rate must be positive, got '{text}'")
    return fps


def format_fps(fps: Fraction) -> str:
    """'30' for whole rates, else '30000/1001 (29.970)'."""
    if fps.denominator == 1:
        return str(fps.numerator)
    return f"{fps.numerator}/{fps.denominator} ({float(fps):.3f})"
