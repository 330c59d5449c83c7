"""TNSC chunks (bitstream_spec.md section 7.8): coded tensors whose place in the segment gives their name and
shape. mvenc writes them in format 1.1 segments and TNSR in MV-MGINR's 1.0 segments."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mvcodec.bitstream import read_index, read_segment_tensors
from mvcodec.bitstream.stream import SegmentData, write_stream
from mvcodec.bitstream.syntax import chunk_bytes, scan_chunks
from mvcodec.bitstream.tensor import CodedTensor
from mvcodec.decoder import Decoder
from mvcodec.errors import InvalidStream, UnknownCriticalChunk

CONFORMANCE = Path(__file__).parent / "conformance"


def _segments(path: Path) -> tuple[object, list[SegmentData]]:
    with open(path, "rb") as f:
        index = read_index(f)
        segments = [
            SegmentData(seg.header, seg.config, read_segment_tensors(f, seg), seg.digest) for seg in index.segments
        ]
    return index, segments


def _chunks(data: bytes) -> list:
    f = io.BytesIO(data)
    f.seek(12)
    out = []
    for ref in scan_chunks(f, len(data)):
        out.append(ref)
        if ref.type == "MEND":
            return out


def _types(data: bytes) -> list[str]:
    return [ref.type for ref in _chunks(data)]


@pytest.mark.parametrize("name", ["c15_pyramid_mc_motion", "c01_8bit"])
def test_the_writer_implies_names_and_shapes_in_format_1_1_segments_only(name):
    index, segments = _segments(CONFORMANCE / name / "stream.mvinr")
    out = io.BytesIO()
    write_stream(out, index.sequence, segments)
    data = out.getvalue()
    types = _types(data)
    pyramid = name.startswith("c15")
    assert types.count("TNSC" if pyramid else "TNSR") == len(segments[0].tensors)
    assert ("TNSR" if pyramid else "TNSC") not in types
    assert data[8:12] == (b"\x01\x00\x01\x00" if pyramid else b"\x01\x00\x00\x00")  # 1.1, or 1.0 for MV-MGINR
    again, rewritten = _segments_of(data)
    for a, b in zip(segments[0].tensors, rewritten[0].tensors, strict=True):
        assert a.to_bytes() == b.to_bytes()  # every field the same, the names and shapes from the layout
    if pyramid:  # the original's TNSR chunks carried them: 1 + name + 1 + 4 x ndim bytes a tensor more
        saved = sum(2 + len(t.name) + 4 * len(t.shape) for t in segments[0].tensors)
        assert len(data) == (CONFORMANCE / name / "stream.mvinr").stat().st_size - saved - _enci_bytes(name)


def _segments_of(data: bytes):
    f = io.BytesIO(data)
    index = read_index(f)
    return index, [SegmentData(s.header, s.config, read_segment_tensors(f, s), s.digest) for s in index.segments]


def _enci_bytes(name: str) -> int:
    return sum(
        ref.length + 12 for ref in _chunks((CONFORMANCE / name / "stream.mvinr").read_bytes()) if ref.type == "enci"
    )


def test_a_payload_without_name_and_shape_round_trips():
    t = CodedTensor("synth.0.weight", (4, 3, 1, 1), coding=0, values=np.arange(12, dtype=np.float32))
    full, short = t.to_bytes(), t.to_bytes(implied=True)
    assert full[-len(short) :] == short and len(full) - len(short) == 1 + 14 + 1 + 16
    back = CodedTensor.parse(short, (t.name, t.shape))
    assert back.name == t.name and back.shape == t.shape and np.array_equal(back.values, t.values)


def test_a_decoder_without_tnsc_needs_a_newer_one(monkeypatch):
    stream = CONFORMANCE / "c17_pyramid_mc_compact" / "stream.mvinr"
    assert "TNSC" in _types(stream.read_bytes())
    known = {"SEQH", "SEGM", "ARCH", "ARCX", "TNSR", "PHSH", "MEND"}  # a 1.1 decoder from before section 7.8
    monkeypatch.setattr("mvcodec.bitstream.stream.KNOWN_CRITICAL", known)
    with open(stream, "rb") as f, pytest.raises(UnknownCriticalChunk, match="'TNSC'.*needs a newer decoder"):
        read_index(f)


def test_a_short_tnsc_payload_is_an_invalid_stream():
    t = CodedTensor("synth.0.bias", (5,), coding=0, values=np.ones(5, np.float32))
    with pytest.raises(InvalidStream, match="TNSC synth.0.bias"):
        CodedTensor.parse(t.to_bytes(implied=True)[:-3], (t.name, t.shape))
    with pytest.raises(InvalidStream, match="TNSC"):
        CodedTensor.parse(b"", (t.name, t.shape))


def test_tnsr_and_tnsc_mix_in_a_segment_and_the_writer_keeps_the_layouts_order():
    index, segments = _segments(CONFORMANCE / "c17_pyramid_mc_compact" / "stream.mvinr")
    out = io.BytesIO()
    write_stream(out, index.sequence, segments)
    data = out.getvalue()
    # the third tensor chunk as a TNSR: a decoder takes each chunk as it comes
    third = [ref for ref in _chunks(data) if ref.type == "TNSC"][2]
    tensor = segments[0].tensors[2]
    mixed = data[: third.offset - 8] + chunk_bytes("TNSR", tensor.to_bytes()) + data[third.offset + third.length + 4 :]
    again, rewritten = _segments_of(mixed)
    assert [t.to_bytes() for t in rewritten[0].tensors] == [t.to_bytes() for t in segments[0].tensors]
    assert again.segments[0].digest == index.segments[0].digest
    with Decoder(io.BytesIO(mixed)) as dec:
        dec.parameters(0)  # the parameter hash holds
    # tensors out of the layout's order cannot be written where their places name them
    swapped = [segments[0].tensors[1], segments[0].tensors[0], *segments[0].tensors[2:]]
    with pytest.raises(ValueError, match="not those of the layout"):
        write_stream(io.BytesIO(), index.sequence, [replace(segments[0], tensors=swapped)])
    write_stream(io.BytesIO(), index.sequence, [replace(segments[0], tensors=swapped)], implied=False)  # TNSR
