"""The architecture registry: a network defined in this file alone, registered with one line, goes through
mvenc (fit, pruning, QAT, range coding) -> .mvinr -> mvdec -> mvinfo; a decoder without it refuses the stream."""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import SAMPLE_FILES, run_tool
from test_fuzz import mutate
from torch import nn

from mvcodec.bitstream import parameter_hash, read_index, read_segment_tensors
from mvcodec.bitstream.tensor import (
    MASK_BERNOULLI,
    MODEL_CONTEXT,
    STEP_PER_AXIS,
    STEP_ROW_COLUMN,
    STEP_SCALAR,
)
from mvcodec.cli import mvdec, mvenc, mvinfo
from mvcodec.compress.qat import CompressibleModel
from mvcodec.decoder import Decoder
from mvcodec.errors import StreamError, UnknownCriticalChunk
from mvcodec.model import ArchConfig, Architecture, ParamSpec, Role, Shape, by_name, register
from mvcodec.model.registry import names, unregister

CELL = 8


@dataclass(frozen=True)
class TinyConfig(ArchConfig):
    channels: int

    @property
    def grid(self) -> tuple[int, int]:
        return math.ceil(self.height / CELL), math.ceil(self.width / CELL)


class TinyNet(nn.Module):
    """A latent grid per (view, frame), a 3x3 conv, bilinear upsampling and a 1x1 head to RGB."""

    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.cfg = cfg
        self.latents = nn.Parameter(torch.randn(cfg.views * cfg.frames, cfg.channels, *cfg.grid) * 0.1)
        self.mix = nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1)
        self.head = nn.Conv2d(cfg.channels, 3, 1)

    def forward(self, view: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.mix(self.latents[view * self.cfg.frames + frame]))
        x = F.interpolate(x, scale_factor=CELL, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.head(x))[..., : self.cfg.height, : self.cfg.width]


class Tiny(Architecture):
    id, name, config_type = 0xF001, "tiny-test", TinyConfig

    def build(self, cfg: TinyConfig) -> TinyNet:
        return TinyNet(cfg)

    def layout(self, cfg: TinyConfig) -> list[ParamSpec]:
        c = cfg.channels
        return [
            ParamSpec("latents", (cfg.views * cfg.frames, c, *cfg.grid), Role.GRID),
            ParamSpec("mix.weight", (c, c, 3, 3), Role.CONV_WEIGHT),
            ParamSpec("mix.bias", (c,), Role.BIAS),
            ParamSpec("head.weight", (3, c, 1, 1), Role.CONV_WEIGHT),
            ParamSpec("head.bias", (3,), Role.BIAS),
        ]

    def config_bytes(self, cfg: TinyConfig, w) -> None:
        w.u16(cfg.channels)

    def parse_config(self, r, shape: Shape) -> TinyConfig:
        channels = r.u16()
        r.check(1 <= channels <= 64, f"{channels} channels, must be 1 to 64")
        return TinyConfig(shape.views, shape.frames, shape.height, shape.width, channels)

    def size_for(self, shape: Shape, params: int) -> TinyConfig:
        options = [TinyConfig(shape.views, shape.frames, shape.height, shape.width, c) for c in range(1, 65)]
        return min(options, key=lambda cfg: abs(self.params(cfg) - params))

    def macs_per_pixel(self, cfg: TinyConfig) -> float:
        return 9 * cfg.channels**2 / CELL**2 + 3 * cfg.channels

    def describe(self, cfg: TinyConfig) -> str:
        return f"{cfg.channels} channels on {CELL}-pixel cells"


@pytest.fixture
def tiny_arch():
    arch = register(Tiny())  # the one registry line
    yield arch
    unregister(arch)


def _run(command, args: list, capsys) -> str:
    command.main(args=[str(a) for a in args], prog_name=command.name, standalone_mode=False)
    return capsys.readouterr().out


