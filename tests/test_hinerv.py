"""MV-HiNeRV (architecture 3): its layout, its configuration's bytes, its forward pass against an independent
reading of bitstream_spec.md section 12.3, its sizing, and the tools end to end."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import SAMPLE_FILES
from test_architectures import _run
from test_train import moving_square_source, resumed_equals_uninterrupted

from mvcodec.bitstream import read_index, read_segment_tensors
from mvcodec.bitstream.syntax import ByteReader, ByteWriter
from mvcodec.bitstream.tensor import STEP_ROW_COLUMN
from mvcodec.cli import mvdec, mvenc, mvinfo
from mvcodec.compress.qat import CompressibleModel
from mvcodec.decoder import Decoder
from mvcodec.errors import StreamError
from mvcodec.model import Shape, by_name
from mvcodec.model.hinerv import HiNeRVConfig, time_slices
from mvcodec.train.fit import FrameStore, TrainingData

ARCH = by_name("mv-hinerv")
CONFIGS = [
    HiNeRVConfig(2, 3, 36, 64, strides=(2, 2), widths=(8, 8, 6), local_channels=(2, 1)),
    HiNeRVConfig(1, 1, 20, 24, strides=(3, 1), widths=(4, 6, 6), grid_levels=1, local_levels=0, local_channels=(0, 0)),
    HiNeRVConfig(3, 5, 18, 30, strides=(2, 2, 2), widths=(8, 8, 4, 4), local_channels=(1, 0, 2), kernel=3, expansion=2),
]


def test_mv_hinerv_is_registered_as_architecture_3():
    assert ARCH.id == 3 and ARCH.name == "mv-hinerv" and ARCH.train_defaults["loss"] == "psnr-yuv"


@pytest.mark.parametrize("cfg", CONFIGS)
def test_the_network_has_exactly_its_layouts_tensors_and_its_config_round_trips(cfg):
    net = ARCH.build(cfg)
    layout = ARCH.layout(cfg)
    assert [(p.name, p.shape) for p in layout] == [(n, tuple(t.shape)) for n, t in net.named_parameters()]
    assert sum(ARCH.param_split(cfg).values()) == ARCH.params(cfg)
    CompressibleModel(net, cfg)
    w = ByteWriter()
    ARCH.config_bytes(cfg, w)
    r = ByteReader(w.bytes(), "ARCX")
    assert ARCH.parse_config(r, cfg.shape) == cfg
    r.end()
    with torch.no_grad():
        out = net(torch.tensor([cfg.views - 1]), torch.tensor([cfg.frames - 1]))
    assert out.shape == (1, 3, cfg.height, cfg.width) and 0 < float(out.min()) and float(out.max()) < 1


@pytest.mark.parametrize(
    "edits, message",
    [({0: 0}, "0 blocks"), ({1: 9}, "strides"), ({1: 8, 2: 8}, "above the frame's larger side"), ({3: 0}, "widths"),
     ({9: 7}, "grid levels"), ({10: 0}, "grid channels"), ({11: 7}, "local levels"), ({14: 4}, "kernel"),
     ({15: 0}, "expansion")],
)  # fmt: skip
def test_each_configuration_field_is_checked(edits, message):
    cfg = replace(CONFIGS[0], width=48)  # blocks 2: bytes 1-2 strides, 3-8 widths, 9-11 levels and channels, 12-15
    w = ByteWriter()
    ARCH.config_bytes(cfg, w)
    data = bytearray(w.bytes())
    for at, value in edits.items():
        data[at] = value
    with pytest.raises(StreamError, match=message):
        ARCH.parse_config(ByteReader(bytes(data), "ARCX"), cfg.shape)


def spec_forward(net, cfg: HiNeRVConfig, v: int, t: int) -> torch.Tensor:
    """bitstream_spec.md section 12.3, read independently: RGB (3, H, W) of view v, frame t."""
    p = dict(net.named_parameters())

    def in_time(name: str, level: int) -> torch.Tensor:
        n = time_slices(cfg.frames, level)
        i0 = t // 2**level
        i1 = min(i0 + 1, n - 1)
        a = (t % 2**level) / 2**level
        return p[name][v * n + i0] * (1 - a) + p[name][v * n + i1] * a

    def conv(x, name, pad=0, groups=1):
        return F.conv2d(x[None], p[f"{name}.weight"], p[f"{name}.bias"], padding=pad, groups=groups)[0]

    x = conv(torch.cat([in_time(f"grids.{level}", level) for level in range(cfg.grid_levels)]), "stem", 1)
    for n, s in enumerate(cfg.strides):
        b = f"blocks.{n}"
        if s > 1:
            x = F.interpolate(x[None], size=(x.shape[1] * s, x.shape[2] * s), mode="bilinear", align_corners=False)[0]
        if cfg.local_levels and cfg.local_channels[n]:
            e = conv(torch.cat([in_time(f"{b}.local.{level}", level) for level in range(cfg.local_levels)]), f"{b}.enc")
            ys = torch.arange(x.shape[1]) % s
            xs = torch.arange(x.shape[2]) % s
            x = x + e[:, ys[:, None], xs[None, :]]
        y = conv(x, f"{b}.dw", cfg.kernel // 2, groups=x.shape[0])
        m = y.mean(dim=0)
        q = ((y - m) ** 2).mean(dim=0)
        y = (y - m) / torch.sqrt(q + 1e-6) * p[f"{b}.norm.weight"][:, None, None] + p[f"{b}.norm.bias"][:, None, None]
        y = conv(0.5 * (h := conv(y, f"{b}.pw1")) * (1 + torch.erf(h / math.sqrt(2))), f"{b}.pw2")
        x = y + x if y.shape[0] == x.shape[0] else y
    return torch.sigmoid(conv(x, "head"))[:, : cfg.height, : cfg.width]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_the_forward_pass_is_the_specs(cfg):
    torch.manual_seed(1)
    net = ARCH.build(cfg)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.normal_(1.0 if name.endswith("norm.weight") else 0.0, 0.5)
        for v in range(cfg.views):
            for t in range(cfg.frames):
                got = net(torch.tensor([v]), torch.tensor([t]))[0]
                torch.testing.assert_close(got, spec_forward(net, cfg, v, t), rtol=0, atol=2e-6)


def test_a_temporal_grid_is_read_on_its_slices_and_linearly_between_them():
    cfg = HiNeRVConfig(1, 5, 8, 8, strides=(2,), widths=(4, 4), grid_levels=3, local_channels=(1,))
    assert [time_slices(5, level) for level in range(3)] == [5, 3, 2] and time_slices(1, 2) == 1
    net = ARCH.build(cfg)
    from mvcodec.model.hinerv import read_in_time

    g = net.grids[2]  # slices at frames 0 and 4
    with torch.no_grad():
        g.normal_()
    at = [read_in_time(g, torch.tensor([0]), torch.tensor([t]), 2, 2)[0] for t in range(5)]
    torch.testing.assert_close(at[0], g[0], rtol=0, atol=0)
    torch.testing.assert_close(at[2], (g[0] + g[1]) / 2)
    torch.testing.assert_close(at[4], g[1], rtol=0, atol=0)


def test_sizing_follows_the_budget_and_the_frame():
    small = ARCH.size_for(Shape(2, 3, 36, 64), 20_000)
    big = ARCH.size_for(Shape(2, 3, 36, 64), 80_000)
    assert ARCH.params(small) <= 20_000 < ARCH.params(big) <= 80_000
    assert big.widths[0] > small.widths[0] and small.strides == (2, 2)
    hd = ARCH.size_for(Shape(4, 16, 180, 320), 180_000)
    assert hd.strides == (2,) * 5 and hd.base_size == (6, 10) and ARCH.params(hd) <= 180_000
    assert ARCH.macs_per_pixel(hd) > 1000
    tiny = ARCH.size_for(Shape(1, 1, 16, 16), 1000)  # below the smallest network: the smallest
    assert tiny.widths[0] == 8


def test_mv_hinerv_round_trips_through_mvenc_mvdec_and_mvinfo(tmp_path, capsys):
    stream, stats = tmp_path / "h.mvinr", tmp_path / "h.json"
    args = [*SAMPLE_FILES[:2], stream, "-f", "3", "--arch", "mv-hinerv", "--no-progress"]
    out = _run(mvenc, [*args, "--epochs", "3", "--prune-epochs", "1", "--qat-epochs", "2", "--stats", stats], capsys)
    assert "layout: mv-hinerv, base 6x10" in out and "pruning" in out
    record = json.loads(stats.read_text())
    assert record["rate_lambda"] == 512.0 and record["arch"] == "mv-hinerv"
    with open(stream, "rb") as f:
        index = read_index(f)
        tensors = {t.name: t for t in read_segment_tensors(f, index.segments[0])}
    assert index.version == (1, 1) and index.segments[0].config.strides == (2, 2, 2, 2)
    assert tensors["blocks.0.pw1.weight"].step_mode == STEP_ROW_COLUMN and "grids.2" in tensors
    info = _run(mvinfo, [stream], capsys)
    assert "mv-hinerv" in info and "one whole frame a pass" in info
    with Decoder(stream) as dec:
        whole = {(f.view, f.frame): f.planes.y for f in dec.frames()}
    with Decoder(stream) as dec:
        alone = [f.planes.y for f in dec.frames(views=[1], frames=[2])]
    assert len(alone) == 1 and np.array_equal(alone[0], whole[(1, 2)])
    assert "decoded 2 views x 3 frames" in _run(mvdec, [stream, "--md5", "--no-progress"], capsys)


def test_an_mv_hinerv_qat_resumed_equals_an_uninterrupted_one(tmp_path):
    def tiny():
        torch.manual_seed(4)
        cfg = HiNeRVConfig(2, 3, 36, 64, strides=(2, 2), widths=(8, 8, 6), local_channels=(2, 1))
        model = CompressibleModel(ARCH.build(cfg), cfg, quantise=True)
        return model, TrainingData(FrameStore(moving_square_source(), torch.device("cpu")), None, "x")

    resumed_equals_uninterrupted(tiny, ARCH, tmp_path)
