"""Reading and writing YUV 4:2:0 video: raw files, Y4M, PyAV containers, multi-view sources."""

from mvcodec.io.formats import PIX_FMTS, PixFmt, Planes, VideoFormat, parse_fps, parse_size, pix_fmt
from mvcodec.io.raw import RawReader, RawWriter
from mvcodec.io.source import MultiViewSource, open_source
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
