"""Entropy model mode 2 (bitstream_spec.md section 7.2): context-selected Gaussians for latent grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvcodec.bitstream.tensor import MODEL_CONTEXT, NO_REF, CodedTensor
from mvcodec.compress.coding import CodingPlan, LatentContext, code_symbols
from mvcodec.compress.context import contexts, previous_rows
from mvcodec.compress.decoding import decode_tensors, segment_ideal_bits, segment_symbols
from mvcodec.errors import InvalidStream
from mvcodec.model.base import ParamSpec, Role

PLAN = CodingPlan(0, 0, MODEL_CONTEXT, 1)


def _spec_contexts(s: np.ndarray, coarse: np.ndarray | None, period: int) -> np.ndarray:
    """Section 7.2 read literally, one element at a time."""
    n_, c_, h, w = s.shape
    out = np.zeros(s.shape, np.int64)
    for n in range(n_):
        for c in range(c_):
            for i in range(h):
                for j in range(w):
                    a = b = 0
                    for di in (-1, 0, 1):
                        for dj in (-1, 0, 1):
                            ii, jj = i + di, j + dj
                            if not (0 <= ii < h and 0 <= jj < w):
                                continue
                            if coarse is not None:
                                a = max(a, min(abs(int(coarse[n, c, ii // 2, jj // 2])), 2))
                            if period and n % period:
                                b = max(b, min(abs(int(s[n - 1, c, ii, jj])), 2))
                    out[n, c, i, j] = a + 3 * b
    return out


def _sparse_symbols(rng, shape, density=0.2, scale=3):
    return (rng.integers(-scale, scale + 1, shape) * (rng.random(shape) < density)).astype(np.int32)


@pytest.mark.parametrize("hw", [(6, 8), (5, 7)])
def test_contexts_follow_the_spec_word_for_word(hw):
    rng = np.random.default_rng(1)
    s = _sparse_symbols(rng, (4, 2, *hw))
    coarse = _sparse_symbols(rng, (4, 2, -(-hw[0] // 2), -(-hw[1] // 2)))
    st, ct = torch.from_numpy(s), torch.from_numpy(coarse)
    for period in (0, 2):
        for c in (None, coarse):
            got = contexts(s.shape, None if c is None else ct, previous_rows(st, period))
            assert np.array_equal(got.numpy(), _spec_contexts(s, c, period)), (period, c is None)


def _coded(name, symbols, ctx):
    spec = ParamSpec(name, symbols.shape, Role.LATENT)
    return code_symbols(spec, symbols, np.ones(1, np.float32), None, PLAN, context=ctx)


def test_context_coded_tensors_round_trip_and_cost_what_they_say():
    rng = np.random.default_rng(2)
    coarse = _sparse_symbols(rng, (6, 1, 5, 8))
    fine = _sparse_symbols(rng, (6, 1, 9, 16), density=0.05)
    a = _coded("g.1", coarse, LatentContext(NO_REF, None, 3))
    b = _coded("g.0", fine, LatentContext(0, coarse, 3))
    tensors = [CodedTensor.parse(e.tensor.to_bytes()) for e in (a, b)]
    assert tensors[1].model_mode == MODEL_CONTEXT and tensors[1].coarse_ref == 0 and tensors[1].row_period == 3
    symbols = segment_symbols(tensors)
    assert np.array_equal(symbols[0], coarse) and np.array_equal(symbols[1], fine)
    assert all(np.array_equal(v, e.values) for v, e in zip(decode_tensors(tensors), (a, b), strict=True))
    ideal = segment_ideal_bits(tensors, symbols)
    for t, bits in zip(tensors, ideal, strict=True):
        assert abs(32 * len(t.words) - bits) < 64
    # the contexts pay: the same symbols under one Gaussian per channel cost more
    plain = code_symbols(ParamSpec("g.0", fine.shape, Role.LATENT), fine, np.ones(1, np.float32), None,
                         CodingPlan(0, 0, 1, 1))
    assert len(plain.tensor.words) > len(tensors[1].words)


def test_context_fields_are_checked():
    rng = np.random.default_rng(3)
    good = _coded("g.0", _sparse_symbols(rng, (4, 1, 4, 4)), LatentContext(NO_REF, None, 2)).tensor
    for field, value, message in (("row_period", 3, "row period"), ("model_axis", 0, "context model")):
        t = CodedTensor.parse(good.to_bytes())
        setattr(t, field, value)
        with pytest.raises(InvalidStream, match=message):
            CodedTensor.parse(t.to_bytes())


def _pyramid_stream(path, alter: str | None = None):
    """A one-segment MV-Pyramid stream (2 views x 3 frames x 64x36) of random sparse latents; `alter` points
    frame_grids.0's context at a later tensor or at a tensor of its own size."""
    from mvcodec.bitstream import SegmentData, SegmentHeader, SequenceHeader, parameter_hash, write_stream
    from mvcodec.color import ColorSpec
    from mvcodec.compress.qat import CompressibleModel, export_tensors
    from mvcodec.model.pyramid import PyramidConfig, MVPyramid

    torch.manual_seed(0)
    cfg = PyramidConfig(2, 3, 36, 64, levels=3)
    base = MVPyramid(cfg)
    with torch.no_grad():
        for name, p in base.named_parameters():
            if "grids" in name:
                p.copy_(torch.randint(-2, 3, p.shape) * (torch.rand(p.shape) < 0.2))
    model = CompressibleModel(base, cfg, quantise=True).eval()
    exported = export_tensors(model)
    tensors = [e.tensor for e in exported]
    names = [t.name for t in tensors]
    target = tensors[names.index("frame_grids.0")]
    if alter == "later":
        target.coarse_ref = names.index("synth.0.weight")
    elif alter == "same size":
        target.coarse_ref = names.index("view_grids.0")
    seq = SequenceHeader(("a", "b"), 3, 64, 36, 8, ColorSpec(), 30, 1)
    seg = SegmentData(SegmentHeader(0, 0, 3), cfg, tensors, parameter_hash([e.values for e in exported]))
    with open(path, "wb") as f:
        write_stream(f, seq, [seg], {})
    return path, exported


def test_an_mv_pyramid_stream_decodes_to_the_encoders_parameters(tmp_path):
    from mvcodec.bitstream.stream import read_index, read_segment_tensors

    path, exported = _pyramid_stream(tmp_path / "p.mvinr")
    with open(path, "rb") as f:
        tensors = read_segment_tensors(f, read_index(f).segments[0])
    assert sum(t.model_mode == MODEL_CONTEXT for t in tensors) == 6
    for got, e in zip(decode_tensors(tensors), exported, strict=True):
        assert np.array_equal(got, e.values), e.tensor.name


@pytest.mark.parametrize("alter", ["later", "same size"])
def test_a_context_must_refer_to_an_earlier_tensor_of_half_the_size(tmp_path, alter):
    from mvcodec.bitstream.stream import read_index, read_segment_tensors

    path, _ = _pyramid_stream(tmp_path / "p.mvinr", alter)
    with open(path, "rb") as f, pytest.raises(InvalidStream, match="context refers to tensor"):
        read_segment_tensors(f, read_index(f).segments[0])
