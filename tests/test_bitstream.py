"""The container: chunk framing, header round trips, tensor codings, structure rules, parameter hash."""

from __future__ import annotations

import io
import struct
from fractions import Fraction

import numpy as np
import pytest
import torch

from mvcodec.bitstream import (
    CodedTensor,
    SegmentData,
    SegmentHeader,
    SequenceHeader,
    parameter_hash,
    read_index,
    read_segment_tensors,
    write_stream,
)
from mvcodec.bitstream.headers import arch_chunk, parse_arch
from mvcodec.bitstream.syntax import ByteReader, chunk_bytes, file_header, read_file_header
from mvcodec.bitstream.tensor import MASK_BERNOULLI, MODEL_PER_AXIS, STEP_PER_AXIS, STEP_ROW_COLUMN
from mvcodec.color import ColorSpec
from mvcodec.compress.coding import float32_tensor, quantize_uniform, symbol_range
from mvcodec.compress.decoding import decode_tensor, element_steps, ideal_bits
from mvcodec.compress.gaussian import gaussian_bits, model_grid
from mvcodec.compress.range_coding import gaussian_encode, mask_encode
from mvcodec.errors import (
    CrcMismatch,
    InvalidStream,
    NotAStream,
    TruncatedStream,
    UnknownCriticalChunk,
    UnsupportedVersion,
)
from mvcodec.model import MVMGINR, ParamSpec, Role, parameter_layout, solve_config

SEQ = SequenceHeader(("left", "right"), 3, 64, 36, 10, ColorSpec("bt2020", True, "center"), Fraction(30000, 1001), 1)


def tiny_stream(seed: int = 0, info: dict | None = None) -> tuple[bytes, MVMGINR, list[np.ndarray]]:
    """A valid one-segment stream of a randomly initialised model, its model and its dequantised tensors."""
    torch.manual_seed(seed)
    cfg = solve_config(2, 3, 36, 64, 10_000)
    model = MVMGINR(cfg)
    tensors, arrays = [], []
    for spec in parameter_layout(cfg):
        e = quantize_uniform(spec, model.state_dict()[spec.name].numpy())
        t, values = e.tensor, e.values
        tensors.append(t)
        arrays.append(values)
    buf = io.BytesIO()
    write_stream(buf, SEQ, [SegmentData(SegmentHeader(0, 0, 3), cfg, tensors, parameter_hash(arrays))], info)
    return buf.getvalue(), model, arrays


def test_sequence_header_round_trip():
    assert SequenceHeader.parse(SEQ.to_bytes()) == SEQ


def test_architecture_round_trip_and_checks():
    cfg = solve_config(2, 3, 36, 64, 10_000)
    seg = SegmentHeader(0, 0, 3)
    ctype, payload = arch_chunk(cfg)
    assert ctype == "ARCH" and parse_arch(ctype, payload, SEQ, seg) == cfg
    with pytest.raises(InvalidStream, match="frames = 3, the segment has 2"):
        parse_arch(ctype, payload, SEQ, SegmentHeader(0, 0, 2))
    with pytest.raises(InvalidStream, match="2 unexpected bytes"):
        parse_arch(ctype, payload + b"\0\0", SEQ, seg)
    with pytest.raises(UnknownCriticalChunk, match="architecture id 40000 is not known.*needs a newer decoder"):
        parse_arch("ARCX", struct.pack("<H", 40000) + payload, SEQ, seg)
    with pytest.raises(InvalidStream, match="architecture 0 .* is coded in ARCH"):
        parse_arch("ARCX", struct.pack("<H", 0) + payload, SEQ, seg)


def test_quantised_tensor_round_trip_is_exact_and_close_to_the_weights():
    w = np.random.default_rng(0).normal(0, 0.1, (8, 4, 3, 3)).astype(np.float32)
    e = quantize_uniform(ParamSpec("blocks.0.conv.weight", w.shape, Role.CONV_WEIGHT), w)
    t, values = e.tensor, e.values
    parsed = CodedTensor.parse(t.to_bytes())
    decoded = decode_tensor(parsed)
    assert decoded.dtype == np.float32 and np.array_equal(decoded, values)
    assert t.step_mode == STEP_PER_AXIS and len(t.steps) == 8
    assert np.abs(decoded - w).max() <= t.steps.max() / 2 + 1e-7
    assert abs(ideal_bits(parsed) - 32 * len(t.words)) < 64  # range coder within two words of the ideal


