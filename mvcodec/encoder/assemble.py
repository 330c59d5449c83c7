"""Stream assembly and verification: the trained segments' coded tensors into an .mvinr stream, written
atomically, then decoded by the real decoder and measured against the source."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from mvcodec.bitstream import SegmentData, SegmentHeader, SequenceHeader, parameter_hash, write_stream
from mvcodec.bitstream.headers import implied_tensors
from mvcodec.color import ColorSpec
from mvcodec.compress.coding import ExportedTensor, segment_message
from mvcodec.decoder import Decoder
from mvcodec.encoder.plan import SegmentPlan
from mvcodec.fsutil import atomic_write
from mvcodec.io import MultiViewSource
from mvcodec.metrics import frame_quality, mean_quality
from mvcodec.progress import Progress

_UNSAFE = re.compile(r"[/\\:\x00-\x1f\x7f]")


def stream_view_names(names: list[str]) -> tuple[str, ...]:
    """View names usable as file names (at most 255 UTF-8 bytes, no path separators), made unique."""
    out: list[str] = []
    for i, name in enumerate(names):
        safe = _UNSAFE.sub("_", name).encode("utf-8")[:200].decode("utf-8", "ignore")
        safe = f"v{i}" if safe in ("", ".", "..") or safe in out else safe
        out.append(safe)
    return tuple(out)


def sequence_header(source: MultiViewSource, segments: int) -> SequenceHeader:
    """The SEQH of a source coded in this many segments."""
    f = source.fmt
    names = stream_view_names(source.view_names)
    return SequenceHeader(
        names,
        source.num_frames,
        f.width,
        f.height,
        f.bit_depth,
        ColorSpec(chroma_siting=source.siting),
        f.fps,
        segments,
    )


def segment_data(plans: Sequence[SegmentPlan], exported: Sequence[list[ExportedTensor]]) -> list[SegmentData]:
    """The segments as the stream writer takes them, each with the hash of its decoded parameters; those whose
    layout names their tensors (every architecture but MV-MGINR) with their one message, for a TNSL chunk."""
    out = []
    for p, ex in zip(plans, exported, strict=True):
        tensors = [e.tensor for e in ex]
        message = segment_message(tensors) if implied_tensors(p.config) else None
        header = SegmentHeader(p.index, p.first, p.frames)
        out.append(SegmentData(header, p.config, tensors, parameter_hash([e.values for e in ex]), message))
    return out


def stream_size(seq: SequenceHeader, segments: list[SegmentData], info: dict | None) -> int:
    """Size in bytes of the stream these segments make."""
    return write_stream(io.BytesIO(), seq, segments, info)


def write_output(output: Path, seq: SequenceHeader, segments: list[SegmentData], info: dict | None) -> int:
    """Write the stream atomically (never a truncated file); returns its size in bytes."""
    with atomic_write(output) as out:
        return write_stream(out, seq, segments, info)


def measure_stream(path: Path, source: MultiViewSource, device: torch.device, progress: bool = True) -> dict:
    """Decode a written stream with the real decoder and measure it against the source, per view and overall."""
    per_view: list[list[dict]] = [[] for _ in range(source.num_views)]
    bar = Progress(source.num_views * source.num_frames, "checking", "frames", enabled=progress)
    with Decoder(path, device) as dec:
        for out in dec.frames():
            per_view[out.view].append(
                frame_quality(source.read(out.view, out.frame), out.planes, dec.sequence.bit_depth)
            )
            bar.update()
    bar.close()
    views = [mean_quality(q) for q in per_view]
    return {**mean_quality(views), "per_view": views}
