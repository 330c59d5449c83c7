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


def test_symbols_are_coded_in_the_spec_order_under_the_spec_contexts():
    """Section 7.2 followed literally: contexts element by element, the Gaussian ctx * C + c, rows in runs
    of row_period position by position; the same words as mvenc's."""
    from mvcodec.compress.range_coding import gaussian_encode

    rng = np.random.default_rng(5)
    coarse = _sparse_symbols(rng, (6, 2, 3, 4))
    fine = _sparse_symbols(rng, (6, 2, 5, 7))
    t = _coded("g.0", fine, LatentContext(0, coarse, 3)).tensor
    ctx = _spec_contexts(fine, coarse, 3)
    model = ctx * 2 + np.arange(2).reshape(1, 2, 1, 1)
    order = [n for r in range(3) for n in range(6) if n % 3 == r]
    words = gaussian_encode(
        fine[order].ravel(), t.sym_min, t.sym_max, t.means[model[order]].ravel(), t.stds[model[order]].ravel()
    )
    assert np.array_equal(words, t.words)


def _heavy_tailed(rng, shape):
    """Motion-like symbols: mostly 0, the rest spread over +-40."""
    return (np.round(rng.laplace(0, 6, shape)) * (rng.random(shape) < 0.2)).astype(np.int32)


def test_laplace_coded_tensors_round_trip_in_the_spec_order_and_cost_what_they_say():
    """Model mode 4 (section 7.4): mode 2's contexts and order, each context's symbols under the Laplace of
    their mean and mean absolute deviation; it decodes, its words are those of the spec read literally, its
    size is its ideal bits, and on heavy-tailed symbols it costs less than mode 2."""
    from mvcodec.bitstream.tensor import MODEL_LAPLACE
    from mvcodec.compress.range_coding import gaussian_encode

    rng = np.random.default_rng(6)
    s = _heavy_tailed(rng, (8, 2, 6, 10))
    spec = ParamSpec("flows", s.shape, Role.LATENT, "frame", laplace=True)
    e = code_symbols(
        spec,
        s,
        np.ones(1, np.float32),
        None,
        CodingPlan(0, 0, MODEL_LAPLACE, 1),
        context=LatentContext(NO_REF, None, 4),
    )
    (t,) = [CodedTensor.parse(e.tensor.to_bytes())]
    assert t.model_mode == MODEL_LAPLACE and t.row_period == 4 and len(t.means) == 9 * 2
    (symbols,) = segment_symbols([t])
    assert np.array_equal(symbols, s) and np.array_equal(decode_tensors([t])[0], e.values)
    ctx = _spec_contexts(s, None, 4)
    for k in range(9):
        for c in range(2):
            x = s[:, c][ctx[:, c] == k].astype(np.float64)
            loc, scale = (x.mean(), max(np.abs(x - x.mean()).mean(), 0.1)) if x.size else (0.0, 1.0)
            assert t.means[k * 2 + c] == np.float32(loc) and t.stds[k * 2 + c] == np.float32(scale)
    model = ctx * 2 + np.arange(2).reshape(1, 2, 1, 1)
    order = [n for r in range(4) for n in range(8) if n % 4 == r]
    args = (s[order].ravel(), t.sym_min, t.sym_max, t.means[model[order]].ravel(), t.stds[model[order]].ravel())
    assert np.array_equal(gaussian_encode(*args, laplace=True), t.words)
    (bits,) = segment_ideal_bits([t], [symbols])
    assert abs(32 * len(t.words) - bits) < 64
    gauss = _coded("flows", s, LatentContext(NO_REF, None, 4)).tensor
    assert len(t.words) < 0.85 * len(gauss.words)


def test_contexts_pay_for_their_side_information_where_activity_is_local():
    rng = np.random.default_rng(4)
    coarse = _sparse_symbols(rng, (8, 1, 12, 16), density=0.1)
    active = np.repeat(np.repeat(coarse != 0, 2, axis=2), 2, axis=3)
    fine = _sparse_symbols(rng, active.shape, density=0.6) * active  # moves only where the coarse level does
    spec = ParamSpec("g.0", fine.shape, Role.LATENT)
    in_context = _coded("g.0", fine, LatentContext(0, coarse, 0)).tensor
    plain = code_symbols(spec, fine, np.ones(1, np.float32), None, CodingPlan(0, 0, 1, 1)).tensor
    assert len(in_context.to_bytes()) < 0.7 * len(plain.to_bytes())


