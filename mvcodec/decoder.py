"""The lightweight decoder: .mvinr -> YUV 4:2:0 frames. It uses the network definition, the container and
the tensor decoding, and nothing of the training code (no OpenCV, no PyAV).

Two numeric paths: "reference" (float32, TF32 off, deterministic algorithms; the conformance path) and
"fast" (float16 autocast and channels_last on CUDA; on the CPU it is the reference path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

from mvcodec.bitstream import CodedTensor, SequenceHeader, StreamIndex, parameter_hash, read_index, read_segment_tensors
from mvcodec.color import rgb_to_planes
from mvcodec.compress import decoding
from mvcodec.errors import HashMismatch, InputError, InvalidStream, ResourceLimit
from mvcodec.io.formats import Planes
from mvcodec.model.registry import arch_of

PRECISIONS = ("auto", "reference", "fast")


@dataclass(frozen=True)
class DecodedFrame:
    view: int
    frame: int
    planes: Planes


def size_text(n: float) -> str:
    """A size in bytes for people: GiB, MiB or KiB."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


# A tensor's decoding holds, besides its float32 values, its int32 symbols and the float32 and binary64 mean
# and scale of every element's distribution: about this many bytes an element, at the largest tensor.
DECODE_BYTES_PER_ELEMENT = 40


@dataclass(frozen=True)
class Needs:
    """What decoding a segment takes, from its headers alone, in bytes beyond the interpreter's own, each an
    upper bound: `host`, the parameters' decoding (the float32 values and int32 symbols of every tensor, kept
    until the segment is decoded, a byte a pruning mask's element, and the largest tensor's distributions), in
    main memory; `frames`, a forward pass of `batch` frames with its colour conversion and output samples, on
    the decoding device; the multiply-accumulates of a frame; and the frames a pass (`batch`)."""

    host: int
    frames: int
    macs_per_frame: float
    batch: int = 1

    @property
    def memory(self) -> int:
        """Both, as a decode on the CPU needs them."""
        return self.host + self.frames


def segment_needs(index: StreamIndex, segment: int, batch: int, first: int = 0, rows: int | None = None) -> Needs:
    """Needs of decoding a segment `batch` frames a pass, from its frame `first` on (MV-Pyramid-MC chains
    through the frames before it once), in bands of `rows` rows (None: whole frames)."""
    seg, seq = index.segments[segment], index.sequence
    cfg = seg.config
    arch = arch_of(cfg)
    sizes = [p.numel for p in arch.layout(cfg)]
    batch = max(1, min(batch, seg.header.frames * seq.views))
    pixels = seq.width * seq.height
    if rows is None and arch.band_reference:
        rows = default_band_rows(seq.width, seq.height)
    rows = seq.height if rows is None or not arch.bands else min(seq.height, rows + BAND_ROWS_ABOVE)
    floats = arch.band_floats(cfg, rows, max(2, first + 1))
    samples = pixels * 3 // 2 * (1 if seq.bit_depth == 8 else 2)
    host = 9 * sum(sizes) + DECODE_BYTES_PER_ELEMENT * max(sizes)
    return Needs(host, batch * (int(4 * floats) + samples), arch.macs_per_pixel(cfg) * pixels, batch)


# A band's colour conversion with top-left chroma siting reads the row above the band: the band is synthesised
# from two rows higher (rows come in pairs, as 4:2:0 chroma does).
BAND_ROWS_ABOVE = 2
# Where bands decode exactly the whole frame's samples (Architecture.band_reference), the CPU synthesises frames
# above this many pixels in bands of about this many: their layers then stay in the caches (at 1280x720 bands
# of 50 rows decoded 7.2 frames/s against 4.7 for whole frames; BENCHMARKS.md, "Decoding in bands").
BAND_PIXELS = 65536


