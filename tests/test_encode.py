"""mvenc end to end: segments, the stream it writes, and the summary measured from the decoded bytes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import SAMPLE_FILES, run_tool

from mvcodec.encoder.assemble import stream_view_names
from mvcodec.encoder.plan import (
    check_quality,
    config_for_quality,
    lambda_for_quality,
    params_for_quality,
    plan_segments,
)
from mvcodec.errors import InputError
from mvcodec.io import open_source
from mvcodec.metrics import frame_quality, mean_quality
from mvcodec.model import Shape, by_name


def test_segment_plans():
    assert plan_segments(8, None) == [(0, 8)]
    assert plan_segments(150, None) == [(0, 75), (75, 75)]
    assert plan_segments(5, 2) == [(0, 2), (2, 2), (4, 1)]


def test_quality_levels_fit_many_frames():
    cfg = config_for_quality(by_name("mv-mginr"), 4, Shape(4, 64, 96, 160))  # 50k is too small here: raised
    assert cfg.frames == 64 and cfg.params > 50_000


def test_quality_levels_run_from_0_to_8():
    # -q 0 reaches below -q 1's rate (BENCHMARKS.md, issue 14, experiment 42): lambda halves again, and so
    # does mv-mginr's parameter budget (its model is the smallest of at least that many parameters)
    for name in ("mv-pyramid-mc", "mv-mginr"):
        arch = by_name(name)
        assert lambda_for_quality(0, arch) == lambda_for_quality(1, arch) / 2
    shape = Shape(4, 100, 720, 1280)
    mginr = by_name("mv-mginr")
    assert params_for_quality(mginr, 0, shape) * 2 == params_for_quality(mginr, 1, shape)
    sizes = [mginr.params(config_for_quality(mginr, q, shape)) for q in (0, 1, 2)]
    assert sizes[0] <= sizes[1] < sizes[2]
    for q in (-1, 9):
        with pytest.raises(InputError, match="0 to 8"):
            check_quality(q)


def test_view_names_become_file_names():
    assert stream_view_names(["a/b", "..", "x", "x"]) == ("a_b", "v1", "x", "v3")


@pytest.mark.slow
def test_mvenc_writes_segments_and_reports_the_decoded_quality(tmp_path):
    out = tmp_path / "s.mvinr"
    args = [*SAMPLE_FILES[:2], out, "-f", "3", "--params", "80k", "--epochs", "2", "--no-progress"]
    r = run_tool("mvenc", *args, "--segment-frames", "2", "--stats", tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    assert "bpp" in r.stdout and "kbps" in r.stdout and "segment 2/2" in r.stdout
    assert "loss psnr-yuv" in r.stdout  # the default architecture's
    # the float network's figure is said to be the fit phase's, before QAT (the default has no pruning phase)
    assert "the float network after its 2-epoch fit phase, before QAT: PSNR-YUV" in r.stdout
    stats = json.loads((tmp_path / "s.json").read_text())
    for key in ("bytes", "bpp", "kbps", "psnr_y", "psnr_yuv", "ssim", "per_view", "encode_seconds"):
        assert key in stats
    assert stats["bytes"] == out.stat().st_size and len(stats["segments"]) == 2
    assert stats["bpp"] == 8 * stats["bytes"] / (2 * 3 * 160 * 96)
    assert not list(tmp_path.glob("*.ckpt")) and not list(tmp_path.glob("*.part"))

    info = json.loads(run_tool("mvinfo", out, "--json").stdout)
    assert len(info["segments"]) == 2 and info["frames"] == 3 and info["hash_ok"]
    views = tmp_path / "views"
    assert run_tool("mvdec", out, "-o", views, "--no-progress").returncode == 0
    src = open_source(SAMPLE_FILES[:2], frames=3)
    dec = open_source(sorted(views.iterdir()), frames=3)
    per_view = [mean_quality([frame_quality(src.read(v, t), dec.read(v, t), 10) for t in range(3)]) for v in range(2)]
    assert np.isclose(mean_quality(per_view)["psnr_yuv"], stats["psnr_yuv"], rtol=0, atol=1e-9)
    assert [round(q["psnr_y"], 9) for q in per_view] == [round(q["psnr_y"], 9) for q in stats["per_view"]]


def test_the_loss_is_the_architectures_unless_given():
    from mvcodec.encoder import recipe

    assert recipe("fast").train.loss == "psnr-yuv"
    assert recipe("fast", arch="mv-pyramid").train.loss == "mse-yuv"
    assert recipe("fast", arch="mv-mginr").train.loss == "l1-ssim"
    assert recipe("fast", loss="mse-yuv").train.loss == "mse-yuv"


def test_devices_are_named_as_torch_names_them():
    import pytest
    import torch

    from mvcodec.device import pick_device
    from mvcodec.errors import InputError

    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="--device: 'gpu0' is not a device; use auto, cpu or cuda"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="--device cuda:1: no CUDA device is available here"):
            pick_device("cuda:1")
