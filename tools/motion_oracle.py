"""How well each kind of prediction explains a multi-view cut's luma, frame by frame: the mean squared error
left by a static background (the per-pixel temporal median), by the previous frame as it is, and by the
previous frame or a reference frame warped with optical flow (DIS, OpenCV) at full resolution or averaged to
8x8 blocks and rounded to quarter pixels, as a P frame's motion would be. A pixel-domain bound on what
motion compensation can take off the per-frame latents (BENCHMARKS.md, issue 14, experiment 18).

    python tools/motion_oracle.py /tmp/cut320 --frames 16

Any source mvenc reads (here rd_bench's cut, one file per view); the backward flow is the encoder's
(mvcodec/train/motion.py).
"""

from __future__ import annotations

import math

import click
import cv2
import numpy as np

from mvcodec.io import open_source
from mvcodec.train.motion import backward_flow


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = img.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _blocks(flow: np.ndarray, block: int = 8) -> np.ndarray:
    h, w = flow.shape[:2]
    coarse = cv2.resize(flow, (math.ceil(w / block), math.ceil(h / block)), interpolation=cv2.INTER_AREA)
    return cv2.resize(np.round(coarse * 4) / 4, (w, h), interpolation=cv2.INTER_LINEAR)


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--frames", type=int, help="Frames per view (default: all).")
@click.option("--reference", type=int, default=None, help="Reference frame (default: the middle one).")
def main(inputs: tuple[str, ...], frames: int | None, reference: int | None) -> None:
    source = open_source(list(inputs), frames=frames)
    frames, depth = source.num_frames, source.fmt.bit_depth
    ref = frames // 2 if reference is None else reference
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    errors: dict[str, list[float]] = {}
    for v in range(source.num_views):
        luma = np.stack([source.read(v, t).y for t in range(frames)])
        back = backward_flow(luma, depth)
        y = luma.astype(np.float32) / (1 << (depth - 8))
        y8 = np.clip(y, 0, 255).astype(np.uint8)
        median = np.median(y, axis=0)
        for t in range(1, frames):
            to_ref = dis.calc(y8[t], y8[ref], None)
            cases = {
                "static background (temporal median)": median,
                "previous frame, no motion": y[t - 1],
                "previous frame, full-resolution flow": _warp(y[t - 1], back[t]),
                "previous frame, 8x8 flow in quarter pixels": _warp(y[t - 1], _blocks(back[t])),
                f"frame {ref}, 8x8 flow in quarter pixels": _warp(y[ref], _blocks(to_ref)),
            }
            for name, prediction in cases.items():
                errors.setdefault(name, []).append(float(((y[t] - prediction) ** 2).mean()))
    source.close()
    click.echo(f"{' '.join(inputs)}: {source.num_views} views x frames 1-{frames - 1}, luma")
    click.echo("| prediction | MSE | PSNR (dB) |\n|---|---|---|")
    for name, values in errors.items():
        mse = float(np.mean(values))
        click.echo(f"| {name} | {mse:.1f} | {10 * math.log10(255**2 / max(mse, 1e-9)):.2f} |")


if __name__ == "__main__":
    main()