def default_band_rows(width: int, height: int) -> int | None:
    """The rows of the bands a frame is synthesised in where the network's bands are exact (None: whole)."""
    return None if width * height <= BAND_PIXELS else max(2, BAND_PIXELS // width // 2 * 2)


def decode_segment(tensors: list[CodedTensor], segment: int) -> decoding.DecodedSegment:
    """A segment's coded tensors decoded (not yet checked against the hash); InvalidStream where they cannot be."""
    try:
        return decoding.decode_segment(tensors)
    except BaseException as e:  # the fields were validated; this is the last line of defence around constriction
        if (
            isinstance(e, (AssertionError, ValueError, RuntimeError, OverflowError))
            or type(e).__name__ == "PanicException"
        ):
            raise InvalidStream(f"segment {segment}: tensor data cannot be decoded ({e})") from None
        raise


def decode_tensors(tensors: list[CodedTensor], segment: int) -> list[np.ndarray]:
    """A segment's coded tensors decoded to float32 (not yet checked against the hash)."""
    return decode_segment(tensors, segment).values


class Decoder:
    """Decodes any views and frames of a stream; loads one segment's network at a time."""

    def __init__(
        self,
        source: str | Path | BinaryIO,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        batch: int | None = None,
        rows: int | None = None,
    ):
        if precision not in PRECISIONS:
            raise InputError(f"--precision: use one of {', '.join(PRECISIONS)}")
        self._own = not hasattr(source, "read")
        self.f: BinaryIO = open(source, "rb") if self._own else source  # noqa: SIM115
        try:
            self.index: StreamIndex = read_index(self.f)
        except BaseException:
            self.close()
            raise
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.fast = cuda and precision in ("auto", "fast")
        self.batch = None if batch is None else max(1, batch)  # None: 4 on a GPU, on the CPU the architecture's
        if rows is not None and (rows < 2 or rows % 2):
            raise InputError(f"--band-rows {rows}: give an even number of rows, 2 or more")
        # rows a band: given, or chosen by check_limits where whole frames do not fit (None: the default)
        self.rows = self._given_rows = rows
        self._loaded: tuple[int, nn.Module] | None = None

    @property
    def sequence(self) -> SequenceHeader:
        return self.index.sequence

    def batch_of(self, segment: int) -> int:
        """Frames a forward pass: --batch, else 4 on a GPU, on the CPU the architecture's."""
        if self.batch:
            return self.batch
        return 4 if self.device.type == "cuda" else arch_of(self.index.segments[segment].config).cpu_decode_batch

    def pass_frames(self, segment: int, frames: int, views: int) -> int:
        """Frames a forward pass decodes when `frames` frames of `views` views are asked for in a segment."""
        return max(1, min(self.batch_of(segment), frames * views))

    def needs(self, frames: Sequence[int] | None = None, views: int | None = None, rows: int | None = None) -> Needs:
        """The most memory and work a frame that decoding `frames` (all by default) of `views` views (all by
        default) takes, over the segments that hold them, in bands of `rows` rows (default: the decoder's);
        from the headers alone, before anything is decoded."""
        frames = range(self.sequence.frames) if frames is None else frames
        views = self.sequence.views if views is None else views
        first: dict[int, int] = {}
        count: dict[int, int] = {}
        for t in frames:
            if not 0 <= t < self.sequence.frames:
                raise InputError(f"frame {t} is not in the stream's 0-{self.sequence.frames - 1}")
            k = self.index.segment_of(t)
            first[k], count[k] = min(first.get(k, t), t), count.get(k, 0) + 1
        needs = [
            segment_needs(
                self.index,
                k,
                self.pass_frames(k, count[k], views),
                t - self.index.segments[k].frames.start,
                rows or self.band_rows(k) or self.sequence.height,
            )
            for k, t in first.items()
        ] or [Needs(0, 0, 0.0)]
        return Needs(*(max(getattr(n, f) for n in needs) for f in ("host", "frames", "macs_per_frame", "batch")))

    def close(self) -> None:
        self._loaded = None
        if self._own:
            self.f.close()

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def parameters(self, segment: int) -> list[np.ndarray]:
        """A segment's dequantised float32 tensors in stream order, checked against its SHA-256."""
        seg = self.index.segments[segment]
        arrays = decode_tensors(read_segment_tensors(self.f, seg), segment)
        if parameter_hash(arrays) != seg.digest:
            raise HashMismatch(
                f"segment {segment}: decoded parameters do not match the stream's SHA-256 (the file is damaged)"
            )
        return arrays

    def check_limits(
        self,
        frames: Sequence[int],
        max_pixels: int,
        max_memory: int | None,
        available: bool = False,
        views: int | None = None,
    ) -> None:
        """mvdec's --max-pixels and --max-memory (0 or None: no limit; `available`: the memory limit is what
        the machine has), from the headers before anything is decoded: ResourceLimit, saying what to change."""
        seq = self.sequence
        pixels = seq.width * seq.height
        if max_pixels and pixels > max_pixels:
            raise ResourceLimit(
                f"frames of {seq.width}x{seq.height} ({pixels} pixels) are above --max-pixels {max_pixels}; "
                "raise it (0: no limit) to decode this stream"
            )
        self.rows = self._given_rows  # each call chooses afresh
        on_gpu = self.device.type == "cuda"
        free = None
        if on_gpu and max_memory is not None and available:  # the forward pass against the GPU's free memory
            free = torch.cuda.mem_get_info(self.device)[0]

        def fits(n: Needs) -> bool:
            return not (max_memory and (n.host if on_gpu else n.memory) > max_memory) and (
                free is None or n.frames <= free
            )

        needs = self.needs(frames, views)
        bands = f" in bands of {self.rows} rows" if self.rows else ""
        if not fits(needs) and self.rows is None and self._bands(frames):
            # the largest band (an even number of rows) that fits, or the smallest one's needs for the message
            lo, hi = 1, seq.height // 2 - 1  # bands of 2 * lo ... 2 * hi rows
            if fits(self.needs(frames, views, 2)):
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    lo, hi = (mid, hi) if fits(self.needs(frames, views, 2 * mid)) else (lo, mid - 1)
                self.rows = 2 * lo
                return
            needs, bands = self.needs(frames, views, 2), " in bands of 2 rows"
        memory = needs.host if on_gpu else needs.memory
        batch = needs.batch
        hint = "try --batch 1, or " if batch > 1 else ""
        if max_memory and memory > max_memory:
            where = f"the {size_text(max_memory)} available" if available else f"--max-memory {size_text(max_memory)}"
            what = (
                "its parameters"
                if on_gpu
                else f"{batch} frame{'s' if batch > 1 else ''} of {seq.width}x{seq.height} a pass{bands}"
            )
            raise ResourceLimit(
                f"decoding needs about {size_text(memory)} ({what}), more than {where}; "
                f"{hint if not on_gpu else ''}raise --max-memory (0: no limit)"
            )
        if free is not None and needs.frames > free:
            raise ResourceLimit(
                f"decoding needs about {size_text(needs.frames)} of GPU memory ({batch} frames of "
                f"{seq.width}x{seq.height} a pass{bands}), more than the {size_text(free)} free on {self.device}; "
                f"{hint}use --device cpu"
            )

    def band_rows(self, segment: int) -> int | None:
        """The rows a band of a segment's frames (None: whole frames): --band-rows (or check_limits' choice)
        where the network has a band path, else on the CPU the cache-sized bands where they are exact."""
        arch = arch_of(self.index.segments[segment].config)
        if self.rows and arch.bands:
            return self.rows
        cpu = self.device.type == "cpu"
        return default_band_rows(self.sequence.width, self.sequence.height) if cpu and arch.band_reference else None

    def _bands(self, frames: Sequence[int]) -> bool:
        """Whether the networks of the segments that hold `frames` decode in bands."""
        segments = {self.index.segment_of(t) for t in frames}
        return bool(segments) and all(arch_of(self.index.segments[k].config).bands for k in segments)

    def model(self, segment: int) -> nn.Module:
        """The network of a segment, rebuilt from the stream alone, on the decoder's device."""
        if self._loaded and self._loaded[0] == segment:
            return self._loaded[1]
        self._loaded = None
        cfg = self.index.segments[segment].config
        arch = arch_of(cfg)
        arrays = self.parameters(segment)
        with torch.device("meta"):
            model = arch.build(cfg)
        state = {p.name: torch.from_numpy(a) for p, a in zip(arch.layout(cfg), arrays, strict=True)}
        model.load_state_dict(state, assign=True)
        model = model.to(self.device).train(False)
        if self.fast:
            model = model.to(memory_format=torch.channels_last)
        if hasattr(model, "keep_chains"):  # MV-Pyramid-MC: frames in order cost one warp each, not a chain
            model.keep_chains()
        self._loaded = (segment, model)
        return model

    @contextlib.contextmanager
    def _numerics(self) -> Iterator[None]:
        """The reference path's settings (TF32 off, deterministic), or half-precision autocast."""
        if self.fast:
            with torch.autocast("cuda", dtype=torch.float16):
                yield
            return
        cuda = torch.backends.cuda.matmul
        saved = (cuda.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        try:
            yield
        finally:
            cuda.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic = saved

    @torch.inference_mode()
    def frames(self, views: Sequence[int] | None = None, frames: Sequence[int] | None = None) -> Iterator[DecodedFrame]:
        """Decoded frames in order of frame, then view; only the segments that hold them are loaded."""
        seq = self.sequence
        views = list(range(seq.views)) if views is None else list(views)
        frames = list(range(seq.frames)) if frames is None else list(frames)
        pairs = [(t, v) for t in frames for v in views]
        with self._numerics():
            start = 0
            while start < len(pairs):
                segment = self.index.segment_of(pairs[start][0])
                span = self.index.segments[segment].frames
                batch = self.batch_of(segment)
                stop = start
                while stop < len(pairs) and stop - start < batch and pairs[stop][0] in span:
                    stop += 1
                chunk = pairs[start:stop]
                model = self.model(segment)
                t = torch.tensor([p[0] - span.start for p in chunk], device=self.device)
                v = torch.tensor([p[1] for p in chunk], device=self.device)
                rows = self.band_rows(segment)
                if rows or arch_of(self.index.segments[segment].config).band_reference:
                    decoded = self._banded(model, v, t, rows or seq.height)
                else:
                    decoded = rgb_to_planes(model(v, t), seq.bit_depth, seq.color)
                for (ft, fv), planes in zip(chunk, decoded, strict=True):
                    yield DecodedFrame(fv, ft, planes)
                start = stop

    def _banded(self, model: nn.Module, view: torch.Tensor, frame: torch.Tensor, rows: int) -> list[Planes]:
        """The frames of a batch synthesised and converted `rows` rows at a time (the network's band path)."""
        seq = self.sequence
        h, w = seq.height, seq.width
        dtype = np.uint8 if seq.bit_depth == 8 else np.uint16
        out = [
            Planes(np.empty((h, w), dtype), np.empty((h // 2, w // 2), dtype), np.empty((h // 2, w // 2), dtype))
            for _ in range(len(view))
        ]
        inputs = model.band_input(view, frame)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            above = min(r0, BAND_ROWS_ABOVE) if seq.color.chroma_siting == "top-left" else 0
            for frame_planes, band in zip(
                out, rgb_to_planes(model.band(inputs, r0 - above, r1), seq.bit_depth, seq.color), strict=True
            ):
                frame_planes.y[r0:r1] = band.y[above:]
                frame_planes.u[r0 // 2 : r1 // 2] = band.u[above // 2 :]
                frame_planes.v[r0 // 2 : r1 // 2] = band.v[above // 2 :]
        return out
