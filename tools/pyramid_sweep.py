"""MV-Pyramid at other sizes than its sizing gives: registers a variant with the given channels a level and
synthesis width (a private id, this process only), encodes with it in-process (the encoder checks the stream
by decoding it) and prints one JSON line per -q point. BENCHMARKS.md, issue 14, experiment 5:

    python tools/pyramid_sweep.py /tmp/cut --fps 6 -q 6 --channels 2 --hidden 48
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import click

from mvcodec.encoder import EncodeOptions, encode, recipe
from mvcodec.io import open_source
from mvcodec.io.formats import parse_fps
from mvcodec.model import register
from mvcodec.model.pyramid import MVPyramidArchitecture, PyramidConfig


def variant(channels: int, hidden: int) -> str:
    """Register MV-Pyramid with `channels` view and view-and-frame channels a level and width `hidden`; its
    name."""

    @dataclass(frozen=True)
    class Config(PyramidConfig):  # a config type of its own, as the registry asks
        pass

    class Variant(MVPyramidArchitecture):
        id, name, config_type = 0x80F0, f"mv-pyramid-c{channels}-h{hidden}", Config

        def size_for(self, shape, params):
            base = super().size_for(shape, params).to_dict()
            return Config(**{**base, "view_channels": channels, "frame_channels": channels, "hidden": hidden})

    return register(Variant()).name


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--fps", default="30", show_default=True)
@click.option("-f", "--frames", type=int, help="Frames per view (default: all).")
@click.option("--epochs", type=int, help="Override the preset's fit epochs (and --qat-epochs the QAT's).")
@click.option("--qat-epochs", type=int)
@click.option("-q", "--quality", default="4", show_default=True, help="Comma-separated -q points.")
@click.option("--preset", default="fast", show_default=True)
@click.option("--channels", default=1, show_default=True)
@click.option("--hidden", default=24, show_default=True)
def main(inputs, fps, frames, epochs, qat_epochs, quality, preset, channels, hidden):
    name = variant(channels, hidden) if (channels, hidden) != (1, 24) else "mv-pyramid"
    source = open_source(list(inputs), fps=parse_fps(fps), frames=frames)
    with TemporaryDirectory() as tmp:
        for q in (int(x) for x in quality.split(",")):
            rec = recipe(preset, arch=name, epochs=epochs, qat_epochs=qat_epochs)
            opts = EncodeOptions(rec, arch=name, quality=q, progress=False)
            r = encode(source, Path(tmp) / f"q{q}.mvinr", opts, log=lambda *_: None)
            row = {"arch": name, "q": q, "bpp": r.bpp, "psnr_yuv": r.quality["psnr_yuv"], "params": r.params}
            click.echo(json.dumps({**row, "macs_per_pixel": r.macs_per_pixel, "encode_seconds": r.encode_seconds}))
    source.close()


if __name__ == "__main__":
    main()
