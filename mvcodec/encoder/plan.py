"""The plan of an encode: quality level -> model size and lambda, rate target, segments, checkpoints."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from mvcodec.errors import InputError
from mvcodec.io import MultiViewSource
from mvcodec.model.base import Architecture, Shape

QUALITY_LEVELS = range(0, 9)
DEFAULT_QUALITY = 4
LAMBDA_AT_4 = 8.0  # QAT's rate-distortion weight at -q 4 (R in bits per pixel); it doubles per level
DEFAULT_SEGMENT_FRAMES = 100  # the papers fit 65-100 frames per model


def check_quality(q: int | None) -> int:
    """The quality level (default 4); InputError outside 0..8."""
    if q is None:
        return DEFAULT_QUALITY
    if q not in QUALITY_LEVELS:
        raise InputError(f"-q: quality level must be 0 to 8, got {q}")
    return q


def params_for_quality(arch: Architecture, q: int, shape: Shape) -> int:
    """Parameter budget of quality level q (0..8): doubling per level, with a floor for small inputs."""
    scale = 2.0 ** (check_quality(q) - DEFAULT_QUALITY)
    pixels = shape.views * shape.frames * shape.width * shape.height
    return round(max(arch.params_per_pixel_at_4 * pixels, arch.min_params_at_4) * scale)


def lambda_for_quality(q: int | None, arch: Architecture | None = None) -> float:
    """lambda of L = D + R / lambda for quality level q (default 4): the architecture's at 4, doubling a level."""
    at_4 = arch.lambda_at_4 if arch is not None else LAMBDA_AT_4
    return at_4 * 2.0 ** (check_quality(q) - DEFAULT_QUALITY)


def parse_params(text: str) -> int:
    """A parameter count from '250000', '250k' or '1.5M'."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*", text)
    if not m:
        raise InputError(f"--params: cannot read '{text}'; write a count like 250000, 250k or 1.5M")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if value < 1000:
        raise InputError(f"--params: {text} is too small; give at least 1k parameters")
    return round(value)


def params_for_bytes(arch: Architecture, target_bytes: int) -> int:
    """Model size whose compressed stream is expected to take target_bytes."""
    return max(round(target_bytes * 8 / arch.bits_per_param), 1000)


def check_rate(bpp: float | None, kbps: float | None) -> None:
    """InputError unless at most one of --bpp and -b is given, and it is positive."""
    if bpp is not None and kbps is not None:
        raise InputError("give either --bpp or -b/--bitrate, not both")
    if kbps is not None and not kbps > 0:
        raise InputError(f"-b/--bitrate must be positive, got {kbps}")
    if bpp is not None and not bpp > 0:
        raise InputError(f"--bpp must be positive, got {bpp}")


def target_bpp_of(source: MultiViewSource, bpp: float | None, kbps: float | None) -> float | None:
    """The rate to reach in bits per pixel, from --bpp or from -b/--bitrate (kbit/s at the source's fps)."""
    check_rate(bpp, kbps)
    if kbps is not None:
        f = source.fmt
        return kbps * 1000 / (float(f.fps) * source.num_views * f.width * f.height)
    return bpp


def shape_of(source: MultiViewSource) -> Shape:
    return Shape(source.num_views, source.num_frames, source.fmt.height, source.fmt.width)


def config_at_least(arch: Architecture, budget: int, shape: Shape):
    """The model of a budget; where the budget is below the smallest model for this many views and frames
    (the grids grow with both), the budget is raised until a model fits."""
    for _ in range(40):
        try:
            return arch.size_for(shape, budget)
        except InputError:
            budget = round(budget * 1.25)
    raise InputError(
        f"no model size fits {shape.views} views x {shape.frames} frames at {shape.width}x{shape.height}; use --params"
    )


def config_for_quality(arch: Architecture, q: int, shape: Shape):
    """The model of quality level q."""
    return config_at_least(arch, params_for_quality(arch, q, shape), shape)


def model_config_for(arch: Architecture, shape: Shape, quality: int | None, params: int | None, at_least: bool):
    """The model size of a source or segment from --params (at_least: or the smallest model above them, for
    rate control), or else from -q."""
    if params and at_least:
        return config_at_least(arch, params, shape)
    if params:
        return arch.size_for(shape, params)
    return config_for_quality(arch, check_quality(quality), shape)


def plan_segments(frames: int, segment_frames: int | None) -> list[tuple[int, int]]:
    """(first frame, frame count) of each segment: runs of segment_frames, or by default as few segments
    of at most DEFAULT_SEGMENT_FRAMES as possible, of near-equal length."""
    if segment_frames is not None and segment_frames < 1:
        raise InputError("--segment-frames must be 1 or more")
    if segment_frames is None:
        count = math.ceil(frames / DEFAULT_SEGMENT_FRAMES)
        segment_frames = math.ceil(frames / count)
    return [(first, min(segment_frames, frames - first)) for first in range(0, frames, segment_frames)]


def segment_source(source: MultiViewSource, first: int, count: int) -> MultiViewSource:
    """The frames [first, first + count) of a source (sharing its readers)."""
    return replace(source, seek=source.seek + first, num_frames=count)


@dataclass(frozen=True)
class SegmentPlan:
    """One segment to encode: its frames, its source, its model config and the prefix of its work files."""

    index: int
    first: int
    frames: int
    source: MultiViewSource
    config: object
    prefix: str


@dataclass(frozen=True)
class Plan:
    """What an encode will do: the model of each segment, the lambda, the size to reach."""

    segments: list[SegmentPlan]
    rate_lambda: float
    target_bytes: int | None


def make_plan(
    source: MultiViewSource,
    output: Path,
    arch: Architecture,
    *,
    quality: int | None,
    params: int | None,
    target_bpp: float | None,
    segment_frames: int | None,
    rate_lambda: float | None,
    log=print,
) -> Plan:
    """Sizes, lambda and segments of an encode (InputError where no model fits)."""
    f = source.fmt
    spans = plan_segments(source.num_frames, segment_frames)
    target_bytes, at_least = None, params is None
    if target_bpp is not None:
        target_bytes = int(target_bpp * source.num_views * source.num_frames * f.width * f.height / 8)
        params = params or params_for_bytes(arch, target_bytes)
        log(f"rate control: target {target_bytes} bytes ({target_bpp:g} bpp), model of {params} parameters")
    segments = []
    for k, (first, count) in enumerate(spans):
        sub = segment_source(source, first, count)
        budget = round(params * count / source.num_frames) if params else None
        try:
            cfg = model_config_for(arch, shape_of(sub), quality, budget, at_least)
        except InputError as e:
            if len(spans) == 1:
                raise
            raise InputError(f"segment {k} ({count} frames) gets {budget} of --params {params}: {e}") from None
        prefix = str(output) if len(spans) == 1 else f"{output}.s{k}"
        segments.append(SegmentPlan(k, first, count, sub, cfg, prefix))
    lam = rate_lambda if rate_lambda is not None else lambda_for_quality(quality, arch)
    return Plan(segments, lam, target_bytes)
