"""TNSL chunks (bitstream_spec.md section 7.9): a segment's tensors in one chunk, without the counts their
layout implies, their masks and symbols in one range-coded message. mvenc writes them in format 1.1 segments."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mvcodec.bitstream import read_index, read_segment_tensors
from mvcodec.bitstream.stream import SegmentData, lean_payload, write_stream
from mvcodec.bitstream.syntax import ByteReader, ByteWriter, chunk_bytes
from mvcodec.bitstream.tensor import CODING_FLOAT32, MASK_BERNOULLI, MODEL_PER_AXIS, CodedTensor
from mvcodec.compress.coding import segment_message
from mvcodec.compress.decoding import decode_segment, decode_symbols, ideal_bits
from mvcodec.decoder import Decoder
from mvcodec.errors import InvalidStream, UnknownCriticalChunk
from mvcodec.info import stream_report

CONFORMANCE = Path(__file__).parent / "conformance"
# TNSR and TNSC streams with every kind of tensor: float32 values, masks, row x column steps, per-axis models
# (c07), the entropy-model network of model_mode 3 (c13), compact tables and modes 5 and 6 (c17), MV-HiNeRV (c18)
SOURCES = ["c07_coding_tools", "c06_two_segments", "c13_pyramid_mc_arm", "c17_pyramid_mc_compact", "c18_hinerv"]


def _segments(data: bytes) -> tuple[object, list[SegmentData]]:
    f = io.BytesIO(data)
    index = read_index(f)
    return index, [SegmentData(s.header, s.config, read_segment_tensors(f, s), s.digest) for s in index.segments]


def _lean(segments: list[SegmentData]) -> list[SegmentData]:
    return [replace(s, message=segment_message(s.tensors)) for s in segments]


@pytest.mark.parametrize("name", SOURCES)
def test_a_segment_in_one_tnsl_chunk_decodes_to_the_same_parameters(name):
    data = (CONFORMANCE / name / "stream.mvinr").read_bytes()
    index, segments = _segments(data)
    out = io.BytesIO()
    size = write_stream(out, index.sequence, _lean(segments))
    lean = out.getvalue()
    again, rewritten = _segments(lean)
    types = [c.type for c in again.chunks]
    assert types.count("TNSL") == len(segments) and not {"TNSR", "TNSC"} & set(types)
    assert again.version == (1, 1) and size == len(lean) < len(data)
    for before, after in zip(segments, rewritten, strict=True):
        assert after.digest == before.digest
        a, b = decode_segment(before.tensors), decode_segment(after.tensors)
        assert all(np.array_equal(x, y) for x, y in zip(a.values, b.values, strict=True))
        for t, u in zip(before.tensors, after.tensors, strict=True):  # every field but the words the same
            assert u.message is not None and u.words is None
            assert replace(u, words=t.words, mask_words=t.mask_words, message=None).to_bytes() == t.to_bytes()
    with Decoder(io.BytesIO(lean)) as dec:
        for k in range(len(again.segments)):
            dec.parameters(k)  # the hash holds


def test_the_lean_fields_leave_out_what_the_layout_implies():
    data = (CONFORMANCE / "c17_pyramid_mc_compact" / "stream.mvinr").read_bytes()
    _, (segment,) = _segments(data)
    latent = segment.tensors[3]  # a latent grid: 7 bytes of fields besides its step and table, not 33
    tnsc = len(latent.to_bytes(implied=True)) - 4 * len(latent.words)
    assert tnsc - len(latent.lean_bytes()) == 33 - 7
    message = segment_message(segment.tensors)
    separate = sum(4 * len(t.words) for t in segment.tensors)
    assert 0 < separate - 4 * len(message) <= 8 * len(segment.tensors)  # one flush in place of one a tensor


def test_a_mask_and_an_axis_model_go_through_the_message():
    _, segments = _segments((CONFORMANCE / "c07_coding_tools" / "stream.mvinr").read_bytes())
    tensors = segments[0].tensors
    assert any(t.mask_mode == MASK_BERNOULLI for t in tensors) and any(t.coding == CODING_FLOAT32 for t in tensors)
    assert any(t.model_mode == MODEL_PER_AXIS and t.model_axis == 0 for t in tensors)
    payload = lean_payload(tensors, segment_message(tensors))
    r = ByteReader(payload, "TNSL")
    back = [CodedTensor.read_fields(r, t.name, t.shape, lean=True) for t in tensors]
    assert r.remaining % 4 == 0 and r.remaining > 0
    assert [(t.mask_mode, t.p_keep, t.model_axis, t.step_mode) for t in back] == [
        (t.mask_mode, t.p_keep, t.model_axis, t.step_mode) for t in tensors
    ]


def test_a_lean_tensor_is_decoded_with_its_segment_only():
    data = (CONFORMANCE / "c19_pyramid_mc_lean" / "stream.mvinr").read_bytes()
    f = io.BytesIO(data)
    index = read_index(f)
    tensors = read_segment_tensors(f, index.segments[0])
    assert index.segments[0].lean and all(t.message is tensors[0].message for t in tensors)
    with pytest.raises(ValueError, match="give its symbols"):
        ideal_bits(tensors[0])
    with pytest.raises(ValueError, match="decode the segment"):
        decode_symbols(tensors[0], None)
    symbols = decode_segment(tensors).symbols
    assert ideal_bits(tensors[0], symbols[0]) > 0


@pytest.mark.parametrize(
    "values", [[0, 1, 127, 128, 300, 16383, 16384, 2**32 - 1], [0, -1, 1, -64, 64, -(2**20), 2**20, -(2**31)]]
)
def test_varints_round_trip(values):
    w = ByteWriter()
    signed = min(values) < 0
    for v in values:
        (w.vs if signed else w.vu)(v)
    r = ByteReader(w.bytes(), "X")
    assert [(r.vs if signed else r.vu)() for _ in values] == values and r.remaining == 0
    one = ByteWriter()
    one.vu(127)
    two = ByteWriter()
    two.vu(128)
    assert one.bytes() == b"\x7f" and two.bytes() == b"\x80\x01"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x80\x00", "shortest form"),
        (b"\xff\xff\xff\xff\x1f", "out of range"),
        (b"\x80\x80\x80\x80\x80\x01", "past 5 bytes"),
        (b"\x80", "ends early"),
    ],
)
def test_a_bad_varint_is_an_invalid_stream(data, message):
    with pytest.raises(InvalidStream, match=message):
        ByteReader(data, "TNSL").vu()


def _stream_with(chunk_types: list[str]) -> bytes:
    """c17's stream with its tensor chunks replaced by these: 'TNSL' the lean chunk, 'TNSC' its first tensor."""
    data = (CONFORMANCE / "c17_pyramid_mc_compact" / "stream.mvinr").read_bytes()
    index, (segment,) = _segments(data)
    chunks = {
        "TNSL": chunk_bytes("TNSL", lean_payload(segment.tensors, segment_message(segment.tensors))),
        "TNSC": chunk_bytes("TNSC", segment.tensors[0].to_bytes(implied=True)),
    }
    tensors = [c for c in index.chunks if c.type == "TNSC"]
    start, end = tensors[0].offset - 8, tensors[-1].offset + tensors[-1].length + 4
    return data[:start] + b"".join(chunks[t] for t in chunk_types) + data[end:]


