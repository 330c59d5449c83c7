"""Entropy model mode 6 (bitstream_spec.md section 7.6): mode 5's sub-lattices and order, 12 contexts, and a
Laplace distribution per context located at the median of each symbol's decoded neighbours."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_context import _spec_contexts
from test_phased import TABLE, _spec_order, _sublattice
from test_phased import _coded as _phased_coded

from mvcodec.bitstream.tensor import MODEL_LAPLACE, MODEL_PREDICTED, NO_REF, CodedTensor
from mvcodec.compress.coding import CodingPlan, LatentContext
from mvcodec.compress.context import (
    REACH,
    context_laplace_stats,
    padded_values,
    predictions,
    sublattice_prediction,
)
from mvcodec.compress.decoding import (
    decode_tensors,
    segment_ideal_bits,
    segment_symbols,
    tensor_contexts,
    tensor_predictions,
)
from mvcodec.compress.range_coding import gaussian_encode
from mvcodec.errors import InvalidStream

PREDICTED = CodingPlan(0, 0, MODEL_PREDICTED, 1)


def _spec_neighbours(s: np.ndarray, n: int, c: int, i: int, j: int) -> list[int]:
    """The values of the four neighbours in D of section 7.5's table (0 outside the grid)."""
    h, w = s.shape[-2:]
    around = TABLE[_sublattice(i, j)][2]
    return [int(s[n, c, i + di, j + dj]) if 0 <= i + di < h and 0 <= j + dj < w else 0 for di, dj in around]


def _spec_predictions_and_contexts(s: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray]:
    """Section 7.6 read literally, one element at a time: p and k' = b + 3 s."""
    b = _spec_contexts(s, None, period) // 3  # section 7.2's context is 3 b without a coarser tensor
    pred, ctx = np.zeros(s.shape, np.int64), np.zeros(s.shape, np.int64)
    n_, c_, h, w = s.shape
    for n in range(n_):
        for c in range(c_):
            for i in range(h):
                for j in range(w):
                    if _sublattice(i, j) == 0:
                        ctx[n, c, i, j] = b[n, c, i, j]
                        continue
                    v = _spec_neighbours(s, n, c, i, j)
                    middle = sum(v) - max(v) - min(v)
                    pred[n, c, i, j] = abs(middle) // 2 * (1 if middle >= 0 else -1)  # halved toward zero
                    ctx[n, c, i, j] = b[n, c, i, j] + 3 * (1 + max(min(abs(x), 2) for x in v))
    return pred, ctx


