"""Entropy model mode 5 (bitstream_spec.md section 7.5): mode 2's contexts refined by decoded neighbours in
the same row, the row's positions decoded in seven sub-lattices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_context import _sparse_symbols, _spec_contexts

from mvcodec.bitstream.tensor import MODEL_CONTEXT, MODEL_PHASED, NO_REF, CodedTensor
from mvcodec.compress.coding import CodingPlan, LatentContext, code_symbols
from mvcodec.compress.context import context_stats, phased_order, spatial_levels
from mvcodec.compress.decoding import decode_tensors, segment_ideal_bits, segment_symbols, tensor_contexts
from mvcodec.compress.range_coding import gaussian_encode
from mvcodec.errors import InvalidStream, UnknownCriticalChunk
from mvcodec.model.base import ParamSpec, Role

PHASED = CodingPlan(0, 0, MODEL_PHASED, 1)
# section 7.5's table: (row offset, column offset), stride, neighbours
TABLE = (
    ((0, 0), 4, ()),
    ((2, 2), 4, ((-2, -2), (-2, 2), (2, -2), (2, 2))),
    ((0, 2), 4, ((-2, 0), (0, -2), (0, 2), (2, 0))),
    ((2, 0), 4, ((-2, 0), (0, -2), (0, 2), (2, 0))),
    ((1, 1), 2, ((-1, -1), (-1, 1), (1, -1), (1, 1))),
    ((0, 1), 2, ((-1, 0), (0, -1), (0, 1), (1, 0))),
    ((1, 0), 2, ((-1, 0), (0, -1), (0, 1), (1, 0))),
)


def _sublattice(i: int, j: int) -> int:
    (k,) = [
        k for k, ((oi, oj), st, _) in enumerate(TABLE) if i >= oi and j >= oj and (i - oi) % st == (j - oj) % st == 0
    ]
    return k


def _spec_phased_contexts(s: np.ndarray, coarse: np.ndarray | None, period: int) -> np.ndarray:
    """Section 7.5 read literally, one element at a time."""
    base = _spec_contexts(s, coarse, period)
    n_, c_, h, w = s.shape
    out = base.copy()
    for n in range(n_):
        for c in range(c_):
            for i in range(h):
                for j in range(w):
                    k = _sublattice(i, j)
                    if k == 0:
                        continue
                    inside = [(i + di, j + dj) for di, dj in TABLE[k][2] if 0 <= i + di < h and 0 <= j + dj < w]
                    assert all(_sublattice(ii, jj) < k for ii, jj in inside)  # decoded before
                    m = max([min(abs(int(s[n, c, ii, jj])), 2) for ii, jj in inside], default=0)
                    out[n, c, i, j] += 9 * (1 + m)
    return out


def _spec_order(shape: tuple[int, ...], period: int) -> list[tuple[int, int, int, int]]:
    """Section 7.5's symbol order, literally."""
    n_, c_, h, w = shape
    positions = [list(range(n_))] if not period else [[n for n in range(n_) if n % period == r] for r in range(period)]
    out = []
    for rows in positions:
        for k in range(7):
            out += [
                (n, c, i, j)
                for n in rows
                for c in range(c_)
                for i in range(h)
                for j in range(w)
                if _sublattice(i, j) == k
            ]
    return out


def _coded(name, symbols, context, plan=PHASED):
    return code_symbols(
        ParamSpec(name, symbols.shape, Role.LATENT), symbols, np.ones(1, np.float32), None, plan, context=context
    )


