"""Multi-view sources: any of the accepted input forms opened as views x frames of YUV 4:2:0 planes.

Accepted forms, all giving the same `MultiViewSource`:
- one raw file holding all views one after another (view-major), split with `views=N`;
- several raw files, one per view, in the order given;
- MIV-named raw files (`v3_texture_1920x1080_yuv420p10le.yuv`): size and pixel format from the name,
  view name `v3`, views sorted by their number;
- Y4M files, one per view;
- any container PyAV decodes (mp4, mkv, ...), one per view;
- a directory, standing for the media files in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

from mvcodec.errors import InputError
from mvcodec.io.container import ContainerReader
from mvcodec.io.filters import FilteredReader, SourceFilters
from mvcodec.io.formats import (
    PixFmt,
    Planes,
    VideoFormat,
    check_even_size,
    check_size,
    format_fps,
    pix_fmt,
)
from mvcodec.io.raw import RawReader, raw_frame_count
from mvcodec.io.y4m import Y4MReader

DEFAULT_RAW_FPS = Fraction(30)
RAW_SUFFIXES = {".yuv", ".raw"}
Y4M_SUFFIXES = {".y4m"}
CONTAINER_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mxf", ".ivf", ".nut"}
_MIV_RE = re.compile(r"_(\d+)x(\d+)_([a-z0-9]+)\.yuv$", re.IGNORECASE)
_VIEW_RE = re.compile(r"^v(\d+)(?=_|\.|$)")


class ViewReader(Protocol):
    """One view's frames: a format, a frame count and random-access reads."""

    fmt: VideoFormat
    num_frames: int
    path: Path

    def read(self, t: int) -> Planes: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class MivName:
    """What a MIV-style file name says: view number (if it starts with v<k>), size and pixel format."""

    view: int | None
    width: int | None
    height: int | None
    pix_fmt: str | None


def parse_miv_name(path: Path) -> MivName:
    """Parse `v<k>_..._<W>x<H>_<pix_fmt>.yuv`; each part is None where the name does not give it."""
    m, v = _MIV_RE.search(path.name), _VIEW_RE.match(path.name)
    view = int(v.group(1)) if v else None
    if not m:
        return MivName(view, None, None, None)
    return MivName(view, int(m.group(1)), int(m.group(2)), m.group(3).lower())


@dataclass
class MultiViewSource:
    """Views x frames of Y, U, V planes with a common format; frame t of a view is read on demand."""

    fmt: VideoFormat
    view_names: list[str]
    readers: list[ViewReader]
    num_frames: int
    seek: int = 0
    siting: str = "left"  # chroma siting (mvcodec.color.SITINGS), from a Y4M tag; raw and containers: left
    filters: SourceFilters = SourceFilters()

    @property
    def num_views(self) -> int:
        return len(self.readers)

    @property
    def raw_bytes(self) -> int:
        """Size of the selected frames of all views as raw YUV, in bytes."""
        return self.num_views * self.num_frames * self.fmt.frame_bytes

    def read(self, view: int, t: int) -> Planes:
        """Frame t (counted from the seek point) of a view."""
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} outside 0..{self.num_frames - 1}")
        return self.readers[view].read(self.seek + t)

    def frames(self, view: int) -> Iterator[Planes]:
        """The selected frames of one view, in order."""
        for t in range(self.num_frames):
            yield self.read(view, t)

    def close(self) -> None:
        for r in self.readers:
            r.close()

    def describe(self) -> dict:
        """What the source holds, as a JSON-ready dict (the `--dry-run --stats` record)."""
        f = self.fmt
        return {
            "views": self.num_views,
            "frames": self.num_frames,
            "width": f.width,
            "height": f.height,
            "pix_fmt": f.pix_fmt.name,
            "bit_depth": f.bit_depth,
            "fps": float(f.fps),
            "fps_fraction": f"{f.fps.numerator}/{f.fps.denominator}",
            "seek": self.seek,
            "view_names": list(self.view_names),
            "raw_bytes": self.raw_bytes,
            "chroma_siting": self.siting,
            **self.filters.describe(),
        }

    def summary_lines(self) -> list[str]:
        """A human-readable summary of the source, the same whatever form it was read from."""
        f = self.fmt
        last = self.seek + self.num_frames - 1
        lines = [
            f"views    {self.num_views}",
            f"frames   {self.num_frames} per view (source frames {self.seek}-{last})",
            f"size     {f.width}x{f.height}",
            f"pix_fmt  {f.pix_fmt.name} ({f.bit_depth}-bit)",
            f"fps      {format_fps(f.fps)}",
            f"chroma   sited {self.siting}",
        ]
        lines += [f"{k:<8} {v}" for k, v in self.filters.describe().items()]
        lines += [f"view {i:<3} {name}" for i, name in enumerate(self.view_names)]
        lines.append(f"raw      {self.raw_bytes} bytes ({self.raw_bytes / 2**20:.2f} MiB)")
        return lines


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    """Input paths with directories replaced by the media files they hold."""
    media = RAW_SUFFIXES | Y4M_SUFFIXES | CONTAINER_SUFFIXES
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted((q for q in p.iterdir() if q.suffix.lower() in media and q.is_file()), key=_natural)
            if not found:
                raise InputError(f"{p}: directory holds no .yuv, .y4m or video files")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file; check the path")
    return out


