"""Writing decoded views: output file names (MIV style or Y4M), a file per view or one view on stdout,
every byte MD5-hashed, and checking those MD5s against an md5sum-style file."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import BinaryIO

from mvcodec.errors import InputError
from mvcodec.io.formats import Planes, VideoFormat
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


class ViewOutputs:
    """The outputs of a decode, as a context manager: with `target` a directory, a file per view (named by
    output_name); "-", the one view on stdout; None, nothing written (hash only). write(view, planes)
    takes the views given at construction, by index. Files are written as `.<name>.partial` and take their
    names only when the context ends without an error; on an error they are removed, so a failed decode
    leaves no file that looks finished (a killed one leaves the hidden .partial files at most) and an
    earlier output of the same name stays as it was."""

    def __init__(
        self,
        target: str | Path | None,
        views: dict[int, str],
        fmt: VideoFormat,
        y4m: bool = False,
        siting: str = "left",
    ):
        self.target, self.fmt, self.y4m, self.siting = target, fmt, y4m, siting
        self.names = {v: output_name(name, fmt, y4m) for v, name in views.items()}
        self._files: list[tuple[BinaryIO, Path, Path]] = []  # (file, its partial path, its final path)
        self._writers: dict[int, tuple[HashingWriter, RawWriter | Y4MWriter]] = {}

    def __enter__(self) -> ViewOutputs:
        if self.target not in (None, "-"):
            Path(self.target).mkdir(parents=True, exist_ok=True)
        try:
            for v, name in self.names.items():
                if self.target == "-":
                    f = sys.stdout.buffer
                elif self.target is not None:
                    final = Path(self.target) / name
                    partial = final.with_name(f".{name}.partial")
                    f = open(partial, "wb")  # noqa: SIM115 (closed in __exit__)
                    self._files.append((f, partial, final))
                else:
                    f = None
                sink = HashingWriter(f)
                writer = Y4MWriter(sink, self.fmt, siting=self.siting) if self.y4m else RawWriter(sink, self.fmt)
                self._writers[v] = (sink, writer)
        except BaseException as e:
            self.__exit__(type(e))  # removes what was opened
            raise
        return self

    def write(self, view: int, planes: Planes) -> None:
        self._writers[view][1].write(planes)

    def md5s(self) -> dict[str, str]:
        """File name -> MD5 (hex) of everything written so far, in view order."""
        return {self.names[v]: sink.md5.hexdigest() for v, (sink, _) in self._writers.items()}

    def __exit__(self, exc_type=None, *exc) -> None:
        files, self._files = self._files, []
        try:
            for f, _, _ in files:
                f.close()  # every file closed first: a close that fails (a full disk) fails the whole
            if exc_type is None:
                for _, partial, final in files:
                    partial.replace(final)
        except BaseException:
            exc_type = OSError
            raise
        finally:
            for f, partial, _ in files:
                if exc_type is not None:
                    f.close()
                    partial.unlink(missing_ok=True)


def read_md5_file(path: Path) -> dict[str, str]:
    """name -> MD5 from md5sum-style lines ('<hex>  <name>'); InputError where there are none."""
    sums = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2 and len(parts[0]) == 32:
            sums[parts[1].lstrip("*").strip()] = parts[0].lower()
    if not sums:
        raise InputError(f"--check-md5: {path} holds no '<md5>  <file name>' lines")
    return sums


def md5_lines(sums: dict[str, str]) -> list[str]:
    """md5sum's format: '<hex>  <name>'."""
    return [f"{digest}  {name}" for name, digest in sums.items()]


def md5_mismatches(sums: dict[str, str], expected: dict[str, str]) -> dict[str, str]:
    """name -> 'MD5 mismatch' or 'no checksum given', for each output that does not match."""
    return {
        n: ("no checksum given" if n not in expected else "MD5 mismatch")
        for n, d in sums.items()
        if expected.get(n) != d
    }
