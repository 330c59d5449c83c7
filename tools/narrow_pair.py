"""Make a narrow-baseline stereo pair from one camera: two overlapping windows of the same video, SHIFT source
pixels apart horizontally, each of the output's aspect ratio and the source's full height, centred, scaled to
WxH, written as MIV-named raw files in the source's pixel format (a second content type for the
rate-distortion work: a portrait pair whose views differ by a small disparity; BENCHMARKS.md, issue 14,
experiment 26):

    python tools/narrow_pair.py ../shared/data/caliscope/post_optimization/cam_0.mp4 /tmp/pair
    python tools/rd_bench.py /tmp/pair -f 16 -q 2,4 --preset medium --x265-presets medium --no-multiview --svt-crf ''
"""

from __future__ import annotations

from pathlib import Path

import click

from mvcodec.io import RawWriter, VideoFormat, open_source
from mvcodec.io.filters import SourceFilters


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", default="160x288", show_default=True, help="Output size WxH of each view (even).")
@click.option("--shift", default=24, show_default=True, help="Horizontal distance of the windows, source pixels.")
@click.option("-f", "--frames", default=16, show_default=True)
def main(source: Path, out: Path, size: str, shift: int, frames: int) -> None:
    width, height = (int(x) for x in size.lower().split("x"))
    probe = open_source([source], frames=1)
    src_w, src_h = probe.fmt.width, probe.fmt.height
    probe.close()
    crop_h = src_h - src_h % 2
    crop_w = crop_h * width // height // 2 * 2
    x0 = (src_w - crop_w - shift) // 2 // 2 * 2
    if crop_w + shift > src_w or shift % 2:
        raise click.BadParameter(f"windows of {crop_w} pixels {shift} apart do not fit {src_w} (or odd shift)")
    out.mkdir(parents=True, exist_ok=True)
    for view, x in enumerate((x0, x0 + shift)):
        s = open_source([source], frames=frames, filters=SourceFilters((crop_w, crop_h, x, 0), (width, height)))
        fmt = VideoFormat(width, height, s.fmt.pix_fmt, s.fmt.fps)
        with RawWriter(out / f"v{view}_texture_{width}x{height}_{fmt.pix_fmt.name}.yuv", fmt) as w:
            for planes in s.frames(0):
                w.write(planes)
        s.close()
    click.echo(
        f"{out}: 2 views of {width}x{height} x {frames} frames, windows {crop_w}x{crop_h} at x = {x0}, {x0 + shift}"
    )


if __name__ == "__main__":
    main()
