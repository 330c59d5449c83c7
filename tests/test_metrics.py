"""Quality metrics checked against independent implementations (scikit-image, pytorch-msssim)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import sample_views
from pytorch_msssim import ms_ssim as reference_ms_ssim
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mvcodec import metrics
from mvcodec.io import Planes


def _degraded(y: np.ndarray, peak: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = y.astype(np.int64) + rng.integers(-12, 13, y.shape) + (np.arange(y.shape[1]) % 7)
    return np.clip(noisy, 0, peak).astype(y.dtype)


@pytest.fixture(scope="module")
def sample_y():
    _, views = sample_views()
    return views[1][3].y  # a real 10-bit 160x96 luma plane


def test_psnr_matches_scikit_image(sample_y):
    test = _degraded(sample_y, 1023)
    assert metrics.psnr(sample_y, test, 1023) == pytest.approx(
        peak_signal_noise_ratio(sample_y, test, data_range=1023), abs=1e-9
    )
    assert metrics.psnr(sample_y, sample_y, 1023) == math.inf


@pytest.mark.parametrize("peak", [255, 1023, 65535])
def test_ssim_matches_scikit_image(sample_y, peak):
    ref = (sample_y.astype(np.float64) * peak / 1023).round().astype(np.uint8 if peak == 255 else np.uint16)
    test = _degraded(ref, peak)
    expected = structural_similarity(
        ref, test, data_range=peak, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert metrics.ssim(ref, test, peak) == pytest.approx(expected, abs=1e-9)
    assert metrics.ssim(ref, ref, peak) == pytest.approx(1.0)


def test_ms_ssim_matches_pytorch_msssim():
    _, views = sample_views()
    # pytorch-msssim needs sides above 160: tile real planes to 288x320
    ref = np.tile(views[0][0].y, (3, 2)).astype(np.float64)
    test = _degraded(ref.astype(np.uint16), 1023).astype(np.float64)
    expected = float(
        reference_ms_ssim(torch.from_numpy(ref)[None, None], torch.from_numpy(test)[None, None], data_range=1023)
    )
    # pytorch-msssim builds its window in float32: agreement to 1e-6, not to the last bit
    assert metrics.ms_ssim(ref, test, 1023) == pytest.approx(expected, abs=1e-6)


def test_ms_ssim_on_small_planes_uses_the_scales_that_fit(sample_y):
    test = _degraded(sample_y, 1023)
    value = metrics.ms_ssim(sample_y, test, 1023)  # 96 rows: 4 scales fit an 11-sample window
    assert 0 < value < 1
    tiny = sample_y[:16, :16]
    assert metrics.ms_ssim(tiny, _degraded(tiny, 1023), 1023) == pytest.approx(
        metrics.ssim(tiny, _degraded(tiny, 1023), 1023)
    )


def test_batched_ssim_equals_per_plane_ssim(sample_y):
    stack = np.stack([sample_y, _degraded(sample_y, 1023, 1)])
    other = np.stack([_degraded(sample_y, 1023, 2), sample_y])
    per = metrics.ssim(stack, other, 1023, reduce=False)
    assert per.shape == (2,)
    assert float(per[0]) == pytest.approx(metrics.ssim(stack[0], other[0], 1023))


def test_psnr_yuv_weights_six_one_one():
    assert metrics.psnr_yuv(40.0, 48.0, 32.0) == pytest.approx((6 * 40 + 48 + 32) / 8)


def test_frame_quality_and_means():
    rng = np.random.default_rng(3)
    ref = Planes(*(rng.integers(0, 1024, s).astype(np.uint16) for s in ((36, 64), (18, 32), (18, 32))))
    test = Planes(*(np.clip(p.astype(int) + 2, 0, 1023).astype(np.uint16) for p in ref))
    q = metrics.frame_quality(ref, test, 10)
    assert q["psnr_y"] == pytest.approx(10 * math.log10(1023**2 / metrics.mse(ref.y, test.y)))
    assert q["psnr_yuv"] == pytest.approx(metrics.psnr_yuv(q["psnr_y"], q["psnr_u"], q["psnr_v"]))
    assert metrics.mean_quality([q, {**q, "ssim": 0.0}])["ssim"] == pytest.approx(q["ssim"] / 2)


def test_bits_per_pixel_and_kbps():
    assert metrics.bits_per_pixel(1000, 4, 10, 160, 96) == pytest.approx(8000 / (4 * 10 * 160 * 96))
    assert metrics.kbps(1000, 10, 30.0) == pytest.approx(24.0)


def test_cpu_gaussian_filter_equals_the_convolution_and_its_gradient():
    """The CPU's shifted-sum filter (SSIM's hot spot in training) against the convolutions CUDA runs."""
    torch.manual_seed(0)
    x = torch.rand(3, 1, 23, 40, dtype=torch.float64, requires_grad=True)
    g = metrics._gaussian_window(11, 1.5, x)
    ours = metrics._blur(x, g)
    conv = torch.nn.functional.conv2d(torch.nn.functional.conv2d(x, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    assert ours.shape == conv.shape == (3, 1, 13, 30)
    assert torch.allclose(ours, conv, rtol=0, atol=1e-12)
    w = torch.rand_like(conv)
    (grad_ours,) = torch.autograd.grad((ours * w).sum(), x)
    (grad_conv,) = torch.autograd.grad((conv * w).sum(), x)
    assert torch.allclose(grad_ours, grad_conv, rtol=0, atol=1e-12)
