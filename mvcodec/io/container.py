"""Compressed video files (mp4, mkv, ...) decoded with PyAV, frames converted to a 4:2:0 pixel format."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from mvcodec.errors import InputError
from mvcodec.io.formats import PIX_FMTS, PixFmt, Planes, VideoFormat, check_size


def default_pix_fmt(source_bits: int) -> PixFmt:
    """The 4:2:0 format that keeps a source of `source_bits` bits per sample without loss of depth."""
    for p in PIX_FMTS.values():
        if p.bit_depth >= source_bits:
            return p
    return PIX_FMTS["yuv420p16le"]


def frame_planes(frame: av.VideoFrame, fmt: PixFmt) -> Planes:
    """Y, U, V of a decoded frame, converted to `fmt` by PyAV (libswscale) and copied out."""
    if frame.format.name != fmt.name:
        frame = frame.reformat(format=fmt.name)
    planes = []
    for plane in frame.planes[:3]:
        rows = np.frombuffer(plane, dtype=fmt.dtype).reshape(plane.height, -1)
        planes.append(rows[:, : plane.width].astype(fmt.dtype.newbyteorder("=")))
    return Planes(*planes)


def planes_frame(planes: Planes, fmt: PixFmt) -> av.VideoFrame:
    """A PyAV frame of format `fmt` holding the given planes (the inverse of frame_planes)."""
    h, w = planes.y.shape
    frame = av.VideoFrame(w, h, fmt.name)
    for plane, data in zip(frame.planes, planes, strict=True):
        rows = np.zeros((plane.height, plane.line_size // fmt.dtype.itemsize), dtype=fmt.dtype)
        rows[:, : plane.width] = data
        plane.update(rows.tobytes())
    return frame


class ContainerReader:
    """The first video stream of a file PyAV can open; frames are decoded in order, on demand."""

    def __init__(self, path: Path, pix_fmt: PixFmt | None = None):
        self.path = Path(path)
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise InputError(f"{self.path}: holds no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                self.num_frames = sum(1 for p in container.demux(stream) if p.size > 0)
            first = next(self._decode(), None)
        except av.FFmpegError as e:
            raise InputError(f"{self.path}: cannot read as video ({e}); is it a video file?") from None
        if first is None or self.num_frames == 0:
            raise InputError(f"{self.path}: video stream holds no frames")
        check_size(first.width, first.height, str(self.path))
        src_bits = max(c.bits for c in first.format.components)
        fps = Fraction(rate) if rate else Fraction(0)
        self.fmt = VideoFormat(first.width, first.height, pix_fmt or default_pix_fmt(src_bits), fps)
        self.source_pix_fmt = first.format.name
        self._frames: Iterator[av.VideoFrame] | None = None
        self._next = 0

    def _decode(self) -> Iterator[av.VideoFrame]:
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from container.decode(stream)

    def read(self, t: int) -> Planes:
        """Frame t, decoding forward from the last frame read (restarting for a frame behind it)."""
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} outside 0..{self.num_frames - 1} of {self.path}")
        if self._frames is None or t < self._next:
            self.close()
            self._frames, self._next = self._decode(), 0
        try:
            while True:
                frame = next(self._frames, None)
                if frame is None:
                    raise InputError(f"{self.path}: decoding ended after {self._next} frames, before frame {t}")
                self._next += 1
                if self._next - 1 == t:
                    break
        except av.FFmpegError as e:
            raise InputError(f"{self.path}: decoding failed at frame {self._next} ({e})") from None
        if (frame.width, frame.height) != (self.fmt.width, self.fmt.height):
            raise InputError(
                f"{self.path}: frame {t} is {frame.width}x{frame.height}, the stream started at "
                f"{self.fmt.width}x{self.fmt.height}; size changes inside a stream are not supported"
            )
        return frame_planes(frame, self.fmt.pix_fmt)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None
