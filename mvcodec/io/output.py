"""Writing decoded views: output file names (MIV style or Y4M) and writers that hash what they write."""

from __future__ import annotations

import hashlib
from typing import BinaryIO

from mvcodec.io.formats import VideoFormat
from mvcodec.io.raw import RawWriter
from mvcodec.io.y4m import Y4MWriter


def output_name(view_name: str, fmt: VideoFormat, y4m: bool = False) -> str:
    """File name of a view's output: MIV style `<view>_texture_<W>x<H>_<pix_fmt>.yuv`, or `<view>.y4m`."""
    return f"{view_name}.y4m" if y4m else f"{view_name}_texture_{fmt.width}x{fmt.height}_{fmt.pix_fmt.name}.yuv"


class HashingWriter:
    """Wraps a binary output (or None: hash only) so that everything written to it is also fed to an MD5."""

    def __init__(self, f: BinaryIO | None):
        self.f, self.md5 = f, hashlib.md5()

    def write(self, data: bytes) -> int:
        self.md5.update(data)
        return self.f.write(data) if self.f is not None else len(data)

    def flush(self) -> None:
        if self.f is not None:
            self.f.flush()


def view_writer(target: BinaryIO | None, fmt: VideoFormat, y4m: bool) -> tuple[HashingWriter, RawWriter | Y4MWriter]:
    """(the MD5 sink, the frame writer) of one view's output: raw YUV or Y4M into target."""
    sink = HashingWriter(target)
    return sink, (Y4MWriter if y4m else RawWriter)(sink, fmt)
