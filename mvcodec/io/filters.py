"""mvenc's source filters: --crop WxH+X+Y, then --scale WxH (the order of FFmpeg's crop,scale), applied to
each frame as it is read; the result must be of an even size. Scaling is libswscale's bicubic through PyAV,
as FFmpeg's scale filter does by default (and tools/rd_bench.py's cuts)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvcodec.errors import InputError
from mvcodec.io.container import frame_planes, planes_frame
from mvcodec.io.formats import MAX_CODED, Planes, VideoFormat


@dataclass(frozen=True)
class SourceFilters:
    """A crop (width, height, x, y) and a scale (width, height), either None."""

    crop: tuple[int, int, int, int] | None = None
    scale: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return self.crop is not None or self.scale is not None

    def describe(self) -> dict:
        """The filters as mvenc's options spell them ({} without any)."""
        out = {}
        if self.crop is not None:
            w, h, x, y = self.crop
            out["crop"] = f"{w}x{h}+{x}+{y}"
        if self.scale is not None:
            out["scale"] = f"{self.scale[0]}x{self.scale[1]}"
        return out

    def check(self, fmt: VideoFormat, where: str) -> VideoFormat:
        """The format after the filters; InputError where they do not fit the source."""
        width, height = fmt.width, fmt.height
        if self.crop is not None:
            w, h, x, y = self.crop
            if w <= 0 or h <= 0 or w % 2 or h % 2 or x % 2 or y % 2:
                raise InputError(
                    f"--crop {w}x{h}+{x}+{y}: width, height and offsets must be even (4:2:0 chroma covers 2x2 "
                    "pixels) and the size positive"
                )
            if x + w > width or y + h > height:
                raise InputError(
                    f"--crop {w}x{h}+{x}+{y} reaches outside the {width}x{height} frame of {where}; "
                    "make it fit (WxH+X+Y: size, then the top-left corner)"
                )
            width, height = w, h
        if self.scale is not None:
            w, h = self.scale
            if not (2 <= w <= MAX_CODED and 2 <= h <= MAX_CODED) or w % 2 or h % 2:
                raise InputError(f"--scale {w}x{h}: width and height must be even, 2 to {MAX_CODED}, for 4:2:0")
            width, height = w, h
        return VideoFormat(width, height, fmt.pix_fmt, fmt.fps)

    def apply(self, planes: Planes, fmt: VideoFormat) -> Planes:
        """One frame's planes filtered to `fmt` (the format check() gave)."""
        y, u, v = planes
        if self.crop is not None:
            w, h, x, top = self.crop
            y = y[top : top + h, x : x + w]
            u, v = (c[top // 2 : (top + h) // 2, x // 2 : (x + w) // 2] for c in (u, v))
        planes = Planes(*(np.ascontiguousarray(p) for p in (y, u, v)))
        if self.scale is not None and (fmt.width, fmt.height) != planes.y.shape[::-1]:
            frame = planes_frame(planes, fmt.pix_fmt)
            planes = frame_planes(
                frame.reformat(width=fmt.width, height=fmt.height, interpolation="BICUBIC"), fmt.pix_fmt
            )
        return planes


class FilteredReader:
    """A view reader whose frames pass through the source filters."""

    def __init__(self, inner, filters: SourceFilters):
        self.inner, self.filters = inner, filters
        self.path: Path = inner.path
        self.num_frames = inner.num_frames
        self.siting = getattr(inner, "siting", "left")
        self.fmt = filters.check(inner.fmt, str(inner.path))

    def read(self, t: int) -> Planes:
        return self.filters.apply(self.inner.read(t), self.fmt)

    def close(self) -> None:
        self.inner.close()