def test_context_fields_are_checked():
    rng = np.random.default_rng(3)
    good = _coded("g.0", _sparse_symbols(rng, (4, 1, 4, 4)), LatentContext(NO_REF, None, 2)).tensor
    cases = (
        ({"row_period": 3}, "row period"),
        ({"model_axis": 0}, "context model"),
        ({"mask_mode": 1, "p_keep": 0.5, "mask_words": np.zeros(1, np.uint32)}, "pruned"),
    )
    for fields, message in cases:
        t = CodedTensor.parse(good.to_bytes())
        for field, value in fields.items():
            setattr(t, field, value)
        with pytest.raises(InvalidStream, match=message):
            CodedTensor.parse(t.to_bytes())
    flat = CodedTensor.parse(good.to_bytes())
    flat.shape, flat.words = (16, 4), good.words  # a context model on a 2-d tensor
    with pytest.raises(InvalidStream, match="context model"):
        CodedTensor.parse(flat.to_bytes())


def _pyramid_stream(path, alter: str | None = None):
    """A one-segment MV-Pyramid stream (2 views x 3 frames x 64x36) of random sparse latents; `alter` points
    frame_grids.0's context at a tensor it may not refer to."""
    from mvcodec.bitstream import SegmentData, SegmentHeader, SequenceHeader, parameter_hash, write_stream
    from mvcodec.color import ColorSpec
    from mvcodec.compress.qat import CompressibleModel, export_tensors
    from mvcodec.model.pyramid import MVPyramid, PyramidConfig

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
    refs = {
        "later": "synth.0.weight",
        "itself": "frame_grids.0",
        "other rows": "view_grids.1",  # half the size, but one row a view
        "other level": "frame_grids.2",  # a quarter of the size
    }
    if alter:
        target.coarse_ref = names.index(refs[alter])
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


@pytest.mark.parametrize("alter", ["later", "itself", "other rows", "other level"])
def test_a_context_must_refer_to_an_earlier_tensor_of_half_the_size(tmp_path, alter):
    from mvcodec.bitstream.stream import read_index, read_segment_tensors

    path, _ = _pyramid_stream(tmp_path / "p.mvinr", alter)
    with open(path, "rb") as f, pytest.raises(InvalidStream, match="context refers to tensor"):
        read_segment_tensors(f, read_index(f).segments[0])


def test_damaged_mv_pyramid_streams_fail_cleanly(tmp_path):
    """Mutations of a stream whose latents use model mode 2 (CRCs fixed, so the context fields and the
    row-by-row decoding are reached) end in a decoded stream or a one-line StreamError, nothing else."""
    from test_fuzz import first_frame_outcomes

    path, _ = _pyramid_stream(tmp_path / "p.mvinr")
    outcomes = first_frame_outcomes(path.read_bytes(), 5, 300)
    assert len(outcomes) >= 3, outcomes


def test_the_latent_entropy_tool_bounds_the_models_by_the_symbols_own_frequencies(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    path, _ = _pyramid_stream(tmp_path / "p.mvinr")
    tool = Path(__file__).resolve().parents[1] / "tools" / "latent_entropy.py"
    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, str(tool), str(path), "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["name"] for row in rows[:-1]] == [
        f"{kind}.{level}" for kind in ("view_grids", "frame_grids") for level in (2, 1, 0)
    ]
    for row in rows[:-1]:  # no model that codes a context's symbols alike beats their empirical entropy
        assert 0 < row["histogram"] <= min(row["refit"], row["laplace"]) + 1e-9, row
    total = rows[-1]
    assert total["stored"] == pytest.approx(sum(row["stored"] for row in rows[:-1]))
    assert "| total |" in r.stdout


def test_laplace_bits_keep_their_precision_in_the_upper_tail():
    """Mode 4's rate in float32 (training's) prices a symbol far above the location as float64 does, and as
    its mirror image below: 1 - exp(-z) / 2 would round to 1 there."""
    from mvcodec.compress.gaussian import laplace_bits

    def bits(y, dtype):
        y = torch.tensor([y], dtype=dtype)
        return float(laplace_bits(y, torch.zeros(1, dtype=dtype), torch.full((1,), 1.5, dtype=dtype), -100, 100))

    exact = bits(24.0, torch.float64)
    assert 20 < exact < 29  # not the 30-bit floor
    assert bits(24.0, torch.float32) == pytest.approx(exact, abs=0.01)
    assert bits(-24.0, torch.float32) == pytest.approx(exact, abs=0.01)
    assert bits(100.0, torch.float32) == pytest.approx(bits(-100.0, torch.float64), abs=0.01)  # folded tails
