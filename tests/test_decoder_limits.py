"""The decoder's resource limits (mvdec --max-pixels, --max-memory), the needs mvinfo shows, and outputs that
a failed decode does not leave behind (bitstream_spec.md section 15; issue 15's decompression bomb)."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from helpers import run_tool

from mvcodec.bitstream import SegmentData, SegmentHeader, SequenceHeader, parameter_hash, read_index, write_stream
from mvcodec.cli import parse_bytes
from mvcodec.color import ColorSpec
from mvcodec.compress.coding import quantize_uniform
from mvcodec.decoder import Decoder, segment_needs
from mvcodec.errors import InputError
from mvcodec.model import parameter_layout
from mvcodec.model.base import trace_band_floats
from mvcodec.model.mginr import ModelConfig
from mvcodec.model.registry import arch_of

CONFORMANCE = Path(__file__).parent / "conformance"
STREAMS = sorted(CONFORMANCE.glob("c*/stream.mvinr"))


def bomb(frames: int = 4) -> bytes:
    """A valid stream of a few kB whose frames are 16384x16384 (MV-MGINR, strides 8, 8, 8, all zero)."""
    cfg = ModelConfig(1, frames, 16384, 16384, 32, 32, (8, 8, 8), (16, 8, 4), 0, 2)
    tensors, arrays = [], []
    for spec in parameter_layout(cfg):
        e = quantize_uniform(spec, np.zeros(spec.shape, np.float32))
        tensors.append(e.tensor)
        arrays.append(e.values)
    seq = SequenceHeader(("v0",), frames, 16384, 16384, 8, ColorSpec(), Fraction(30), 1)
    buf = io.BytesIO()
    write_stream(buf, seq, [SegmentData(SegmentHeader(0, 0, frames), cfg, tensors, parameter_hash(arrays))])
    return buf.getvalue()


@pytest.mark.parametrize("stream", STREAMS, ids=[p.parent.name for p in STREAMS])
def test_each_architectures_closed_form_bounds_a_trace_of_its_forward_pass(stream):
    with open(stream, "rb") as f:
        cfg = read_index(f).segments[0].config
    arch = arch_of(cfg)
    for chain in (1, 2):
        for batch in (1, 4):
            traced = trace_band_floats(arch, cfg, cfg.height, chain, batch) / (cfg.height * cfg.width)
            assert traced <= arch.decode_floats_per_pixel(cfg, chain) <= 3 * traced


def test_a_decompression_bomb_is_refused_before_anything_is_decoded(tmp_path):
    path = tmp_path / "bomb.mvinr"
    path.write_bytes(bomb())
    assert path.stat().st_size < 20_000
    out = tmp_path / "views"
    r = run_tool("mvdec", path, "-o", out, "--frames", "0", "--no-progress")
    assert r.returncode == 2 and "16384x16384 (268435456 pixels) are above --max-pixels 67108864" in r.stderr
    # in bands the network's memory follows the band, but the frames' output samples (384 MiB each) remain
    r = run_tool("mvdec", path, "-o", out, "--frames", "0-3", "--max-pixels", "0", "--max-memory", "1G")
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert (
        "(4 frames of 16384x16384 a pass in bands of 2 rows), more than --max-memory 1.0 GiB; try --batch 1, or "
        in r.stderr
    )
    r = run_tool("mvdec", path, "-o", out, "--frames", "0", "--max-pixels", "0", "--max-memory", "256M")
    assert r.returncode == 2 and "(1 frame of 16384x16384 a pass in bands of 2 rows)" in r.stderr, r.stderr
    assert "--batch 1" not in r.stderr
    assert not out.exists() or not any(out.iterdir())  # refused before any output was opened
    with Decoder(path) as dec:
        assert dec.needs([0]).memory > 16384**2 * 4 * 16  # the last block's 16 floats a pixel at least


def test_mvinfo_refuses_parameters_beyond_its_memory_limit(tmp_path):
    path = tmp_path / "bomb.mvinr"
    path.write_bytes(bomb())
    r = run_tool("mvinfo", path, "--max-memory", "1M")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "segment 0's 122383 parameters need about" in r.stderr and "more than --max-memory 1 MiB" in r.stderr
    assert run_tool("mvinfo", path).returncode == 0


def test_needs_of_a_frame_list():
    with Decoder(CONFORMANCE / "c06_two_segments" / "stream.mvinr") as dec:
        assert dec.needs([]).memory == 0
        assert dec.needs([4]).memory > 0 and dec.needs([0, 4]).memory >= dec.needs([4]).memory
        with pytest.raises(InputError, match="frame 5 is not in the stream's 0-4"):
            dec.needs([5])


def test_mvinfo_shows_what_decoding_will_need():
    stream = CONFORMANCE / "c15_pyramid_mc_motion" / "stream.mvinr"
    r = run_tool("mvinfo", stream, "--json")
    report = json.loads(r.stdout)
    with open(stream, "rb") as f:
        index = read_index(f)
    needs = segment_needs(index, 0, 1)
    seg = report["segments"][0]
    assert seg["decode_memory"] == needs.memory == report["decode_memory"] and seg["decode_batch"] == 1
    assert seg["macs_per_frame"] == pytest.approx(seg["macs_per_pixel"] * 72 * 128)
    text = run_tool("mvinfo", stream).stdout
    least = segment_needs(index, 0, 1, rows=2)
    assert seg["decode_memory_least"] == least.memory < needs.memory
    assert f"decoding needs about {needs.memory / 2**20:.0f} MiB on the CPU (1 frame a pass; at least " in text


def test_the_memory_needed_grows_with_the_batch_and_the_chain():
    with open(CONFORMANCE / "c15_pyramid_mc_motion" / "stream.mvinr", "rb") as f:
        index = read_index(f)
    assert segment_needs(index, 0, 4).memory > segment_needs(index, 0, 1).memory
    assert segment_needs(index, 0, 1, first=4).memory > segment_needs(index, 0, 1).memory


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4G", 4 << 30),
        ("512M", 512 << 20),
        ("1.5GiB", 3 << 29),
        ("100k", 102400),
        ("0", 0),
        ("4GB", 4 << 30),
        ("10b", 10),
    ],
)
def test_sizes(text, expected):
    assert parse_bytes(text, "--max-memory") == expected


@pytest.mark.parametrize("text", ["", "G", "lots", "-1G", "4X", "inf", "1e400", "0.5", "1ib", "4 G B", "9" * 30])
def test_bad_sizes_say_what_to_give(text):
    with pytest.raises(InputError, match="is not a size; give bytes with an optional K, M, G or T"):
        parse_bytes(text, "--max-memory")


def test_a_failed_decode_leaves_no_output_file(tmp_path):
    out = tmp_path / "views"
    out.mkdir()
    (out / "v0_texture_64x36_yuv420p.yuv").write_bytes(b"an earlier output")
    r = run_tool("mvdec", CONFORMANCE / "negative" / "hash_mismatch.mvinr", "-o", out, "--no-progress")
    assert r.returncode == 9
    assert sorted(p.name for p in out.iterdir()) == ["v0_texture_64x36_yuv420p.yuv"]  # no partial files either
    assert (out / "v0_texture_64x36_yuv420p.yuv").read_bytes() == b"an earlier output"
    r = run_tool("mvdec", CONFORMANCE / "c01_8bit" / "stream.mvinr", "-o", out, "--no-progress")
    assert r.returncode == 0 and sorted(p.name for p in out.iterdir()) == [
        "v0_texture_64x36_yuv420p.yuv",
        "v1_texture_64x36_yuv420p.yuv",
    ]
