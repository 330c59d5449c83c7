"""What an encode reports: the typed result, its JSON record (--stats) and the summary lines, as HM and
x265 print them: rate, then quality per view and overall."""

from __future__ import annotations

from dataclasses import dataclass


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
            "mask_seconds": self.mask_seconds,
            "encode_seconds": self.encode_seconds,
            "device": self.device,
        }


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
        "quality of the decoded stream (the float network before quantisation: "
        f"PSNR-YUV {r.psnr_yuv_unquantised:.3f} dB):",
    ]
    lines += quality_table(src["view_names"], r.quality)
    lines.append(
        f"encoded in {r.encode_seconds:.1f} s (training {r.train_seconds:.1f} s at {r.train_fps:.1f} frames/s, "
        f"motion masks {r.mask_seconds:.1f} s) on {r.device}"
    )
    return lines
