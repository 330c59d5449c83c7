"""Raw planar YUV 4:2:0 files (yuv420p, yuv420p10le, ...): lazy memory-mapped reading, appending writer."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from mvcodec.errors import InputError
from mvcodec.io.formats import Planes, VideoFormat


def raw_frame_count(path: Path, fmt: VideoFormat) -> int:
    """Number of whole frames in a raw file; InputError if its size is not a multiple of a frame."""
    size = path.stat().st_size
    fb = fmt.frame_bytes
    if size == 0:
        raise InputError(f"{path}: file is empty")
    if size % fb:
        raise InputError(
            f"{path}: size {size} bytes is not a whole number of {fmt.width}x{fmt.height} "
            f"{fmt.pix_fmt.name} frames ({fb} bytes each, {size / fb:.2f} frames); "
            "check -s/--size and --pix-fmt"
        )
    return size // fb


class RawReader:
    """Frames [first, first + count) of a raw file, memory-mapped; read(t) copies one frame out."""

    def __init__(self, path: Path, fmt: VideoFormat, first: int = 0, count: int | None = None):
        self.path = Path(path)
        self.fmt = fmt
        total = raw_frame_count(self.path, fmt)
        self.first = first
        self.num_frames = total - first if count is None else count
        if first < 0 or self.num_frames < 0 or first + self.num_frames > total:
            raise ValueError(f"frames {first}..{first + self.num_frames} outside {self.path} ({total} frames)")
        self._map = np.memmap(self.path, dtype=fmt.pix_fmt.dtype, mode="r")
        self._samples = fmt.frame_bytes // fmt.pix_fmt.dtype.itemsize

    def read(self, t: int) -> Planes:
        """Frame t (0-based within this reader) as native-endian uint8/uint16 planes."""
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} outside 0..{self.num_frames - 1} of {self.path}")
        start = (self.first + t) * self._samples
        buf = np.array(self._map[start : start + self._samples], dtype=self.fmt.pix_fmt.dtype.newbyteorder("="))
        return self.fmt.planes_from_buffer(buf)

    def close(self) -> None:
        self._map = None


def frame_bytes_of(planes: Planes, fmt: VideoFormat) -> bytes:
    """One frame's planes serialised as raw little-endian samples, after checking their shapes."""
    out = []
    for plane, shape in zip(planes, fmt.plane_shapes, strict=True):
        if plane.shape != shape:
            raise ValueError(f"plane of shape {plane.shape} where {shape} is expected")
        out.append(np.ascontiguousarray(plane, dtype=fmt.pix_fmt.dtype).tobytes())
    return b"".join(out)


class RawWriter:
    """Appends frames to a raw YUV file (or any binary stream, e.g. stdout)."""

    frame_prefix = b""

    def __init__(self, target: Path | BinaryIO, fmt: VideoFormat):
        self.fmt = fmt
        self._own = not hasattr(target, "write")
        self._f: BinaryIO = open(target, "wb") if self._own else target  # noqa: SIM115
        self._f.write(self.header())
        self.frames_written = 0

    def header(self) -> bytes:
        """Bytes written once before the first frame (none for raw YUV)."""
        return b""

    def write(self, planes: Planes) -> None:
        self._f.write(self.frame_prefix + frame_bytes_of(planes, self.fmt))
        self.frames_written += 1

    def close(self) -> None:
        if self._own:
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self) -> RawWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