@pytest.mark.parametrize("hw", [(9, 13), (1, 1), (2, 3), (6, 4)])
def test_spatial_levels_and_order_follow_the_spec_word_for_word(hw):
    rng = np.random.default_rng(7)
    s = _sparse_symbols(rng, (4, 2, *hw), density=0.4)
    coarse = _sparse_symbols(rng, (4, 2, -(-hw[0] // 2), -(-hw[1] // 2)))
    for period in (0, 2):
        for c in (None, coarse):
            t = CodedTensor("g.0", s.shape, model_mode=MODEL_PHASED, model_axis=1, row_period=period)
            got = tensor_contexts(t, s, c)
            assert np.array_equal(got, _spec_phased_contexts(s, c, period)), (period, c is None)
        flat = [np.ravel_multi_index(e, s.shape) for e in _spec_order(s.shape, period)]
        assert np.array_equal(phased_order(s.shape, period), flat)
    assert int(spatial_levels(torch.from_numpy(s)).max()) <= 3


def test_phased_tensors_round_trip_in_the_spec_order_and_cost_what_they_say():
    """mvenc's words are those of section 7.5 read literally (contexts, order, bfloat16 Gaussians of each
    context's statistics); they decode to the symbols; the size is the ideal bits."""
    rng = np.random.default_rng(8)
    coarse = _sparse_symbols(rng, (6, 2, 4, 6))
    fine = _sparse_symbols(rng, (6, 2, 7, 11), density=0.3)
    a = _coded("g.1", coarse, LatentContext(NO_REF, None, 3))
    b = _coded("g.0", fine, LatentContext(0, coarse, 3))
    tensors = [CodedTensor.parse(e.tensor.to_bytes()) for e in (a, b)]
    t = tensors[1]
    assert t.model_mode == MODEL_PHASED and len(t.means) == 36 * 2 and t.row_period == 3
    assert not (t.means.view(np.uint32) & 0xFFFF).any() and not (t.stds.view(np.uint32) & 0xFFFF).any()
    symbols = segment_symbols(tensors)
    assert np.array_equal(symbols[0], coarse) and np.array_equal(symbols[1], fine)
    assert all(np.array_equal(v, e.values) for v, e in zip(decode_tensors(tensors), (a, b), strict=True))
    ctx = _spec_phased_contexts(fine, coarse, 3)
    mean, std = context_stats(torch.from_numpy(fine.astype(np.float64)), torch.from_numpy(ctx), 2, 36)
    bf16 = [torch.from_numpy(x).to(torch.bfloat16).float().numpy() for x in (mean.numpy(), std.numpy())]
    assert np.array_equal(t.means, bf16[0]) and np.array_equal(t.stds, bf16[1]) and (t.stds >= 0.1).all()
    model = ctx * 2 + np.arange(2).reshape(1, 2, 1, 1)
    order = tuple(np.array(_spec_order(fine.shape, 3)).T)
    words = gaussian_encode(fine[order], t.sym_min, t.sym_max, t.means[model[order]], t.stds[model[order]])
    assert np.array_equal(words, t.words)
    for tensor, bits in zip(tensors, segment_ideal_bits(tensors, symbols), strict=True):
        assert abs(32 * len(tensor.words) - bits) < 64


def test_neighbours_pay_for_their_side_information_where_activity_clusters():
    """Symbols active in blobs: mode 5's neighbours tell the blobs from the quiet, mode 2's coarse level
    (none here) and previous row (independent) cannot."""
    rng = np.random.default_rng(9)
    blobs = np.kron(rng.random((8, 1, 6, 8)) < 0.3, np.ones((1, 1, 4, 4), bool))
    s = (rng.integers(-3, 4, blobs.shape) * blobs).astype(np.int32)
    phased = _coded("g.0", s, LatentContext(NO_REF, None, 4)).tensor
    plain = _coded("g.0", s, LatentContext(NO_REF, None, 4), CodingPlan(0, 0, MODEL_CONTEXT, 1)).tensor
    assert len(phased.to_bytes()) < 0.8 * len(plain.to_bytes())


def test_phased_fields_are_checked_and_an_unknown_mode_needs_a_newer_decoder():
    rng = np.random.default_rng(10)
    good = _coded("g.0", _sparse_symbols(rng, (4, 1, 5, 5)), LatentContext(NO_REF, None, 2)).tensor
    for field, value, message in (("row_period", 3, "row period"), ("model_axis", 0, "context model")):
        t = CodedTensor.parse(good.to_bytes())
        setattr(t, field, value)
        with pytest.raises(InvalidStream, match=message):
            CodedTensor.parse(t.to_bytes())
    t = CodedTensor.parse(good.to_bytes())
    t.means, t.stds = t.means[:9], t.stds[:9]  # mode 2's count
    with pytest.raises(InvalidStream, match="model parameter pairs"):
        CodedTensor.parse(t.to_bytes())
    t = CodedTensor.parse(good.to_bytes())
    t.model_mode = 7
    with pytest.raises(UnknownCriticalChunk, match="mode 7 is not known to this decoder: the stream needs a newer"):
        CodedTensor.parse(t.to_bytes())


def test_damaged_phased_streams_fail_cleanly():
    """Mutations of the conformance stream whose latents use model mode 5 (CRCs fixed, so the sub-lattice
    decoding is reached) end in a decoded stream or a one-line StreamError, nothing else."""
    from pathlib import Path

    from test_fuzz import first_frame_outcomes

    data = (Path(__file__).parent / "conformance" / "c14_pyramid_mc_phased" / "stream.mvinr").read_bytes()
    outcomes = first_frame_outcomes(data, 6, 200)
    assert len(outcomes) >= 3, outcomes
