"""How well each kind of prediction explains a multi-view cut's luma, frame by frame: the mean squared error
left by a static background (the per-pixel temporal median), by the previous frame as it is, and by the
previous frame or a reference frame warped with optical flow (DIS, OpenCV) at full resolution or averaged to
8x8 blocks and rounded to quarter pixels, as a P frame's motion would be. A pixel-domain bound on what
motion compensation can take off the per-frame latents (BENCHMARKS.md, issue 14, experiment 18).

    python tools/motion_oracle.py /tmp/cut320 --size 320x180 --frames 16

The directory holds rd_bench's cut: one 8-bit YUV 4:2:0 file per view (v<N>_texture_<W>x<H>_yuv420p.yuv).
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import cv2
import numpy as np


def _luma(path: Path, width: int, height: int, frames: int) -> np.ndarray:
    size = width * height * 3 // 2
    raw = np.fromfile(path, np.uint8)
    return np.stack([raw[t * size : t * size + width * height].reshape(height, width) for t in range(frames)])


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = img.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _blocks(flow: np.ndarray, block: int = 8) -> np.ndarray:
    h, w = flow.shape[:2]
    coarse = cv2.resize(flow, (math.ceil(w / block), math.ceil(h / block)), interpolation=cv2.INTER_AREA)
    return cv2.resize(np.round(coarse * 4) / 4, (w, h), interpolation=cv2.INTER_LINEAR)


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--size", required=True, help="WxH of the cut.")
@click.option("--frames", type=int, required=True, help="Frames per view.")
@click.option("--reference", type=int, default=None, help="Reference frame (default: the middle one).")
def main(directory: Path, size: str, frames: int, reference: int | None) -> None:
    width, height = map(int, size.lower().split("x"))
    ref = frames // 2 if reference is None else reference
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    errors: dict[str, list[float]] = {}
    views = sorted(directory.glob(f"v*_texture_{width}x{height}_yuv420p.yuv"))
    if not views:
        raise click.UsageError(f"no v*_texture_{width}x{height}_yuv420p.yuv files in {directory}")
    for path in views:
        y8 = _luma(path, width, height, frames)
        y = y8.astype(np.float32)
        median = np.median(y, axis=0)
        for t in range(1, frames):
            back = dis.calc(y8[t], y8[t - 1], None)
            to_ref = dis.calc(y8[t], y8[ref], None)
            cases = {
                "static background (temporal median)": median,
                "previous frame, no motion": y[t - 1],
                "previous frame, full-resolution flow": _warp(y[t - 1], back),
                "previous frame, 8x8 flow in quarter pixels": _warp(y[t - 1], _blocks(back)),
                f"frame {ref}, 8x8 flow in quarter pixels": _warp(y[ref], _blocks(to_ref)),
            }
            for name, prediction in cases.items():
                errors.setdefault(name, []).append(float(((y[t] - prediction) ** 2).mean()))
    click.echo(f"{directory}: {len(views)} views x frames 1-{frames - 1}, luma")
    click.echo("| prediction | MSE | PSNR (dB) |\n|---|---|---|")
    for name, values in errors.items():
        mse = float(np.mean(values))
        click.echo(f"| {name} | {mse:.1f} | {10 * math.log10(255**2 / max(mse, 1e-9)):.2f} |")


if __name__ == "__main__":
    main()