@pytest.mark.parametrize(
    "types, message",
    [
        (["TNSC", "TNSL"], "after tensor chunks"),
        (["TNSL", "TNSL"], "a second TNSL"),
        (["TNSL", "TNSC"], "after the segment's TNSL"),
    ],
)
def test_a_tnsl_chunk_stands_alone_in_its_segment(types, message):
    with pytest.raises(InvalidStream, match=message):
        read_index(io.BytesIO(_stream_with(types)))
    read_index(io.BytesIO(_stream_with(["TNSL"])))


def test_a_decoder_without_tnsl_needs_a_newer_one(monkeypatch):
    stream = CONFORMANCE / "c19_pyramid_mc_lean" / "stream.mvinr"
    known = {"SEQH", "SEGM", "ARCH", "ARCX", "TNSR", "TNSC", "PHSH", "MEND"}  # a 1.1 decoder before section 7.9
    monkeypatch.setattr("mvcodec.bitstream.stream.KNOWN_CRITICAL", known)
    with open(stream, "rb") as f, pytest.raises(UnknownCriticalChunk, match="'TNSL'.*needs a newer decoder"):
        read_index(f)


def test_mvinfo_counts_the_message_once():
    r = stream_report(CONFORMANCE / "c20_coding_tools_lean" / "stream.mvinr")
    floats = sum(t["coded_bits"] for s in r["segments"] for t in s["tensors"] if t["coding"] == "float32")
    assert all(t["coded_bits"] is None for s in r["segments"] for t in s["tensors"] if t["coding"] == "quantised")
    assert r["coded_bits"] == floats + sum(s["message_bits"] for s in r["segments"]) > floats > 0
    assert len(r["segments"]) == 2 and abs(r["coded_bits"] / r["ideal_bits"] - 1) < 0.01


def test_repack_splits_the_message_and_rebuilds_the_stream_bit_for_bit(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent.parent / "tools"))
    from repack import read_stream, repacked

    path = CONFORMANCE / "c19_pyramid_mc_lean" / "stream.mvinr"
    index, segments = read_stream(path)
    assert all(t.message is None and t.words is not None for t in segments[0].tensors)
    tnsc = repacked(index, segments, "tnsc")
    assert repacked(*_segments(tnsc), "tnsl") == path.read_bytes()
    assert len(tnsc) - index.size > 12 * len(segments[0].tensors)
    r = subprocess.run(
        [
            sys.executable,
            Path(__file__).parent.parent / "tools" / "repack.py",
            path,
            "-o",
            tmp_path / "c.mvinr",
            "--tensors",
            "tnsc",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and (tmp_path / "c.mvinr").read_bytes() == tnsc, r.stderr


def test_split_message_gives_every_tensor_of_a_segment_with_floats_its_own_words():
    sys.path.insert(0, str(Path(__file__).parent.parent / "tools"))
    from repack import read_stream, repacked

    path = CONFORMANCE / "c20_coding_tools_lean" / "stream.mvinr"
    index, segments = read_stream(path)
    assert all(t.message is None for s in segments for t in s.tensors)
    assert any(t.coding == CODING_FLOAT32 for t in segments[0].tensors)
    assert repacked(index, segments, "tnsr") != path.read_bytes()
    assert repacked(*_segments(repacked(index, segments, "tnsr")), "tnsr") == repacked(index, segments, "tnsr")