def test_a_new_architecture_is_one_module_and_one_registry_line(tiny_arch, tmp_path, capsys, monkeypatch):
    assert "tiny-test" in names() and by_name("tiny-test") is tiny_arch
    stream, stats = tmp_path / "t.mvinr", tmp_path / "t.json"
    args = [*SAMPLE_FILES[:2], stream, "-f", "3", "--arch", "tiny-test", "--preset", "fast", "--no-progress"]
    out = _run(mvenc, [*args, "--epochs", "4", "--prune-epochs", "1", "--qat-epochs", "2", "--stats", stats], capsys)
    assert "layout: tiny-test, " in out and "pruning: 40% of the conv weights" in out
    with open(stream, "rb") as f:  # the full compression pipeline, the coding chosen by each tensor's role
        index = read_index(f)
        assert index.version == (1, 1) and [c.type for c in index.chunks][2:4] == ["SEGM", "ARCX"]
        tensors = {t.name: t for t in read_segment_tensors(f, index.segments[0])}
    record = json.loads(stats.read_text())
    cfg = index.segments[0].config
    assert isinstance(cfg, TinyConfig) and record["arch"] == "tiny-test"
    assert record["macs_per_pixel"] == tiny_arch.macs_per_pixel(cfg) and record["params"] == tiny_arch.params(cfg)
    assert tensors["mix.weight"].step_mode == STEP_ROW_COLUMN and tensors["latents"].step_mode == STEP_PER_AXIS
    assert tensors["head.bias"].step_mode == STEP_SCALAR
    assert any(t.mask_mode == MASK_BERNOULLI for t in tensors.values())

    out = _run(mvdec, [stream, "-o", tmp_path / "views", "--md5", "--no-progress"], capsys)
    assert "decoded 2 views x 3 frames" in out and len(list((tmp_path / "views").iterdir())) == 2
    info = json.loads(_run(mvinfo, [stream, "--json"], capsys))
    segment = info["segments"][0]
    assert (info["version"], segment["arch"], segment["arch_id"]) == ("1.1", "tiny-test", 0xF001)
    assert segment["model"]["channels"] == cfg.channels and info["hash_ok"]
    assert "tiny-test" in _run(mvinfo, [stream], capsys)

    # a decoder that lacks the architecture (here: a fresh process) refuses the stream as needing a newer one
    r = run_tool("mvdec", stream, "--md5")
    assert r.returncode == UnknownCriticalChunk.exit_code and "needs a newer decoder" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # damaged copies of the stream, CRCs fixed so that the ARCX fields are reached, end in a clean StreamError
    rng, data = random.Random(0), stream.read_bytes()
    for _ in range(150):
        try:
            with Decoder(io.BytesIO(mutate(data, rng))) as dec:
                list(dec.frames(frames=[0]))
        except StreamError:
            pass
    # a format 1.0 decoder knows only 1.0's critical chunks (bitstream_spec.md, section 3): it stops at ARCX
    monkeypatch.setattr("mvcodec.bitstream.stream.KNOWN_CRITICAL", {"SEQH", "SEGM", "ARCH", "TNSR", "PHSH", "MEND"})
    with open(stream, "rb") as f, pytest.raises(UnknownCriticalChunk, match="'ARCX'.*needs a newer decoder"):
        read_index(f)


def test_registering_refuses_clashes(tiny_arch):
    with pytest.raises(ValueError, match="clashes"):
        register(Tiny())
    known = "mv-mginr, mv-pyramid, mv-pyramid-mc, mv-hinerv, tiny-test"
    with pytest.raises(ValueError, match=f"unknown architecture .nope.; use one of {known}"):
        by_name("nope")


def test_mvenc_names_the_architectures_it_knows(tmp_path):
    r = run_tool("mvenc", *SAMPLE_FILES[:1], tmp_path / "x.mvinr", "--arch", "nope")
    assert r.returncode == 2 and "--arch: unknown architecture 'nope'; use one of mv-mginr" in r.stderr


def test_a_network_that_differs_from_its_layout_is_refused(tiny_arch):
    cfg = TinyConfig(1, 2, 16, 16, 4)
    net = tiny_arch.build(cfg)
    net.extra = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="differ from its architecture's layout"):
        CompressibleModel(net, cfg)


def test_registering_refuses_what_is_not_an_architecture():
    class Loose:
        id, name, config_type = 0xF00F, "loose", dict

    with pytest.raises(TypeError, match="not an Architecture"):
        register(Loose())


