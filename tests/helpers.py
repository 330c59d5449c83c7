"""Shared test helpers: the bundled sample, synthetic frames, writing copies in other forms, running tools."""

from __future__ import annotations

import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from mvcodec.io import Planes, RawWriter, VideoFormat, Y4MWriter, open_source, pix_fmt
from mvcodec.io.container import planes_frame

SAMPLE_DIR = Path(__file__).parent / "data"


def train_config(preset: str = "fast", **overrides):
    """The fit phase's TrainConfig of a preset's MV-MGINR recipe (the network of the training tests), with
    TrainConfig fields (or epochs) replaced."""
    from mvcodec.encoder.recipe import recipe

    return recipe(preset, arch="mv-mginr", **overrides).train


SAMPLE_FILES = sorted(SAMPLE_DIR.glob("v*_texture_160x96_yuv420p10le.yuv"))


def random_planes(fmt: VideoFormat, seed: int) -> Planes:
    """A frame of uniformly random samples over the format's full code range."""
    rng = np.random.default_rng(seed)
    return Planes(*(rng.integers(0, fmt.pix_fmt.max_value + 1, s).astype(fmt.pix_fmt.dtype) for s in fmt.plane_shapes))


def make_format(width=64, height=36, name="yuv420p", fps=Fraction(30)) -> VideoFormat:
    return VideoFormat(width, height, pix_fmt(name), fps)


def write_video(path: Path, frames: list[Planes], fmt: VideoFormat, codec: str, options: dict | None = None) -> None:
    """Encode frames with PyAV (e.g. libx264 qp=0 or ffv1 for lossless copies)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fmt.fps)
        stream.width, stream.height, stream.pix_fmt = fmt.width, fmt.height, fmt.pix_fmt.name
        stream.options = options or {}
        for planes in frames:
            container.mux(stream.encode(planes_frame(planes, fmt.pix_fmt)))
        container.mux(stream.encode())


def sample_views() -> tuple[VideoFormat, list[list[Planes]]]:
    """The bundled sample's format and all its frames, view by view."""
    src = open_source(SAMPLE_FILES)
    return src.fmt, [list(src.frames(v)) for v in range(src.num_views)]


def write_forms(tmp: Path) -> dict[str, list[str]]:
    """The bundled sample copied into every input form; returns the mvenc arguments for each."""
    fmt, views = sample_views()
    forms: dict[str, list[str]] = {"miv": [str(p) for p in SAMPLE_FILES]}
    stacked = tmp / "all_views.yuv"
    with open(stacked, "wb") as f:
        for p in SAMPLE_FILES:
            f.write(p.read_bytes())
    forms["stacked"] = [str(stacked), "--views", "4", "-s", "160x96", "--pix-fmt", "yuv420p10le"]
    for kind, suffix in (("raw", ".yuv"), ("y4m", ".y4m"), ("mp4", ".mp4"), ("mkv", ".mkv")):
        folder = tmp / kind
        folder.mkdir()
        paths = [folder / f"v{i}{suffix}" for i in range(len(views))]
        for path, frames in zip(paths, views, strict=True):
            if kind in ("raw", "y4m"):
                with (RawWriter if kind == "raw" else Y4MWriter)(path, fmt) as w:
                    for planes in frames:
                        w.write(planes)
            elif kind == "mp4":
                write_video(path, frames, fmt, "libx264", {"qp": "0"})
            else:
                write_video(path, frames, fmt, "ffv1")
        forms[kind] = [str(p) for p in paths]
        if kind == "raw":
            forms[kind] += ["-s", "160x96", "--pix-fmt", "yuv420p10le"]
    return forms


def tool(name: str) -> str:
    """Path of an installed console script of this package."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or name


def run_tool(name: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a console script as a user would, capturing text output."""
    return subprocess.run([tool(name), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)
