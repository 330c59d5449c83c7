"""The latents' entropy-model network (model_mode 3, mvcodec/compress/arm.py, bitstream_spec.md section 7.3)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mvcodec.bitstream.tensor import CodedTensor
from mvcodec.compress import arm
from mvcodec.compress.decoding import decode_segment, segment_ideal_bits
from mvcodec.compress.qat import CompressibleModel, export_tensors
from mvcodec.compress.range_coding import GaussianReader, SymbolReader, gaussian_encode
from mvcodec.errors import InvalidStream
from mvcodec.model import by_name
from mvcodec.model.pyramid import PyramidConfig


def _layers(hidden: int = 8, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(-400, 400, size=s) / 256).astype(np.float32) for s in arm.layer_shapes(hidden)]


@pytest.mark.parametrize("period", [0, 3])
def test_symbols_round_trip_in_the_checkerboard_order(period):
    rng = np.random.default_rng(1)
    layers = arm.layers_of(_layers())
    symbols = rng.integers(-3, 4, size=(6, 2, 9, 13)).astype(np.int32)
    coarse = rng.integers(-2, 3, size=(6, 2, 5, 7)).astype(np.int32)
    coded, means, stds = arm.coded_gaussians(symbols, coarse, period, layers)
    assert sorted(coded.tolist()) == sorted(symbols.ravel().tolist())
    words = gaussian_encode(coded, -3, 3, means, stds)
    decoded = arm.decode_latent(GaussianReader(SymbolReader(words), -3, 3).read, symbols.shape, coarse, period, layers)
    assert np.array_equal(decoded, symbols)


def test_the_decoder_sees_only_what_is_decoded_before_each_symbol():
    """Changing a symbol changes no Gaussian of a symbol coded before it (checked on every position)."""
    rng = np.random.default_rng(2)
    layers = arm.layers_of(_layers())
    symbols = rng.integers(-3, 4, size=(4, 1, 5, 6)).astype(np.int32)
    base = arm.coded_gaussians(symbols, None, 2, layers)
    for k in range(symbols.size):
        changed = symbols.copy().ravel()
        changed[k] += 5
        coded, means, stds = arm.coded_gaussians(changed.reshape(symbols.shape), None, 2, layers)
        at = int(np.flatnonzero(coded != base[0])[0])  # the changed symbol's place in the coding order
        assert np.array_equal(means[: at + 1], base[1][: at + 1]) and np.array_equal(stds[: at + 1], base[2][: at + 1])


def test_the_network_is_exact_in_any_summation_order():
    layers = arm.layers_of(_layers(hidden=32))
    x = torch.from_numpy(np.random.default_rng(3).integers(-64, 65, size=(500, arm.INPUTS)).astype(np.float64))
    mean, std = arm.gaussians(x, layers, exact=True)
    # the same network with its inputs and hidden units in reverse order: every sum formed the other way round
    w0, b0, w1, b1, w2, b2 = layers
    reversed_net = [w0.flip(0, 1), b0.flip(0), w1.flip(0, 1), b1.flip(0), w2.flip(1), b2]
    m2, s2 = arm.gaussians(x.flip(1), reversed_net, exact=True)
    assert torch.equal(mean, m2) and torch.equal(std, s2)
    assert bool((std >= 0.1).all()) and bool((mean.abs() <= 1024).all())


def test_weights_off_the_grid_are_refused():
    good = _layers()
    assert arm.check_weights(good) is None
    bad = [w.copy() for w in good]
    bad[2][0, 0] += 2.0**-10
    assert "multiple of 2^-8" in arm.check_weights(bad)
    bad = [w.copy() for w in good]
    bad[5][0] = 200.0
    assert arm.check_weights(bad) is not None


def _model(hidden: int = 6):
    cfg = PyramidConfig(2, 3, 12, 20, levels=3, hidden=8, arm_hidden=hidden)
    torch.manual_seed(0)
    net = by_name("mv-pyramid").build(cfg)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.normal_(0, 2.0 if "grids" in name else 0.3)
    return CompressibleModel(net, cfg, quantise=True), cfg


def test_mv_pyramid_with_a_network_codes_its_grids_in_mode_3_and_decodes_them_exactly():
    model, cfg = _model()
    tensors = export_tensors(model)
    names = [e.tensor.name for e in tensors]
    assert names[:6] == ["arm.0.weight", "arm.0.bias", "arm.1.weight", "arm.1.bias", "arm.2.weight", "arm.2.bias"]
    coded = [CodedTensor.parse(e.tensor.to_bytes()) for e in tensors]
    assert {t.model_mode for t in coded if "grids" in t.name} == {3}
    assert all(t.arm_ref == 0 for t in coded if "grids" in t.name)
    seg = decode_segment(coded)
    for e, v in zip(tensors, seg.values, strict=True):
        assert np.array_equal(e.values.reshape(v.shape), v)
    # the rate term prices the rounded symbols near their ideal code length
    bits = sum(b for b, t in zip(segment_ideal_bits(coded, seg.symbols), coded, strict=True) if "grids" in t.name)
    model.eval()
    with torch.no_grad():
        estimate = sum(
            float(model._arm_bits(spec, dict(model.base.named_parameters()), None, 0))
            for spec in model.layout
            if "grids" in spec.name
        )
    assert abs(estimate - bits) < 0.15 * bits


def test_rate_control_scales_every_step_but_the_networks():
    model, _ = _model()
    plain = export_tensors(model)
    scaled = export_tensors(model, 2**-0.5)
    for a, b in zip(plain[:6], scaled[:6], strict=True):
        assert np.array_equal(a.values, b.values) and float(b.tensor.steps[0]) == 2.0**-8
    decode_segment([CodedTensor.parse(e.tensor.to_bytes()) for e in scaled])  # still on the 2^-8 grid


def test_a_network_whose_decoded_weights_are_off_the_grid_is_an_invalid_stream():
    model, _ = _model()
    coded = [CodedTensor.parse(e.tensor.to_bytes()) for e in export_tensors(model)]
    coded[1].steps = np.array([2.0**-10], np.float32)  # arm.0.bias now decodes to multiples of 2^-10
    with pytest.raises(InvalidStream, match="multiple of 2"):
        decode_segment(coded)


def test_the_rate_term_reaches_the_network_and_the_grids():
    model, _ = _model()
    model.train()
    params = dict(model.base.named_parameters())
    spec = next(s for s in model.layout if s.name == "view_grids.0")
    model._arm_bits(spec, params, None, 0).backward()
    assert params["arm.0.weight"].grad.abs().sum() > 0 and params["view_grids.0"].grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["mv-pyramid", "mv-pyramid-mc"])
@pytest.mark.parametrize("hidden", [0, 12])
def test_the_network_width_is_an_optional_last_config_byte(name, hidden):
    from mvcodec.bitstream.syntax import ByteReader, ByteWriter
    from mvcodec.model import Shape

    arch = by_name(name)
    cfg = replace(arch.size_for(Shape(2, 3, 96, 160), 0), arm_hidden=hidden)
    w = ByteWriter()
    arch.config_bytes(cfg, w)
    payload = w.bytes()
    r = ByteReader(payload, "ARCX")
    assert arch.parse_config(r, Shape(2, 3, 96, 160)) == cfg
    r.end()
    assert len(payload) == (7 if name == "mv-pyramid" else 8) - (0 if hidden else 1)


def _stream(path, alter: dict | None = None):
    """A one-segment MV-Pyramid stream whose grids use model_mode 3 (2 views x 3 frames x 20x12); `alter`
    sets fields of frame_grids.0's chunk."""
    from mvcodec.bitstream import SegmentData, SegmentHeader, SequenceHeader, parameter_hash, write_stream
    from mvcodec.color import ColorSpec

    model, cfg = _model()
    model.eval()
    exported = export_tensors(model)
    tensors = [e.tensor for e in exported]
    target = next(t for t in tensors if t.name == "frame_grids.0")
    for k, v in (alter or {}).items():
        setattr(target, k, v)
    seq = SequenceHeader(("a", "b"), 3, cfg.width, cfg.height, 8, ColorSpec(), 30, 1)
    seg = SegmentData(SegmentHeader(0, 0, 3), cfg, tensors, parameter_hash([e.values for e in exported]))
    with open(path, "wb") as f:
        write_stream(f, seq, [seg], {})
    return path


def test_a_mode_3_stream_decodes_with_mvdec(tmp_path):
    from mvcodec.cli import mvdec

    path = _stream(tmp_path / "a.mvinr")
    mvdec.main(args=[str(path), "-o", str(tmp_path / "out"), "--no-progress"], standalone_mode=False)
    assert len(list((tmp_path / "out").glob("*.yuv"))) == 2


@pytest.mark.parametrize(
    "alter, message",
    [({"row_period": 1}, "row period 1"), ({"arm_ref": 1}, "entropy model refers to tensor 1")],
)
def test_a_mode_3_tensor_must_keep_to_its_layout(tmp_path, alter, message):
    from mvcodec.bitstream.stream import read_index, read_segment_tensors

    path = _stream(tmp_path / "a.mvinr", alter)
    with open(path, "rb") as f, pytest.raises(InvalidStream, match=message):
        read_segment_tensors(f, read_index(f).segments[0])
