"""Reading and writing YUV 4:2:0 video: raw files, Y4M, PyAV containers, multi-view sources.

The multi-view source (and with it PyAV) is imported on first use, so that writing raw or Y4M output,
as the decoder does, needs neither.
"""

from mvcodec.io.formats import PIX_FMTS, PixFmt, Planes, VideoFormat, parse_fps, parse_size, pix_fmt
from mvcodec.io.raw import RawReader, RawWriter
from mvcodec.io.y4m import Y4MReader, Y4MWriter

__all__ = [
    "PIX_FMTS",
    "MultiViewSource",
    "PixFmt",
    "Planes",
    "RawReader",
    "RawWriter",
    "VideoFormat",
    "Y4MReader",
    "Y4MWriter",
    "open_source",
    "parse_fps",
    "parse_size",
    "pix_fmt",
]


def __getattr__(name: str):
    if name in ("MultiViewSource", "open_source"):
        from mvcodec.io import source

        return getattr(source, name)
    raise AttributeError(f"module 'mvcodec.io' has no attribute {name!r}")