def _motion(rng, shape, blobs=0.3, scale=12) -> np.ndarray:
    """Motion-like symbols: mostly 0, smooth blocks of vectors where things move, a little noise."""
    n, c, h, w = shape
    moving = np.kron(rng.random((n, 1, -(-h // 4), -(-w // 4))) < blobs, np.ones((1, c, 4, 4), bool))
    vectors = np.kron(rng.integers(-scale, scale + 1, (n, c, -(-h // 4), -(-w // 4))), np.ones((1, 1, 4, 4)))
    noise = rng.integers(-1, 2, (n, c, *moving.shape[-2:]))
    return ((vectors + noise) * moving)[..., :h, :w].astype(np.int32)


def _coded(name, symbols, context, plan=PREDICTED):
    return _phased_coded(name, symbols, context, plan)


def test_the_prediction_is_the_median_of_four_truncated_toward_zero():
    """Section 7.6's examples: 3 for 1, 2, 5, 9 and -3 for -9, -5, -2, -1 (an element of sub-lattice 4, whose
    neighbours are its four diagonal ones)."""
    for values, want in (((1, 2, 5, 9), 3), ((-9, -5, -2, -1), -3), ((0, 0, 7, -7), 0), ((4, 4, 4, 4), 4)):
        s = torch.zeros(1, 1, 3, 3, dtype=torch.int32)
        for (di, dj), v in zip(TABLE[4][2], values, strict=True):
            s[0, 0, 1 + di, 1 + dj] = v
        assert int(sublattice_prediction(padded_values(s), 4)[0, 0, 0, 0]) == want
        assert int(predictions(s.float())[0, 0, 1, 1]) == want  # the same in training's float values
    assert REACH == 2


@pytest.mark.parametrize("hw", [(9, 13), (1, 1), (2, 3), (6, 4), (12, 20)])
def test_predictions_contexts_and_order_follow_the_spec_word_for_word(hw):
    rng = np.random.default_rng(11)
    s = _motion(rng, (6, 2, *hw))
    s[0, 0, 0, 0] = -7  # and one lone vector in the first sub-lattice
    for period in (0, 3):
        t = CodedTensor("flows", s.shape, model_mode=MODEL_PREDICTED, model_axis=1, row_period=period)
        pred, ctx = _spec_predictions_and_contexts(s, period)
        assert np.array_equal(tensor_predictions(t, s), pred)
        assert np.array_equal(tensor_contexts(t, s, None), ctx)
        assert int(ctx.max()) <= 11
    flat = [np.ravel_multi_index(e, s.shape) for e in _spec_order(s.shape, 3)]
    coded = _coded("flows", s, LatentContext(NO_REF, None, 3)).tensor
    pred, ctx = _spec_predictions_and_contexts(s, 3)
    model = (ctx * 2 + np.arange(2).reshape(1, 2, 1, 1)).ravel()[flat]
    loc = (coded.means[model] + pred.ravel()[flat].astype(np.float32)).astype(np.float32)
    words = gaussian_encode(s.ravel()[flat], coded.sym_min, coded.sym_max, loc, coded.stds[model], laplace=True)
    assert np.array_equal(words, coded.words)


def test_predicted_tensors_round_trip_and_cost_what_they_say():
    """mvenc's mode 6 tensor decodes to its symbols; its locations and scales are the bfloat16 mean and mean
    absolute deviation of each context's symbols less their predictions; the size is the ideal bits."""
    rng = np.random.default_rng(12)
    s = _motion(rng, (8, 2, 12, 20))
    e = _coded("flows", s, LatentContext(NO_REF, None, 4))
    (t,) = tensors = [CodedTensor.parse(e.tensor.to_bytes())]
    assert t.model_mode == MODEL_PREDICTED and len(t.means) == 12 * 2 and t.row_period == 4
    assert not (t.means.view(np.uint32) & 0xFFFF).any() and not (t.stds.view(np.uint32) & 0xFFFF).any()
    (symbols,) = segment_symbols(tensors)
    assert np.array_equal(symbols, s) and np.array_equal(decode_tensors(tensors)[0], e.values)
    pred, ctx = _spec_predictions_and_contexts(s, 4)
    loc, scale = context_laplace_stats(torch.from_numpy((s - pred).astype(np.float64)), torch.from_numpy(ctx), 2, 12)
    bf16 = [x.to(torch.bfloat16).float().numpy() for x in (loc, scale)]
    assert np.array_equal(t.means, bf16[0]) and np.array_equal(t.stds, bf16[1]) and (t.stds >= 0.1).all()
    (bits,) = segment_ideal_bits(tensors, [symbols])
    assert abs(32 * len(t.words) - bits) < 64


def test_smooth_motion_costs_less_than_under_model_mode_4():
    """Vectors in smooth blocks: their neighbours predict them, mode 4's previous-row context cannot."""
    rng = np.random.default_rng(13)
    s = _motion(rng, (8, 2, 12, 20))
    predicted = _coded("flows", s, LatentContext(NO_REF, None, 4)).tensor
    laplace = _coded("flows", s, LatentContext(NO_REF, None, 4), CodingPlan(0, 0, MODEL_LAPLACE, 1)).tensor
    assert len(predicted.to_bytes()) < 0.8 * len(laplace.to_bytes())


def test_predicted_fields_are_checked():
    """A coarser tensor (which mode 6's contexts have no room for) or mode 5's count of pairs: invalid."""
    rng = np.random.default_rng(14)
    good = _coded("flows", _motion(rng, (4, 2, 6, 10)), LatentContext(NO_REF, None, 2)).tensor
    t = CodedTensor.parse(good.to_bytes())
    t.coarse_ref = 0
    with pytest.raises(InvalidStream, match="model mode 6 with a coarser tensor"):
        CodedTensor.parse(t.to_bytes())
    t = CodedTensor.parse(good.to_bytes())
    t.means, t.stds = np.zeros(36 * 2, np.float32), np.ones(36 * 2, np.float32)
    with pytest.raises(InvalidStream, match="model parameter pairs"):
        CodedTensor.parse(t.to_bytes())
    with pytest.raises(ValueError, match="without a coarser one"):
        _coded("flows", _motion(rng, (4, 2, 6, 10)), LatentContext(0, np.zeros((4, 2, 3, 5), np.int32), 2))


def test_damaged_predicted_streams_fail_cleanly():
    """Mutations of the conformance stream whose motion uses model mode 6 (CRCs fixed, so its sub-lattice
    decoding is reached) end in a decoded stream or a one-line StreamError, nothing else."""
    from pathlib import Path

    from test_fuzz import first_frame_outcomes

    data = (Path(__file__).parent / "conformance" / "c15_pyramid_mc_motion" / "stream.mvinr").read_bytes()
    outcomes = first_frame_outcomes(data, 7, 200)
    assert len(outcomes) >= 3, outcomes


def test_extreme_predicted_parameters_decode_or_fail_cleanly():
    """A hostile mode 6 tensor: locations at +-2^21, the narrowest scale, the widest alphabet, predictions
    from neighbours near the alphabet's ends: it decodes to symbols in the alphabet, or is an invalid stream."""
    from mvcodec.errors import StreamError

    rng = np.random.default_rng(15)
    s = _motion(rng, (4, 2, 6, 10))
    t = CodedTensor.parse(_coded("flows", s, LatentContext(NO_REF, None, 2)).tensor.to_bytes())
    t.sym_min, t.sym_max = -(2**20), 2**20
    t.means = np.where(np.arange(len(t.means)) % 2, 2.0**21, -(2.0**21)).astype(np.float32)
    t.stds = np.full(len(t.stds), 2.0**-16, np.float32)
    for words in (t.words, rng.integers(0, 2**32, 64, dtype=np.uint32), np.zeros(1, np.uint32)):
        t.words = words
        hostile = CodedTensor.parse(t.to_bytes())
        try:
            (symbols,) = segment_symbols([hostile])
        except StreamError:
            continue
        assert symbols.shape == s.shape and np.abs(symbols).max() <= 2**20
