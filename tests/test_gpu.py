"""CUDA paths: training with bf16 autocast and decoding on both numeric paths. Skipped (visibly) without CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import train_config

from mvcodec.decoder import Decoder

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)"),
]
STREAM = Path(__file__).parent / "conformance" / "c02_10bit" / "stream.mvinr"


def test_cuda_reference_path_is_within_one_lsb_of_the_cpu_and_fast_path_close():
    with Decoder(STREAM, "cpu", "reference") as cpu, Decoder(STREAM, "cuda", "reference") as ref:
        with Decoder(STREAM, "cuda", "fast") as fast:
            assert fast.fast and not ref.fast
            for a, b, c in zip(cpu.frames(), ref.frames(), fast.frames(), strict=True):
                for x, y, z in zip(a.planes, b.planes, c.planes, strict=True):
                    assert np.abs(x.astype(int) - y.astype(int)).max() <= 1
                    assert np.abs(x.astype(int) - z.astype(int)).max() <= 8  # half precision, 10-bit samples


def test_cuda_training_lowers_the_loss():
    from test_train import moving_square_source

    from mvcodec.compress.qat import CompressibleModel
    from mvcodec.model import MVMGINR, solve_config
    from mvcodec.train.fit import FrameStore, TrainingData, fit

    src = moving_square_source()
    torch.manual_seed(0)
    cfg = solve_config(2, 3, 36, 64, 20_000)
    store = FrameStore(src, torch.device("cuda"))
    losses = []
    fit(
        CompressibleModel(MVMGINR(cfg), cfg),
        TrainingData(store),
        train_config("fast", epochs=20),
        progress=False,
        on_epoch=lambda e, loss: losses.append(loss),
    )
    assert losses[-1] < 0.7 * losses[0]


def test_cuda_bf16_path_trains_as_well_as_plain_fp32():
    from test_train import moving_square_source

    from mvcodec.compress.qat import CompressibleModel
    from mvcodec.model import MVMGINR, solve_config
    from mvcodec.train.fit import FrameStore, TrainingData, evaluate, fit

    src = moving_square_source()
    store = FrameStore(src, torch.device("cuda"))
    cfg = solve_config(2, 3, 36, 64, 20_000)
    psnr = {}
    for precision in ("bf16", "fp32"):
        torch.manual_seed(0)
        model = CompressibleModel(MVMGINR(cfg), cfg)
        fitted = fit(model, TrainingData(store), train_config("fast", epochs=30, precision=precision), progress=False)
        psnr[precision] = evaluate(fitted.model, store)["psnr_yuv"]
    assert abs(psnr["bf16"] - psnr["fp32"]) < 1.0, psnr
