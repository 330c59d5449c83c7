"""Decoding in bands of rows (bitstream_spec.md sections 12.1 and 14; issue 15): MV-Pyramid and MV-Pyramid-MC
give every band exactly the whole frame's samples, MV-MGINR within 1 of them; the decoder bands a frame by
itself where the whole frame does not fit its memory limit."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import run_tool

from mvcodec.bitstream import SegmentData, read_index, read_segment_tensors, write_stream
from mvcodec.decoder import Decoder, default_band_rows, segment_needs
from mvcodec.model import bands
from mvcodec.model.base import Shape, trace_band_floats
from mvcodec.model.registry import arch_of, by_name

CONFORMANCE = Path(__file__).parent / "conformance"
PYRAMIDS = sorted(CONFORMANCE.glob("c1[1-5]*/stream.mvinr"))
MGINRS = [CONFORMANCE / n / "stream.mvinr" for n in ("c01_8bit", "c02_10bit", "c05_portrait", "c06_two_segments")]


def decoded(source, rows=None, batch=None, views=None, frames=None) -> list[np.ndarray]:
    """Every decoded plane of a stream, in output order."""
    with Decoder(source, batch=batch, rows=rows) as dec:
        return [p for f in dec.frames(views, frames) for p in f.planes]


def with_siting(stream: Path, siting: str) -> io.BytesIO:
    """The stream with its chroma siting replaced (the same coded network)."""
    with open(stream, "rb") as f:
        index = read_index(f)
        segments = [SegmentData(s.header, s.config, read_segment_tensors(f, s), s.digest) for s in index.segments]
    seq = index.sequence
    seq = dataclasses.replace(seq, color=dataclasses.replace(seq.color, chroma_siting=siting))
    buf = io.BytesIO()
    write_stream(buf, seq, segments)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("stream", PYRAMIDS, ids=[p.parent.name for p in PYRAMIDS])
def test_pyramid_bands_decode_exactly_the_whole_frames_samples(stream):
    whole = decoded(stream)
    for rows in (2, 6, 16):
        assert all(np.array_equal(a, b) for a, b in zip(whole, decoded(stream, rows), strict=True)), rows


@pytest.mark.parametrize("siting", ["top-left", "center"])
def test_bands_follow_the_chroma_filters_rows(siting):
    stream = with_siting(CONFORMANCE / "c12_pyramid_mc" / "stream.mvinr", siting)
    whole = decoded(stream, frames=[0, 1])
    for rows in (2, 10):
        stream.seek(0)
        assert all(np.array_equal(a, b) for a, b in zip(whole, decoded(stream, rows, frames=[0, 1]), strict=True))


def test_pyramid_samples_do_not_depend_on_the_batch_or_the_threads():
    stream = CONFORMANCE / "c12_pyramid_mc" / "stream.mvinr"
    whole = decoded(stream)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_thread = decoded(stream, batch=3)
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(a, b) for a, b in zip(whole, one_thread, strict=True))


@pytest.mark.parametrize("stream", MGINRS, ids=[p.parent.name for p in MGINRS])
def test_mginr_bands_are_within_one_of_the_whole_frame(stream):
    whole = decoded(stream)
    for rows in (2, 8):
        for a, b in zip(whole, decoded(stream, rows), strict=True):
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_the_band_pieces_compute_what_pytorchs_whole_frame_operations_do():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 23, 40)
    ref = F.interpolate(x, size=(180, 320), mode="bilinear", align_corners=False)
    up = bands.upsample_rows(x, 180, 320, 0, 180)
    assert torch.allclose(up, ref, atol=2e-5) and torch.equal(up[:, :, 37:50], bands.upsample_rows(x, 180, 320, 37, 50))
    w, b = torch.randn(3, 8, 3, 3), torch.randn(3)
    y = torch.randn(2, 8, 30, 20)
    full = bands.conv3x3_rows(y, w, b, 0, 30, 30)
    assert torch.allclose(full, F.conv2d(y, w, b, padding=1), atol=1e-5)
    lo, hi = bands.halo(11, 19, 30)
    assert torch.equal(bands.conv3x3_rows(y[:, :, lo:hi], w, b, 11, 19, 30), full[:, :, 11:19])
    v = torch.randn(4097) * 4
    for fn, ref_fn in ((bands.gelu2, lambda u: 2 * F.gelu(u)), (bands.sigmoid, torch.sigmoid)):
        whole = fn(v)
        assert torch.allclose(whole, ref_fn(v), atol=4e-6)
        # an element's value does not depend on where in a tensor it is (PyTorch's fused ones do)
        assert all(torch.equal(fn(v[i : i + 1]), whole[i : i + 1]) for i in range(0, 4097, 97))


def test_the_decoder_bands_a_frame_that_does_not_fit_its_memory_limit():
    stream = CONFORMANCE / "c15_pyramid_mc_motion" / "stream.mvinr"
    with Decoder(stream) as dec:
        frames = list(range(dec.sequence.frames))
        whole, smallest = dec.needs(frames).memory, dec.needs(frames, rows=2).memory
        assert smallest < whole
        dec.check_limits(frames, 0, (whole + smallest) // 2)
        assert dec.rows and dec.rows % 2 == 0 and dec.needs(frames).memory <= (whole + smallest) // 2
        banded = [p for f in dec.frames() for p in f.planes]
    assert all(np.array_equal(a, b) for a, b in zip(decoded(stream), banded, strict=True))
    r = run_tool("mvdec", stream, "--md5", "--no-progress", "--max-memory", str(smallest - 1))
    assert r.returncode == 2 and "a pass in bands of 2 rows), more than --max-memory" in r.stderr, r.stderr
    r = run_tool("mvdec", stream, "--md5", "--no-progress", "--band-rows", "3")
    assert r.returncode == 2 and "--band-rows 3: give an even number of rows" in r.stderr


def test_mvdec_in_bands_matches_the_conformance_md5s():
    for name in ("c12_pyramid_mc", "c02_10bit"):
        folder = CONFORMANCE / name
        r = run_tool("mvdec", folder / "stream.mvinr", "--check-md5", folder / "md5.txt", "--band-rows", "4")
        assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", ["mv-pyramid", "mv-pyramid-mc", "mv-mginr"])
def test_a_bands_memory_estimate_bounds_a_trace_of_its_pass(name):
    arch = by_name(name)
    for h, w, params in ((180, 320, 300_000), (72, 128, 3_000_000)):
        cfg = arch.size_for(Shape(4, 16, h, w), params)
        for rows in (2, 16, 64):
            traced = trace_band_floats(arch, cfg, rows, 2)
            assert traced <= arch.band_floats(cfg, rows, 2) <= 4 * traced
            assert arch.band_floats(cfg, rows, 2) < arch.band_floats(cfg, h, 2)


def test_a_streams_memory_in_bands_follows_the_band_not_the_frame():
    with open(CONFORMANCE / "c15_pyramid_mc_motion" / "stream.mvinr", "rb") as f:
        cfg = read_index(f).segments[0].config
    arch = arch_of(cfg)
    tall = dataclasses.replace(cfg, height=cfg.height * 64)
    # what a band's rows add is the same in a frame 64 times as tall; only the latents' share grows
    for rows in (2, 16):
        added = arch.band_floats(cfg, 2 + rows, 2) - arch.band_floats(cfg, 2, 2)
        assert added > 0 and arch.band_floats(tall, 2 + rows, 2) - arch.band_floats(tall, 2, 2) == added


def test_large_frames_of_exact_bands_are_synthesised_in_bands_by_default():
    assert default_band_rows(320, 180) is None and default_band_rows(1280, 720) == 50
    assert default_band_rows(16384, 16384) == 4 and default_band_rows(65536, 2) == 2
    with open(CONFORMANCE / "c15_pyramid_mc_motion" / "stream.mvinr", "rb") as f:
        index = read_index(f)
    seq = dataclasses.replace(index.sequence, width=1280, height=720)
    cfg = dataclasses.replace(index.segments[0].config, width=1280, height=720)
    big = dataclasses.replace(index, sequence=seq, segments=[dataclasses.replace(index.segments[0], config=cfg)])
    assert segment_needs(big, 0, 1).frames < segment_needs(big, 0, 1, rows=720).frames