def test_mv_pyramid_round_trips_through_mvenc_and_mvdec(tmp_path, capsys):
    from mvcodec.model.pyramid import PyramidConfig

    arch = by_name("mv-pyramid")
    cfg = arch.size_for(Shape(2, 3, 96, 160), 0)
    assert cfg.levels == 5 and cfg.grid_size(4) == (6, 10)
    CompressibleModel(arch.build(cfg), cfg)  # the network has exactly its layout's tensors
    with pytest.raises(ValueError, match="grid channels"):
        PyramidConfig(2, 3, 96, 160, view_channels=0, frame_channels=0)
    stream, stats = tmp_path / "p.mvinr", tmp_path / "p.json"
    args = [*SAMPLE_FILES[:2], stream, "-f", "3", "--arch", "mv-pyramid", "--preset", "fast", "--no-progress"]
    out = _run(mvenc, [*args, "--epochs", "3", "--qat-epochs", "3", "--stats", stats], capsys)
    assert "layout: mv-pyramid, 5 levels" in out and "pruning" not in out
    record = json.loads(stats.read_text())
    assert record["rate_lambda"] == 512.0 and record["psnr_yuv"] > 15
    with open(stream, "rb") as f:
        index = read_index(f)
        assert index.segments[0].config == cfg and index.version == (1, 1)
        tensors = {t.name: t for t in read_segment_tensors(f, index.segments[0])}
    latent = tensors["frame_grids.0"]  # latents: the unit step, Gaussians by context, the coarser level's context
    assert latent.step_mode == STEP_SCALAR and list(latent.steps) == [1.0] and latent.model_mode == MODEL_CONTEXT
    names = list(tensors)
    assert names[latent.coarse_ref] == "frame_grids.1" and latent.row_period == 3
    assert tensors["view_grids.0"].row_period == 0
    assert tensors["synth.0.weight"].step_mode == STEP_ROW_COLUMN
    out = _run(mvdec, [stream, "--md5", "--no-progress"], capsys)
    assert "decoded 2 views x 3 frames" in out


def test_the_pyramid_architectures_are_registered_and_their_experimental_ids_still_decode(tmp_path):
    from mvcodec.bitstream import SegmentData, SegmentHeader, SequenceHeader, write_stream
    from mvcodec.bitstream.syntax import FILE_HEADER_BYTES
    from mvcodec.color import ColorSpec
    from mvcodec.compress.qat import export_tensors
    from mvcodec.decoder import Decoder
    from mvcodec.model.registry import by_id

    assert (by_name("mv-pyramid").id, by_name("mv-pyramid-mc").id) == (1, 2)
    assert by_id(0x8001) is by_name("mv-pyramid") and by_id(0x8002) is by_name("mv-pyramid-mc")
    arch = by_name("mv-pyramid-mc")
    cfg = arch.size_for(Shape(1, 2, 16, 24), 0)
    exported = export_tensors(CompressibleModel(arch.build(cfg), cfg, quantise=True))
    seq = SequenceHeader(("v0",), 2, 24, 16, 8, ColorSpec(), 30, 1)
    digest = parameter_hash([e.values for e in exported])
    segment = SegmentData(SegmentHeader(0, 0, 2), cfg, [e.tensor for e in exported], digest)
    path = tmp_path / "s.mvinr"
    with open(path, "wb") as f:
        write_stream(f, seq, [segment])
    data = path.read_bytes()
    at = data.index(b"ARCX") + 4  # the payload's first field: arch_id 2, as a published stream has it
    assert data[at : at + 2] == (2).to_bytes(2, "little") and at > FILE_HEADER_BYTES
    old = bytearray(data)
    old[at : at + 2] = (0x8002).to_bytes(2, "little")  # as mvenc wrote it while it was experimental
    crc_at = at + int.from_bytes(data[at - 8 : at - 4], "little")
    old[crc_at : crc_at + 4] = zlib.crc32(bytes(old[at - 4 : crc_at])).to_bytes(4, "little")
    (tmp_path / "old.mvinr").write_bytes(old)
    outputs = []
    for p in (path, tmp_path / "old.mvinr"):
        with Decoder(p) as dec:
            assert dec.index.segments[0].config == cfg
            outputs.append([f.planes.y for f in dec.frames()])
    assert all(np.array_equal(a, b) for a, b in zip(*outputs, strict=True))


def _random_pyramid(std: float):
    """An MV-Pyramid (2 views x 4 frames x 16x24, 2 levels, width 8), every parameter drawn from N(0, std)."""
    from mvcodec.model.pyramid import PyramidConfig

    cfg = PyramidConfig(2, 4, 16, 24, levels=2, hidden=8)
    torch.manual_seed(0)
    net = by_name("mv-pyramid").build(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, std)
    return net, cfg


