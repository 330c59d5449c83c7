"""What an encode reports: the typed result, its JSON record (--stats) and the summary lines, as HM and
x265 print them: rate, then quality per view and overall."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mvcodec.bitstream import SequenceHeader
from mvcodec.encoder.phases import TrainedSegment
from mvcodec.encoder.plan import Plan
from mvcodec.encoder.recipe import Recipe
from mvcodec.io import MultiViewSource
from mvcodec.metrics import bits_per_pixel, kbps
from mvcodec.model.base import Architecture


@dataclass(frozen=True)
class SegmentReport:
    first_frame: int
    frames: int
    params: int
    macs_per_pixel: float


@dataclass(frozen=True)
class EncodeResult:
    """Everything an encode measured: the stream's rate, the decoded quality and the cost of getting there."""

    output: str
    source: dict  # MultiViewSource.describe()
    view_names: tuple[str, ...]  # as stored in the stream
    arch: str
    bytes: int
    bpp: float
    kbps: float
    quality: dict  # of the decoded stream: PSNR-Y/U/V/YUV and SSIM, overall and "per_view"
    psnr_yuv_unquantised: float  # the fitted float networks', before pruning and quantisation
    segments: tuple[SegmentReport, ...]
    sparsity: float
    rate_lambda: float
    target_bpp: float | None
    step_scale: tuple[float, ...]
    epochs: int
    train_seconds: float
    train_fps: float
    phase_seconds: dict[str, float]  # every phase's training time, the segments' summed
    mask_seconds: float
    encode_seconds: float
    device: str

    @property
    def params(self) -> int:
        return sum(s.params for s in self.segments)

    @property
    def macs_per_pixel(self) -> float:
        """The decoder's MACs per output pixel, averaged over the segments by frames."""
        return sum(s.macs_per_pixel * s.frames for s in self.segments) / sum(s.frames for s in self.segments)

    def record(self) -> dict:
        """The JSON record of --stats."""
        return {
            **self.source,
            "arch": self.arch,
            "bytes": self.bytes,
            "bpp": self.bpp,
            "kbps": self.kbps,
            **{k: v for k, v in self.quality.items() if k != "per_view"},
            "per_view": [dict(q, view=n) for n, q in zip(self.view_names, self.quality["per_view"], strict=True)],
            "psnr_yuv_unquantised": self.psnr_yuv_unquantised,
            "segments": [vars(s) for s in self.segments],
            "params": self.params,
            "macs_per_pixel": self.macs_per_pixel,
            "sparsity": self.sparsity,
            "rate_lambda": self.rate_lambda,
            "target_bpp": self.target_bpp,
            "step_scale": list(self.step_scale),
            "epochs": self.epochs,
            "train_seconds": self.train_seconds,
            "train_fps": self.train_fps,
            "phase_seconds": self.phase_seconds,
            "mask_seconds": self.mask_seconds,
            "encode_seconds": self.encode_seconds,
            "device": self.device,
        }


@dataclass(frozen=True)
class Run:
    """How an encode went, for its result: the architecture, the plan and recipe, each segment's training,
    the rate control's step scales, the rate target, the device and the wall time."""

    arch: Architecture
    plan: Plan
    recipe: Recipe
    trained: list[TrainedSegment]
    step_scale: list[float]
    target_bpp: float | None
    device: str
    seconds: float


def encode_result(
    output: Path, source: MultiViewSource, seq: SequenceHeader, size: int, quality: dict, run: Run
) -> EncodeResult:
    """The typed result of an encode that wrote `size` bytes decoding to `quality`."""
    f, segs, trained = source.fmt, run.plan.segments, run.trained
    unquantised = sum(t.float_quality["psnr_yuv"] * s.frames for t, s in zip(trained, segs, strict=True))
    return EncodeResult(
        output=str(output),
        source=source.describe(),
        view_names=seq.view_names,
        arch=run.arch.name,
        bytes=size,
        bpp=bits_per_pixel(size, source.num_views, source.num_frames, f.width, f.height),
        kbps=kbps(size, source.num_frames, float(f.fps)),
        quality=quality,
        psnr_yuv_unquantised=unquantised / source.num_frames,
        segments=tuple(
            SegmentReport(s.first, s.frames, run.arch.params(s.config), run.arch.macs_per_pixel(s.config)) for s in segs
        ),
        sparsity=run.recipe.compress.sparsity,
        rate_lambda=run.plan.rate_lambda,
        target_bpp=run.target_bpp,
        step_scale=tuple(run.step_scale),
        epochs=run.recipe.train.epochs,
        train_seconds=sum(t.train_seconds for t in trained),
        train_fps=sum(t.frames_per_second for t in trained) / len(trained),
        phase_seconds={p.name: sum(t.phase_seconds.get(p.name, 0.0) for t in trained) for p in run.recipe.phases},
        mask_seconds=sum(t.mask_seconds for t in trained),
        encode_seconds=run.seconds,
        device=run.device,
    )


def quality_table(view_names, quality: dict) -> list[str]:
    """Per-view and mean PSNR (Y, U, V, YUV) and SSIM, as a table."""
    lines = [f"{'view':<10} {'PSNR-Y':>8} {'PSNR-U':>8} {'PSNR-V':>8} {'PSNR-YUV':>9} {'SSIM':>7}"]
    rows = list(zip(view_names, quality["per_view"], strict=True)) + [("mean", quality)]
    for name, q in rows:
        lines.append(
            f"{name:<10} {q['psnr_y']:8.3f} {q['psnr_u']:8.3f} {q['psnr_v']:8.3f} {q['psnr_yuv']:9.3f} {q['ssim']:7.4f}"
        )
    return lines


def summary_lines(r: EncodeResult) -> list[str]:
    """The end-of-encode summary."""
    src = r.source
    lines = [
        f"wrote {r.output}: {r.bytes} bytes, {r.bpp:.5f} bpp, {r.kbps:.2f} kbps at {src['fps']:g} fps "
        f"({src['views']} views x {src['frames']} frames, {r.params} params, {r.macs_per_pixel:.0f} MACs/pixel)",
        f"quality of the decoded stream (the float network after its {r.epochs}-epoch fit phase, before "
        f"{'pruning and ' if 'prune' in r.phase_seconds else ''}QAT: PSNR-YUV {r.psnr_yuv_unquantised:.3f} dB):",
    ]
    lines += quality_table(src["view_names"], r.quality)
    lines.append(
        f"encoded in {r.encode_seconds:.1f} s (fit {r.train_seconds:.1f} s at {r.train_fps:.1f} frames/s, "
        + "".join(f"{name} {s:.1f} s, " for name, s in r.phase_seconds.items() if name != "fit")
        + f"loading and optical flow {r.mask_seconds:.1f} s) on {r.device}"
    )
    return lines