def _natural(p: Path) -> list:
    """Sort key that orders numbers inside names by value (v2 before v10)."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def _raw_format(path: Path, size, fmt: PixFmt | None, fps: Fraction | None) -> VideoFormat:
    """A raw file's format from the options and its MIV-style name; InputError where they disagree."""
    name = parse_miv_name(path)
    if name.width is not None:
        if size is not None and size != (name.width, name.height):
            raise InputError(
                f"{path}: name says {name.width}x{name.height} but -s/--size says {size[0]}x{size[1]}; "
                "drop the option or rename the file"
            )
        size = (name.width, name.height)
        named = pix_fmt(name.pix_fmt, origin=str(path))
        if fmt is not None and fmt != named:
            raise InputError(
                f"{path}: name says {named.name} but --pix-fmt says {fmt.name}; drop the option or rename the file"
            )
        fmt = named
    if size is None:
        raise InputError(
            f"{path}: raw YUV has no header; give its size with -s WxH "
            "(or name it like v0_texture_1920x1080_yuv420p10le.yuv)"
        )
    check_size(*size, str(path))
    return VideoFormat(size[0], size[1], fmt or pix_fmt("yuv420p"), fps or DEFAULT_RAW_FPS)


def _with_overrides(reader: ViewReader, size, fmt: PixFmt | None, fps: Fraction | None) -> ViewReader:
    """Check -s/--pix-fmt against a self-describing file and apply --fps; InputError on disagreement."""
    f = reader.fmt
    if size is not None and size != (f.width, f.height):
        raise InputError(f"{reader.path}: file is {f.width}x{f.height} but -s/--size says {size[0]}x{size[1]}; drop -s")
    if fmt is not None and isinstance(reader, Y4MReader) and fmt != f.pix_fmt:
        raise InputError(f"{reader.path}: file is {f.pix_fmt.name} but --pix-fmt says {fmt.name}; drop --pix-fmt")
    if fps is not None:
        reader.fmt = VideoFormat(f.width, f.height, f.pix_fmt, fps)
    if reader.fmt.fps <= 0:
        raise InputError(f"{reader.path}: frame rate unknown; pass --fps")
    return reader


def _open_view_file(path: Path, size, fmt: PixFmt | None, fps: Fraction | None) -> ViewReader:
    suffix = path.suffix.lower()
    if suffix in RAW_SUFFIXES:
        return RawReader(path, _raw_format(path, size, fmt, fps))
    if suffix in Y4M_SUFFIXES:
        return _with_overrides(Y4MReader(path), size, fmt, fps)
    return _with_overrides(ContainerReader(path, fmt), size, fmt, fps)


def _view_names(files: list[Path], n: int) -> list[str]:
    """v<k> for MIV-named files, else each file's stem; v0..v<n-1> where that would not be unique."""
    if len(files) == n:
        names = []
        for f in files:
            k = parse_miv_name(f).view
            names.append(f"v{k}" if k is not None else f.stem)
        if len(set(names)) == n:
            return names
    return [f"v{i}" for i in range(n)]


