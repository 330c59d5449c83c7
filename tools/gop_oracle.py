"""Does a hierarchical (B-frame) prediction structure predict a cut's luma better than a chain of P frames?
Pixel-domain bound, as tools/motion_oracle.py: each frame predicted from its reference frames (the mean of
the references where there are two) warped by DIS flow averaged to BLOCKxBLOCK blocks in quarter pixels.
BENCHMARKS.md, issue 14, experiment 21:

    python tools/gop_oracle.py /tmp/cut320 --frames 16
"""

from __future__ import annotations

import math
from itertools import pairwise

import click
import cv2
import numpy as np
from motion_oracle import _blocks, _warp

from mvcodec.io import open_source


def _bisect(a: int, b: int, refs: dict) -> None:
    if b - a < 2:
        return
    m = (a + b) // 2
    refs[m] = (a, b)
    _bisect(a, m, refs)
    _bisect(m, b, refs)


def structure(anchors: list[int]) -> dict[int, tuple[int, ...]]:
    """Anchors as a P chain, the frames between two anchors by bisection (B frames)."""
    refs: dict[int, tuple[int, ...]] = {b: (a,) for a, b in pairwise(anchors)}
    for a, b in pairwise(anchors):
        _bisect(a, b, refs)
    return refs


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--frames", type=int, default=16, show_default=True)
def main(inputs: tuple[str, ...], frames: int) -> None:
    source = open_source(list(inputs), frames=frames)
    last = source.num_frames - 1
    cases = {
        "P chain (previous frame)": {t: (t - 1,) for t in range(1, last + 1)},
        f"anchors 0, 8, {last}": structure([0, 8, last]),
        f"anchors every 4 (0 .. {last})": structure(sorted({*range(0, last, 4), last})),
        f"anchors 0, {last} (bisection)": structure([0, last]),
    }
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    click.echo("| prediction | 8x8 motion | 16x16 motion |\n|---|---|---|")
    errors: dict[tuple[str, int], list[float]] = {}
    for v in range(source.num_views):
        y = np.stack([source.read(v, t).y for t in range(last + 1)]).astype(np.float32)
        y /= 1 << (source.fmt.bit_depth - 8)
        y8 = np.clip(y, 0, 255).astype(np.uint8)
        pairs = {(t, r) for refs in cases.values() for t, rs in refs.items() for r in rs}
        flow = {(t, r): dis.calc(y8[t], y8[r], None) for t, r in pairs}  # each pair once, for every case
        for block in (8, 16):
            for name, refs in cases.items():
                for t in range(1, last + 1):
                    preds = [_warp(y[r], _blocks(flow[t, r], block)) for r in refs[t]]
                    errors.setdefault((name, block), []).append(float(((y[t] - np.mean(preds, axis=0)) ** 2).mean()))
    source.close()
    for name in cases:
        psnr = [10 * math.log10(255**2 / np.mean(errors[name, b])) for b in (8, 16)]
        click.echo(f"| {name} | {psnr[0]:.2f} dB | {psnr[1]:.2f} dB |")


if __name__ == "__main__":
    main()