def test_pyramid_batches_quantise_their_own_frames_only():
    net, cfg = _random_pyramid(3)
    model = CompressibleModel(net, cfg, quantise=True)
    view, frame = torch.tensor([1, 0]), torch.tensor([2, 3])
    rows = torch.tensor([3, 6])  # view * frames + frame, sorted
    full = model.effective_params(hard=True)
    part = model.effective_params(hard=True, rows=rows)
    assert part["frame_grids.0"].shape[0] == 2 and part["view_grids.0"].shape[0] == 2  # 2 frame rows, 2 views
    out_full = torch.func.functional_call(net, full, (view, frame))
    out_part = torch.func.functional_call(net, part, (view, frame), {"rows": rows})
    assert torch.equal(out_full, out_part)  # the network reads no other row


def test_noise_proxy_relaxes_latents_only_and_evaluation_is_rounded():
    net, cfg = _random_pyramid(3)
    model = CompressibleModel(net, cfg, quantise=True)
    model.train()
    model.latent_noise = True
    model.set_step(0, 100)  # about 10% rounded, the rest relaxed
    soft, hard = model.effective_params(), model.effective_params(hard=True)
    base = dict(net.named_parameters())
    y, q = soft["frame_grids.0"].detach(), hard["frame_grids.0"]
    moved = (y - base["frame_grids.0"].detach()).abs()
    relaxed = y != q
    assert 0.8 < float(relaxed.float().mean()) < 0.95  # the unrounded latents are noisy, not the values
    assert float(moved[relaxed].max()) <= 0.5 and float(moved[relaxed].mean()) > 0.2  # U(-1/2, 1/2): mean 1/4
    w, wq, w0 = soft["synth.0.weight"].detach(), hard["synth.0.weight"], base["synth.0.weight"].detach()
    kept = w != wq
    assert kept.any() and torch.allclose(w[kept], w0[kept], rtol=1e-5, atol=0)  # a weight not picked: as it is
    model.eval()
    assert all(torch.equal(a, hard[n]) for n, a in model.effective_params().items())


def test_latent_proxy_is_a_checked_training_option():
    from mvcodec.encoder.recipe import recipe
    from mvcodec.errors import InputError

    assert recipe("fast", arch="mv-mginr").train.latent_proxy == "mixed"  # the paper's Quant-Noise
    assert recipe("fast", arch="mv-pyramid").train.latent_proxy == "noise"  # BENCHMARKS.md, experiment 23
    assert recipe("fast", arch="mv-pyramid-mc").train.latent_proxy == "mixed"  # the noise proxy was neutral there
    ramps = {a: recipe("fast", arch=a).train.noise_ramp for a in ("mv-mginr", "mv-pyramid", "mv-pyramid-mc")}
    assert ramps == {"mv-mginr": 0.75, "mv-pyramid": 0.75, "mv-pyramid-mc": 0.5}  # experiment 33
    epochs = {a: [p.epochs for p in recipe("medium", arch=a).phases] for a in ("mv-pyramid", "mv-pyramid-mc")}
    # a 1% fit runs away on the small cut (experiment 23); medium spends the time budget (experiment 30)
    assert epochs == {"mv-pyramid": [10, 90], "mv-pyramid-mc": [7, 63]}
    assert [p.epochs for p in recipe("fast", arch="mv-pyramid-mc").phases] == [4, 32]
    assert (
        recipe("fast", arch="mv-pyramid-mc").train.price_frames
        and not recipe("fast", arch="mv-pyramid").train.price_frames
    )
    with pytest.raises(InputError, match="latent proxy"):
        recipe("fast", arch="mv-pyramid", latent_proxy="soft")


