"""YUV <-> RGB conversion: published code values, bounded round trips, chroma resampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvcodec.color import (
    MATRICES,
    ColorSpec,
    downsample_chroma,
    quantize,
    rgb_to_yuv420,
    rgb_to_yuv444,
    upsample_chroma,
    yuv420_to_rgb,
    yuv444_to_rgb,
)

SPECS = [ColorSpec(m, full, s) for m in MATRICES for full in (False, True) for s in ("left", "center", "top-left")]


def _rgb(*values):
    return np.array(values, dtype=np.float64).reshape(3, 1, 1)


@pytest.mark.parametrize(
    "matrix,rgb,expected",
    [  # 8-bit limited-range code values as tabulated for BT.709 and BT.601 colour bars
        ("bt709", (1, 0, 0), (63, 102, 240)),
        ("bt709", (0, 1, 0), (173, 42, 26)),
        ("bt709", (0, 0, 1), (32, 240, 118)),
        ("bt601", (1, 0, 0), (81, 90, 240)),
        ("bt601", (0, 1, 0), (145, 54, 34)),
        ("bt601", (0, 0, 1), (41, 240, 110)),
        ("bt709", (1, 1, 1), (235, 128, 128)),
        ("bt709", (0, 0, 0), (16, 128, 128)),
    ],
)
def test_primaries_match_published_code_values(matrix, rgb, expected):
    yuv = quantize(rgb_to_yuv444(_rgb(*rgb), 8, ColorSpec(matrix)), 8)
    assert tuple(yuv.ravel().astype(int)) == expected


@pytest.mark.parametrize("bits", [8, 10, 16])
def test_white_and_black_scale_with_bit_depth(bits):
    k = 1 << (bits - 8)
    lim = rgb_to_yuv444(np.stack([_rgb(1, 1, 1), _rgb(0, 0, 0)]), bits)
    np.testing.assert_allclose(lim[:, :, 0, 0], [[235 * k, 128 * k, 128 * k], [16 * k, 128 * k, 128 * k]])
    full = rgb_to_yuv444(_rgb(1, 1, 1), bits, ColorSpec(full_range=True))
    np.testing.assert_allclose(full.ravel(), [(1 << bits) - 1, 1 << (bits - 1), 1 << (bits - 1)])


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_float_444_round_trip_is_exact(spec):
    rgb = np.random.default_rng(0).random((2, 3, 8, 6))
    back = yuv444_to_rgb(rgb_to_yuv444(rgb, 10, spec), 10, spec)
    np.testing.assert_allclose(back, rgb, atol=1e-12)


def _smooth_rgb(h=32, w=48):
    """RGB planes that are affine in x and y: 4:2:0 resampling is exact on them away from the edges."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    return np.stack([0.1 + 0.6 * x + 0.2 * y, 0.8 - 0.5 * x + 0.1 * y, 0.2 + 0.3 * y + 0.3 * x])


@pytest.mark.parametrize("bits", [8, 10, 16])
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_quantised_420_round_trip_error_is_bounded(spec, bits):
    rgb = _smooth_rgb()
    y, u, v = (quantize(p, bits) for p in rgb_to_yuv420(rgb, bits, spec))
    back = yuv420_to_rgb(y, u, v, bits, spec)
    # Bound: half a code value in Y, Cb and Cr, carried through the inverse matrix.
    kr, kb = MATRICES[spec.matrix]
    k = 2.0 ** (bits - 8)
    ys, cs = ((1 << bits) - 1, (1 << bits) - 1) if spec.full_range else (219 * k, 224 * k)
    inv = np.array(
        [
            [1, 0, 2 * (1 - kr)],
            [1, 2 * (1 - kb) * kb / (1 - kr - kb), 2 * (1 - kr) * kr / (1 - kr - kb)],
            [1, 2 * (1 - kb), 0],
        ]
    )
    bound = (np.abs(inv) @ np.array([0.5 / ys, 0.5 / cs, 0.5 / cs])).max() + 1e-9
    interior = np.abs(back - rgb)[:, 2:-2, 2:-2]
    assert interior.max() <= bound
    assert np.abs(back - rgb).max() < 0.03  # edges (chroma repeats its last sample): ~2 pixels of ramp


@pytest.mark.parametrize("siting", ["left", "center", "top-left"])
def test_chroma_resampling_keeps_constants_and_ramps(siting):
    const = np.full((2, 6, 8), 77.0)
    np.testing.assert_allclose(downsample_chroma(const, siting), np.full((2, 3, 4), 77.0))
    np.testing.assert_allclose(upsample_chroma(const, siting), np.full((2, 12, 16), 77.0))
    ramp = np.add.outer(np.arange(16.0) * 3, np.arange(20.0) * 2)
    back = upsample_chroma(downsample_chroma(ramp, siting), siting)
    np.testing.assert_allclose(back[2:-2, 2:-2], ramp[2:-2, 2:-2], atol=1e-9)


def test_left_siting_puts_chroma_on_even_columns():
    row = np.tile(np.array([0.0, 4.0] * 4), (2, 1))  # luma-resolution chroma alternating 0, 4
    down = downsample_chroma(row, "left")
    np.testing.assert_allclose(down[0, 1:], 2.0)  # [1 2 1]/4 around even columns: (4 + 0 + 4)/4
    np.testing.assert_allclose(down[0, 0], 1.0)  # left edge repeats column 0: (0 + 0 + 4)/4
    np.testing.assert_allclose(downsample_chroma(row, "center")[0], 2.0)


def test_top_left_siting_puts_chroma_on_even_rows_and_columns():
    impulse = np.zeros((6, 8))
    impulse[2, 2] = 16.0
    down = downsample_chroma(impulse, "top-left")
    np.testing.assert_allclose(down[1, 1], 4.0)  # the centre tap of [1 2 1] x [1 2 1] / 16
    np.testing.assert_allclose(down.sum(), 16.0 / 4)  # its neighbours' taps fall between chroma samples
    coarse = np.arange(12.0).reshape(3, 4)
    up = upsample_chroma(coarse, "top-left")
    np.testing.assert_allclose(up[::2, ::2], coarse)  # co-sited: the chroma samples themselves
    np.testing.assert_allclose(up[1, 0], (coarse[0, 0] + coarse[1, 0]) / 2)


def test_torch_and_numpy_agree_and_torch_keeps_dtype():
    rgb = _smooth_rgb(16, 16)
    spec = ColorSpec("bt601", True, "center")
    out_np = rgb_to_yuv420(rgb, 10, spec)
    out_t = rgb_to_yuv420(torch.from_numpy(rgb).float(), 10, spec)
    assert all(t.dtype == torch.float32 for t in out_t)
    for a, b in zip(out_np, out_t, strict=True):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-3)
    y, u, v = (torch.from_numpy(quantize(p, 10)).to(torch.int16) for p in out_np)
    assert yuv420_to_rgb(y, u, v, 10, spec).shape == (3, 16, 16)


def test_unknown_matrix_or_siting_is_refused():
    with pytest.raises(ValueError, match="matrix"):
        ColorSpec("bt999")
    with pytest.raises(ValueError, match="siting"):
        ColorSpec(chroma_siting="top")
