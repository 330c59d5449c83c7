"""Make the bundled sample in tests/data from the caliscope recording in ../shared/data.

Centre-crops each 1280x720 view to 5:3 (1200x720), scales it to 160x96 with OpenCV's area filter
(computed in floating point, so the 10-bit output holds real sub-8-bit detail) and writes MIV-named
yuv420p10le files, one per view.

    python tools/make_test_excerpt.py ../shared/data/caliscope/post_optimization tests/data
"""

from __future__ import annotations

from pathlib import Path

import click
import cv2
import numpy as np

from mvcodec.io import RawWriter, VideoFormat, open_source, pix_fmt


@click.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seek", default=4, show_default=True, help="First source frame (4: the most motion).")
@click.option("-f", "--frames", default=8, show_default=True)
@click.option("-s", "--size", "size", default=(160, 96), type=(int, int), show_default=True)
def main(src: Path, dst: Path, seek: int, frames: int, size: tuple[int, int]) -> None:
    source = open_source([src], seek=seek, frames=frames)
    w, h = size
    sw, sh = source.fmt.width, source.fmt.height
    crop_w = min(sw, (sh * w // h) // 2 * 2)  # even, so the chroma crop is exact
    x0 = (sw - crop_w) // 4 * 2
    out_fmt = VideoFormat(w, h, pix_fmt("yuv420p10le"), source.fmt.fps)
    scale = (1 << out_fmt.bit_depth) / (1 << source.fmt.bit_depth)
    dst.mkdir(parents=True, exist_ok=True)
    for v in range(source.num_views):
        path = dst / f"v{v}_texture_{w}x{h}_{out_fmt.pix_fmt.name}.yuv"
        with RawWriter(path, out_fmt) as out:
            for planes in source.frames(v):
                scaled = []
                for i, plane in enumerate(planes):
                    sub = 1 if i == 0 else 2
                    crop = plane[:, x0 // sub : (x0 + crop_w) // sub].astype(np.float32)
                    small = cv2.resize(crop, (w // sub, h // sub), interpolation=cv2.INTER_AREA)
                    scaled.append(np.clip(np.rint(small * scale), 0, out_fmt.pix_fmt.max_value).astype(np.uint16))
                out.write(type(planes)(*scaled))
        print(f"{path}: {path.stat().st_size} bytes ({source.view_names[v]}, frames {seek}-{seek + frames - 1})")


if __name__ == "__main__":
    main()