def test_every_coding_tool_round_trips():
    """Row x column steps, a Bernoulli mask, per-axis Gaussians and float32 values decode as coded."""
    rng = np.random.default_rng(1)
    w = rng.normal(0, 1, (6, 5, 3)).astype(np.float32)
    rows, cols = np.float32([0.01, 0.02, 0.03, 0.04, 0.05, 0.06]), np.float32([1, 0.5, 2, 1, 1.5])
    t = CodedTensor("x", w.shape, step_mode=STEP_ROW_COLUMN, steps=np.concatenate([rows, cols]))
    mask = rng.random(w.shape) < 0.6
    t.mask_mode, t.p_keep, t.mask_words = MASK_BERNOULLI, 0.6, mask_encode(mask, 0.6)
    symbols = np.clip(np.rint(w / element_steps(t).numpy()), -127, 127).astype(np.int32)
    t.sym_min, t.sym_max = symbol_range(symbols[mask])
    t.model_mode, t.model_axis = MODEL_PER_AXIS, 2
    t.means, t.stds = np.float32([0, 1, -1]), np.float32([20, 30, 40])
    means, stds = model_grid(t)
    t.words = gaussian_encode(symbols[mask], t.sym_min, t.sym_max, means[mask], stds[mask])
    decoded = decode_tensor(CodedTensor.parse(t.to_bytes()))
    step = rows[:, None, None] * cols[None, :, None]
    assert np.array_equal(decoded, np.where(mask, symbols.astype(np.float32) * step, np.float32(0)))
    f = float32_tensor("b", w[0, 0])
    assert np.array_equal(decode_tensor(CodedTensor.parse(f.to_bytes())), w[0, 0])


def test_gaussian_bits_matches_the_coded_size():
    symbols = np.random.default_rng(2).normal(0, 6, 20_000).round().astype(np.int32)
    m, s = np.zeros(len(symbols), np.float32), np.full(len(symbols), 6, np.float32)
    words = gaussian_encode(symbols, -40, 40, m, s)
    bits = gaussian_bits(*(torch.from_numpy(a.astype(np.float64)) for a in (symbols, m, s)), -40, 40)
    assert 32 * len(words) == pytest.approx(float(bits), rel=0.002)


def test_stream_decodes_to_the_encoders_parameters_and_hash():
    data, model, arrays = tiny_stream(info={"encoder": "test"})
    f = io.BytesIO(data)
    index = read_index(f)
    assert index.sequence == SEQ and index.version == (1, 0) and index.info == {"encoder": "test"}
    tensors = read_segment_tensors(f, index.segments[0])
    decoded = [decode_tensor(t) for t in tensors]
    assert all(np.array_equal(a, b) for a, b in zip(decoded, arrays, strict=True))
    assert parameter_hash(decoded) == index.segments[0].digest


def test_signature_version_and_framing_errors():
    data, _, _ = tiny_stream()
    with pytest.raises(NotAStream, match="text mode"):
        read_file_header(io.BytesIO(data.replace(b"\r\n", b"\n")))
    with pytest.raises(NotAStream, match="bad signature"):
        read_file_header(io.BytesIO(b"RIFF" + data[4:]))
    with pytest.raises(NotAStream, match="empty"):
        read_file_header(io.BytesIO(b""))
    with pytest.raises(UnsupportedVersion):
        read_file_header(io.BytesIO(file_header((2, 0))))
    with pytest.raises(TruncatedStream):
        read_index(io.BytesIO(data[:-1]))
    broken = bytearray(data)
    broken[40] ^= 0xFF  # inside SEQH
    with pytest.raises((CrcMismatch, InvalidStream)):
        read_index(io.BytesIO(bytes(broken)))


def test_structure_rules():
    data, _, _ = tiny_stream()
    seqh_end = 12 + 12 + len(SEQ.to_bytes())
    with pytest.raises(UnknownCriticalChunk):
        read_index(io.BytesIO(data[:seqh_end] + chunk_bytes("QQQQ", b"") + data[seqh_end:]))
    skipped = read_index(io.BytesIO(data[:seqh_end] + chunk_bytes("qqqq", b"x") + data[seqh_end:]))
    assert len(skipped.segments) == 1
    with pytest.raises(InvalidStream, match="trailing"):
        read_index(io.BytesIO(data + b"\0"))
    mend = chunk_bytes("MEND", b"")
    with pytest.raises(InvalidStream, match="do not cover"):
        read_index(io.BytesIO(data[:seqh_end] + mend))
    with pytest.raises(InvalidStream, match="before the stream is complete"):
        read_index(io.BytesIO(file_header((1, 0)) + mend))
    with pytest.raises(InvalidStream, match="starts with chunk SEGM"):
        read_index(io.BytesIO(file_header((1, 0)) + chunk_bytes("SEGM", SegmentHeader(0, 0, 3).to_bytes()) + mend))


def test_byte_reader_refuses_counts_that_do_not_fit():
    r = ByteReader(struct.pack("<I", 5), "TEST")
    with pytest.raises(InvalidStream, match="do not fit"):
        r.array("<f4", 1 << 30)
    with pytest.raises(InvalidStream, match="ends early"):
        ByteReader(b"\x01", "TEST").u32()