def open_source(
    paths: Sequence[str | Path],
    *,
    size: tuple[int, int] | None = None,
    pix_fmt_name: str | None = None,
    fps: Fraction | None = None,
    frames: int | None = None,
    seek: int = 0,
    views: int | None = None,
    filters: SourceFilters | None = None,
) -> MultiViewSource:
    """Open and validate a multi-view source; every problem is an InputError naming the file and the fix.
    `filters` crop and scale every view as it is read (checked against the first view's size)."""
    if not paths:
        raise InputError("no input given; pass one file per view, a directory, or one file with --views N")
    fmt = pix_fmt(pix_fmt_name) if pix_fmt_name else None
    if seek < 0:
        raise InputError(f"--seek: start frame must be 0 or more, got {seek}")
    if frames is not None and frames <= 0:
        raise InputError(f"-f/--frames: must be 1 or more, got {frames}")
    if views is not None and views <= 0:
        raise InputError(f"--views: must be 1 or more, got {views}")
    files = _expand(paths)
    numbered = [parse_miv_name(f).view for f in files]
    if len(files) > 1 and all(k is not None for k in numbered):
        if len(set(numbered)) != len(numbered):
            raise InputError("two input files name the same view v<k>; pass each view once")
        files = [f for _, f in sorted(zip(numbered, files, strict=True))]

    if views is not None and views > 1 and len(files) == 1:
        readers = _split_stacked(files[0], views, size, fmt, fps)
    elif views is not None and views != len(files):
        raise InputError(
            f"--views {views} but {len(files)} input files: pass one file per view, "
            "or a single raw file holding all views with --views N"
        )
    else:
        readers = [_open_view_file(f, size, fmt, fps) for f in files]

    first = readers[0]
    for r in readers[1:]:
        a, b = first.fmt, r.fmt
        if (a.width, a.height) != (b.width, b.height):
            raise InputError(
                f"{r.path}: frame size {b.width}x{b.height} differs from {a.width}x{a.height} of {first.path}; "
                "all views must have the same size"
            )
        if a.pix_fmt != b.pix_fmt:
            raise InputError(
                f"{r.path}: pixel format {b.pix_fmt.name} differs from {a.pix_fmt.name} of {first.path}; "
                "convert the views to one format (or pass --pix-fmt for compressed inputs)"
            )
        if a.fps != b.fps:
            raise InputError(
                f"{r.path}: frame rate {format_fps(b.fps)} differs from {format_fps(a.fps)} of {first.path}; "
                "pass --fps to set one rate for all views"
            )
        if getattr(r, "siting", "left") != getattr(first, "siting", "left"):
            raise InputError(
                f"{r.path}: chroma siting {r.siting} differs from {first.siting} of {first.path}; "
                "convert the views to one siting"
            )
    siting = getattr(first, "siting", "left")
    filters = filters or SourceFilters()
    if filters:
        readers = [FilteredReader(r, filters) for r in readers]
        first = readers[0]
    check_even_size(first.fmt.width, first.fmt.height, str(first.path))

    if frames is None:
        counts = {r.num_frames for r in readers}
        if len(counts) > 1:
            detail = ", ".join(f"{r.path.name}: {r.num_frames}" for r in readers)
            raise InputError(f"views hold different numbers of frames ({detail}); pass -f/--frames N to use N")
        frames = counts.pop() - seek
        if frames <= 0:
            raise InputError(f"--seek {seek}: the views hold only {first.num_frames} frames; seek to an earlier one")
    for r in readers:
        if r.num_frames < seek + frames:
            raise InputError(
                f"{r.path}: holds {r.num_frames} frames, fewer than the {seek + frames} needed "
                f"(--seek {seek} + -f {frames}); lower -f/--frames or --seek"
            )
    return MultiViewSource(first.fmt, _view_names(files, len(readers)), readers, frames, seek, siting, filters)


def _split_stacked(path: Path, views: int, size, fmt: PixFmt | None, fps: Fraction | None) -> list[RawReader]:
    """One raw file holding `views` views one after another, as one reader per view."""
    if path.suffix.lower() not in RAW_SUFFIXES:
        raise InputError(f"{path}: --views N splits one raw .yuv file; give other files one per view")
    vf = _raw_format(path, size, fmt, fps)
    total = raw_frame_count(path, vf)
    if total % views:
        raise InputError(
            f"{path}: holds {total} frames, which do not split evenly into --views {views}; "
            "check --views, -s/--size and --pix-fmt"
        )
    per_view = total // views
    return [RawReader(path, vf, first=i * per_view, count=per_view) for i in range(views)]