@pytest.mark.parametrize("quantise", [False, True])
def test_a_training_step_on_the_batchs_rows_alone_has_the_whole_tensors_gradients(quantise):
    """start_batch: the forward and the rate term differentiate copies of the batch's rows; their gradients
    equal those of the whole tensors in those rows (zero elsewhere), and RowAdam takes them."""
    from mvcodec.train.optim import RowAdam

    net, cfg = _random_pyramid(2)
    model = CompressibleModel(net, cfg, quantise=quantise).train()
    model.set_step(10, 10)  # Quant-Noise at rate 1 (its draws take the shape of what is quantised)
    view, frame = torch.tensor([1, 0]), torch.tensor([2, 3])

    def loss_of(out):
        rate = model.rate_bits(rows) if quantise else 0.0
        return (out - 0.5).square().mean() + 1e-4 * rate

    rows = model.start_batch(view, frame)
    loss_of(model(view, frame)).backward()
    compact = model.batch_grads()
    params = dict(net.named_parameters())
    assert {p for p in compact} == {params[n] for n in params if n.startswith("frame_grids")}
    reference = {n: p.grad.clone() for n, p in params.items() if p.grad is not None}
    for p in net.parameters():
        p.grad = None
    model._batch = None  # the same step on the whole tensors (as before start_batch existed)
    out = torch.func.functional_call(net, model.effective_params(), (view, frame))
    rows = None if not quantise else rows
    loss_of(out).backward()
    for name, p in params.items():
        if name.startswith("frame_grids"):
            g = compact[p]
            assert torch.allclose(g, p.grad[torch.tensor([3, 6])], atol=1e-6), name
            assert int((p.grad.abs().sum(dim=(1, 2, 3)) > 0).sum()) <= 2, name
        else:
            assert torch.allclose(reference[name], p.grad, atol=1e-6), name
    opt = RowAdam([{"params": [params["frame_grids.0"]], "rows": True}], lr=0.1)
    before = params["frame_grids.0"].detach().clone()
    opt.step(rows=torch.tensor([3, 6]), grads={params["frame_grids.0"]: compact[params["frame_grids.0"]]})
    moved = (params["frame_grids.0"].detach() != before).flatten(1).any(dim=1)
    assert moved.nonzero().flatten().tolist() == [3, 6]


def test_pyramid_sweep_encodes_a_registered_variant():
    tool = Path(__file__).resolve().parents[1] / "tools" / "pyramid_sweep.py"
    args = ["-f", "2", "--epochs", "1", "--qat-epochs", "1", "-q", "3", "--channels", "2", "--hidden", "8"]
    cmd = [sys.executable, str(tool), *map(str, SAMPLE_FILES[:2]), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["arch"] == "mv-pyramid-c2-h8" and row["q"] == 3 and row["bpp"] > 0 and row["psnr_yuv"] > 10


def test_pyramid_view_and_frame_grids_can_start_at_a_coarser_level():
    from mvcodec.bitstream.syntax import ByteReader, ByteWriter
    from mvcodec.model.base import Shape
    from mvcodec.model.pyramid import MVPyramidArchitecture, PyramidConfig

    arch = MVPyramidArchitecture()
    cfg = PyramidConfig(2, 3, 36, 64, levels=3, frame_skip=1)
    names = [p.name for p in arch.layout(cfg)]
    assert names[:5] == ["view_grids.2", "view_grids.1", "view_grids.0", "frame_grids.2", "frame_grids.1"]
    assert {n for n, _ in arch.build(cfg).named_parameters()} == set(names)
    w = ByteWriter()
    arch.config_bytes(cfg, w)
    assert arch.parse_config(ByteReader(w.bytes(), "ARCX"), Shape(2, 3, 36, 64)) == cfg
    assert "from level 1" in arch.describe(cfg)
    net = arch.build(cfg)
    assert net(torch.tensor([1]), torch.tensor([2])).shape == (1, 3, 36, 64)
    assert net.synth[0].in_channels == cfg.in_channels == 3 + 2
    for bad in ({"frame_skip": 3}, {"frame_skip": 1, "view_channels": 0}, {"frame_skip": 1, "frame_channels": 0}):
        with pytest.raises(ValueError, match="frame_skip"):
            PyramidConfig(2, 3, 36, 64, levels=3, **bad)


def test_step_time_reports_both_phases():
    tool = Path(__file__).resolve().parents[1] / "tools" / "step_time.py"
    cmd = [sys.executable, str(tool), *map(str, SAMPLE_FILES[:2]), "-f", "2", "-q", "3"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["arch"] == "mv-pyramid" and row["shape"][:2] == [2, 2]
    assert row["fit_ms_per_step"] > 0 and row["qat_ms_per_step"] > 0
