"""Repack .mvinr streams without re-encoding: the tensors of every segment with an ARCX chunk in one TNSL
chunk (bitstream_spec.md section 7.9, as mvenc writes since BENCHMARKS.md's experiment 43), in TNSC chunks
(section 7.8, as from experiment 39) or in TNSR chunks; MV-MGINR's segments (ARCH) stay in TNSR chunks, as
mvenc writes them, so that a 1.0 stream stays 1.0. The decoded parameters, and so the video, stay
bit-identical: the tool decodes the repacked stream and checks every segment's parameter hash. The `enci`
chunk is kept; other ancillary chunks are not.

    python tools/repack.py old.mvinr -o new.mvinr                # TNSL
    python tools/repack.py in.mvinr -o out.mvinr --tensors tnsc
    python tools/repack.py a.mvinr b.mvinr                       # the size in each layout; writes nothing
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import click

from mvcodec.bitstream import SegmentData, read_index, read_segment_tensors, write_stream
from mvcodec.bitstream.headers import implied_tensors
from mvcodec.compress.coding import segment_message, split_message
from mvcodec.decoder import Decoder
from mvcodec.errors import StreamError
from mvcodec.fsutil import atomic_write

LAYOUTS = ("tnsl", "tnsc", "tnsr")


def read_stream(path: Path) -> tuple[object, list[SegmentData]]:
    """A stream's index and its segments, each tensor with words of its own (a TNSL message split)."""
    with open(path, "rb") as f:
        index = read_index(f)
        segments = [
            SegmentData(s.header, s.config, split_message(read_segment_tensors(f, s)), s.digest) for s in index.segments
        ]
    return index, segments


def repacked(index, segments: list[SegmentData], layout: str) -> bytes:
    """The stream with its tensors in `layout` (tnsl, tnsc or tnsr), its hashes checked by decoding it."""
    if layout == "tnsl":
        segments = [
            replace(s, message=segment_message(s.tensors)) if implied_tensors(s.config) else s for s in segments
        ]
    out = io.BytesIO()
    write_stream(out, index.sequence, segments, index.info, implied=None if layout == "tnsc" else False)
    data = out.getvalue()
    with Decoder(io.BytesIO(data)) as dec:
        for k in range(len(dec.index.segments)):
            dec.parameters(k)  # InvalidStream if a segment's parameters differ from its hash
    return data


@click.command()
@click.argument("streams", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the repacked stream.")
@click.option("--tensors", "layout", type=click.Choice(LAYOUTS), default="tnsl", show_default=True)
def main(streams: tuple[Path, ...], output: Path | None, layout: str) -> None:
    try:
        run(streams, output, layout)
    except BaseException as e:  # a damaged stream: one line, as mvdec says it (constriction's panics included)
        if (
            isinstance(e, (StreamError, ValueError, AssertionError, OverflowError))
            or type(e).__name__ == "PanicException"
        ):
            raise click.ClickException(f"{e}") from None
        raise


def run(streams: tuple[Path, ...], output: Path | None, layout: str) -> None:
    if output is not None:
        if len(streams) != 1:
            raise click.UsageError("-o takes one input stream")
        index, segments = read_stream(streams[0])
        data = repacked(index, segments, layout)
        with atomic_write(output) as f:
            f.write(data)
        click.echo(f"{output}: {len(data)} bytes ({len(data) - index.size:+d}), tensors in {layout.upper()}")
        return
    click.echo("stream: bytes as it is, in " + ", ".join(x.upper() for x in LAYOUTS))
    for path in streams:
        index, segments = read_stream(path)
        sizes = [len(repacked(index, segments, x)) for x in LAYOUTS]
        click.echo(f"{path}: {index.size}, " + ", ".join(map(str, sizes)))


if __name__ == "__main__":
    main()
