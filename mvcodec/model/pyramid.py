"""MV-Pyramid (bitstream_spec.md architecture 1): multi-resolution latent grids per view and per
view-and-frame, and a light synthesis net, in the manner of C3 and Cool-Chic's latent pyramids, for
multi-view video.

For view v and frame t, level l (0 = full resolution, each next level half the size, rounded up) holds
a view grid VG_l[v] (view_channels) shared by every frame of the view, where a fixed camera's static scene
belongs, and from level frame_skip on a view-and-frame grid FG_l[v * frames + t] (frame_channels). Every
level is upsampled bilinearly (align_corners=False) to the frame size and all are concatenated (each level's
view grid, then its view-and-frame grid, finest level first); the synthesis is

    x <- GELU(Conv1x1(x)); x <- GELU(Conv1x1(x)); RGB = sigmoid(Conv3x3(x))   (hidden channels)

Most of the information sits in the grids, coded under Gaussians chosen by context (the coarser level and
the previous frame: bitstream_spec.md section 7.2), whose rate the entropy model prices during QAT; the
size follows the frame: -q sets the rate through lambda, and from -q 7 up also buys two channels a level
and a wider synthesis (BENCHMARKS.md, issue 14, experiments 5 and 37).
Trained on the MSE of YUV 4:2:0 weighted 6:1:1 at a learning rate of 1e-2, the grids at 30x that, a fit
phase of 10% of the epochs without the rate term, then QAT with the latents Quant-Noise has not yet rounded
seen as y + U(-1/2, 1/2) (BENCHMARKS.md, issue 14, experiment 23), priced under the Gaussians of their rounded
values in each context, those the coder stores (experiment 24).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from mvcodec.bitstream.tensor import ARM_INPUTS, ARM_MAX_HIDDEN, ARM_OUTPUTS, arm_layer_shapes
from mvcodec.model import bands
from mvcodec.model.base import COLOUR_FLOATS_PER_PIXEL, ArchConfig, Architecture, ParamSpec, Role, Shape
from mvcodec.presets import PYRAMID_PRESETS

MAX_LEVELS = 8
MAX_CHANNELS = 16
MAX_HIDDEN = 256


@dataclass(frozen=True)
class PyramidConfig(ArchConfig):
    levels: int = 5
    view_channels: int = 1
    frame_channels: int = 1
    hidden: int = 24
    frame_skip: int = 0  # the view-and-frame grids start at this level (0: at the frame's resolution)
    arm_hidden: int = 0  # > 0: the grids coded by an entropy-model network this wide (model_mode 3), else mode 2

    def __post_init__(self) -> None:
        if not 1 <= self.levels <= MAX_LEVELS:
            raise ValueError(f"levels = {self.levels}, must be 1 to {MAX_LEVELS}")
        chans = (self.view_channels, self.frame_channels)
        if not all(0 <= c <= MAX_CHANNELS for c in chans) or not sum(chans):
            raise ValueError(f"grid channels {chans}: each 0 to {MAX_CHANNELS}, not both 0")
        if not 1 <= self.hidden <= MAX_HIDDEN:
            raise ValueError(f"hidden = {self.hidden}, must be 1 to {MAX_HIDDEN}")
        if not 0 <= self.frame_skip < self.levels:
            raise ValueError(f"frame_skip = {self.frame_skip}, must be 0 to levels - 1 = {self.levels - 1}")
        if not 0 <= self.arm_hidden <= ARM_MAX_HIDDEN:
            raise ValueError(f"arm_hidden = {self.arm_hidden}, must be 0 to {ARM_MAX_HIDDEN}")
        if self.frame_skip and not (self.view_channels and self.frame_channels):
            raise ValueError("frame_skip must be 0 unless there are both view and view-and-frame channels")

    def grid_size(self, level: int) -> tuple[int, int]:
        """(height, width) of a level's grids: the frame's divided by 2^level, rounded up."""
        return math.ceil(self.height / 2**level), math.ceil(self.width / 2**level)

    def frame_levels(self) -> range:
        """The levels that have view-and-frame grids."""
        return range(self.frame_skip, self.levels) if self.frame_channels else range(0)

    @property
    def in_channels(self) -> int:
        return self.levels * self.view_channels + len(self.frame_levels()) * self.frame_channels


class MVPyramid(nn.Module):
    """Maps (view, frame) index pairs to RGB frames (B, 3, height, width) in [0, 1]."""

    def __init__(self, cfg: PyramidConfig):
        super().__init__()
        self.cfg = cfg
        sizes = [cfg.grid_size(level) for level in range(cfg.levels)]
        if cfg.view_channels:
            self.view_grids = nn.ParameterList(
                [nn.Parameter(torch.zeros(cfg.views, cfg.view_channels, *hw)) for hw in sizes]
            )
        if cfg.frame_channels:  # keyed by level: frame_grids.<level>
            self.frame_grids = nn.ParameterDict(
                {
                    str(level): nn.Parameter(torch.zeros(cfg.views * cfg.frames, cfg.frame_channels, *sizes[level]))
                    for level in cfg.frame_levels()
                }
            )
        if cfg.arm_hidden:  # the latents' entropy model (only the rate term reads it)
            a = cfg.arm_hidden
            self.arm = nn.ModuleList([nn.Linear(ARM_INPUTS, a), nn.Linear(a, a), nn.Linear(a, ARM_OUTPUTS)])
            with torch.no_grad():
                self.arm[2].weight.mul_(0.1)
                self.arm[2].bias.zero_()
        h = cfg.hidden
        self.synth = nn.ModuleList(
            [nn.Conv2d(cfg.in_channels, h, 1), nn.Conv2d(h, h, 1), nn.Conv2d(h, 3, 3, padding=1)]
        )

    def level_grids(
        self, view: torch.Tensor, frame: torch.Tensor, rows: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Each level's latents of a batch at the level's size (B, channels, h_l, w_l), view grid then
        view-and-frame grid. With `rows` (sorted), the view-and-frame grids hold only those rows of
        view * frames + frame (a training batch's)."""
        cfg, out = self.cfg, []
        index = view * cfg.frames + frame
        if rows is not None:
            index = torch.searchsorted(rows, index)
        for level in range(cfg.levels):
            parts = [self.view_grids[level][view]] if cfg.view_channels else []
            if level in cfg.frame_levels():
                parts.append(self.frame_part(level, view, frame, index, rows))
            out.append(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
        return out

    def latents(self, view: torch.Tensor, frame: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Every level's grids at the frame size, concatenated (B, in_channels, height, width) (`rows`: as
        level_grids)."""
        size = (self.cfg.height, self.cfg.width)
        # in the plain layout: a few channels upsample 3x faster than channels-last
        out = [
            F.interpolate(x.contiguous(), size=size, mode="bilinear", align_corners=False) if level else x
            for level, x in enumerate(self.level_grids(view, frame, rows))
        ]
        # one conversion for the synthesis: its 1x1 convs are 2-4x faster channels-last
        return torch.cat(out, dim=1).contiguous(memory_format=torch.channels_last)

    def frame_part(
        self, level: int, view: torch.Tensor, frame: torch.Tensor, index: torch.Tensor, rows: torch.Tensor | None
    ) -> torch.Tensor:
        """A level's view-and-frame latents of the batch (B, frame_channels, h, w); `index`: their rows in
        the frame-grid tensors as handed to the network."""
        return self.frame_grids[str(level)][index]

    def forward(self, view: torch.Tensor, frame: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        x = F.gelu(self.synth[0](self.latents(view, frame, rows)))
        x = F.gelu(self.synth[1](x))
        return torch.sigmoid(self.synth[2](x))

    def band_input(self, view: torch.Tensor, frame: torch.Tensor) -> list[torch.Tensor]:
        """What `band` synthesises rows from (the decoder's path): the batch's level_grids."""
        return self.level_grids(view, frame)

    def band(self, grids: list[torch.Tensor], r0: int, r1: int) -> torch.Tensor:
        """RGB rows r0..r1 (B, 3, r1 - r0, width) of the frames of `band_input`, whose values do not depend on
        the band (bitstream_spec.md, section 12.1): the decoder's path, which differs from `forward` only by
        rounding (its sums and nonlinearities are computed in another order)."""
        cfg = self.cfg
        lo, hi = bands.halo(r0, r1, cfg.height)
        x = torch.cat(
            [
                g[..., lo:hi, :] if level == 0 else bands.upsample_rows(g, cfg.height, cfg.width, lo, hi)
                for level, g in enumerate(grids)
            ],
            dim=1,
        ).contiguous(memory_format=torch.channels_last)
        # each GELU's half goes into the next layer's weights (exact): bands.gelu2
        x = bands.gelu2(self.synth[0](x))
        x = bands.gelu2(F.conv2d(x, self.synth[1].weight * 0.5, self.synth[1].bias))
        conv = self.synth[2]
        return bands.sigmoid(bands.conv3x3_rows(x, conv.weight * 0.5, conv.bias, r0, r1, cfg.height))


class MVPyramidArchitecture(Architecture):
    """MV-Pyramid in the stream: an ARCX chunk, architecture id 1 (bitstream_spec.md sections 6.1, 10.1, 12.1;
    0x8001, its private-use id while it was experimental, still decodes)."""

    id, name, config_type = 0x0001, "mv-pyramid", PyramidConfig
    legacy_ids = (0x8001,)
    lambda_at_4 = 512.0  # D is an MSE here (1e-3 is 30 dB), not MV-MGINR's L1 + SSIM
    params_per_pixel_at_4 = 1.5  # -q 4 is the one-channel size (about 1.5 parameters a pixel); -q 7, 8 widen it
    min_params_at_4 = 0
    # lr: 2e-2 was tried and dropped (BENCHMARKS, issue 14, exp. 11); the noise proxy: exp. 23 (which also found
    # a 1% fit phase better at 320x180 but running away at -q 2 and -q 3 on the small cut; with exp. 24's
    # Gaussians it no longer runs away there, and no longer gains there; not rerun at 320x180)
    train_defaults = {"lr": 1e-2, "loss": "mse-yuv", "motion_weight": 0.0, "latent_proxy": "noise"}
    lr_scales = {Role.LATENT: 30.0}
    presets = PYRAMID_PRESETS
    phased_latents = False  # the latent grids coded in model_mode 5 rather than 2 (without an entropy-model network)
    compact_tables = False  # model modes 5 and 6's parameter pairs in the compact table (spec 7.7), not bfloat16
    # one frame a pass: four frames' full-resolution layers (22 MB each at 320x180) outgrow the CPU's cache
    # and decode 30% slower (BENCHMARKS.md, issue 14, experiment 26)
    cpu_decode_batch = 1
    bands = band_reference = True  # bands of any height decode the whole frame's values (bitstream_spec.md 12.1)

    def build(self, cfg: PyramidConfig) -> MVPyramid:
        return MVPyramid(cfg)

    def layout(self, cfg: PyramidConfig) -> list[ParamSpec]:
        out = []
        arm = "arm.0.weight" if cfg.arm_hidden else None
        if arm:  # first: a decoder needs the network before the latents it codes
            for i, shape in enumerate(arm_layer_shapes(cfg.arm_hidden)):
                out.append(ParamSpec(f"arm.{i // 2}.{'bias' if i % 2 else 'weight'}", shape, Role.ARM))
        view_levels = range(cfg.levels) if cfg.view_channels else range(0)
        for kind, n, c, levels in (
            ("view_grids", cfg.views, cfg.view_channels, view_levels),
            ("frame_grids", cfg.views * cfg.frames, cfg.frame_channels, cfg.frame_levels()),
        ):
            # coarsest level first: each level's symbols are coded in the context of the coarser one's
            out += [
                ParamSpec(
                    f"{kind}.{level}",
                    (n, c, *cfg.grid_size(level)),
                    Role.LATENT,
                    "frame" if kind == "frame_grids" else None,
                    f"{kind}.{level + 1}" if level + 1 < cfg.levels else None,
                    arm,
                    phased=self.phased_latents and not arm,
                    compact=self.compact_tables,
                )
                for level in reversed(levels)
            ]
        h, c_in = cfg.hidden, cfg.in_channels
        for i, (o, k) in enumerate([(h, 1), (h, 1), (3, 3)]):
            out += [
                ParamSpec(f"synth.{i}.weight", (o, c_in, k, k), Role.CONV_WEIGHT),
                ParamSpec(f"synth.{i}.bias", (o,), Role.BIAS),
            ]
            c_in = o
        return out

    def param_split(self, cfg: PyramidConfig) -> dict[str, int]:
        split = {"view_grids": 0, "frame_grids": 0, "synthesis": 0, "entropy model": 0}
        for p in self.layout(cfg):
            part = p.name.split(".")[0] if p.role is Role.LATENT else "synthesis"
            split["entropy model" if p.role is Role.ARM else part] += p.numel
        if not cfg.arm_hidden:
            del split["entropy model"]
        return split

    def config_bytes(self, cfg: PyramidConfig, w) -> None:
        self.fields_bytes(cfg, w)
        if cfg.arm_hidden:  # optional last byte: absent means 0 (the streams before it)
            w.u8(cfg.arm_hidden)

    def fields_bytes(self, cfg: PyramidConfig, w) -> None:
        w.u8(cfg.levels)
        w.u8(cfg.view_channels)
        w.u8(cfg.frame_channels)
        w.u16(cfg.hidden)
        w.u8(cfg.frame_skip)

    def parse_config(self, r, shape: Shape) -> PyramidConfig:
        return self.with_arm(self.parse_fields(r, shape), r)

    def parse_fields(self, r, shape: Shape) -> PyramidConfig:
        levels, view_channels, frame_channels, hidden, skip = r.u8(), r.u8(), r.u8(), r.u16(), r.u8()
        return self.config_type(
            shape.views, shape.frames, shape.height, shape.width, levels, view_channels, frame_channels, hidden, skip
        )

    @staticmethod
    def with_arm(cfg: PyramidConfig, r) -> PyramidConfig:
        """The config with the optional arm_hidden byte (1 to ARM_MAX_HIDDEN where present)."""
        if not r.remaining:
            return cfg
        hidden = r.u8()
        r.check(1 <= hidden <= ARM_MAX_HIDDEN, f"entropy-model width {hidden}, must be 1 to {ARM_MAX_HIDDEN}")
        return replace(cfg, arm_hidden=hidden)

    def size_for(self, shape: Shape, params: int) -> PyramidConfig:
        """Levels down to a grid of at least 4 cells a side (5 at most); one channel a level and width 24 up
        to 6 times that size's parameters (-q 1 to 6: above -q 4 lambda alone buys the quality, at -q 4's
        time; BENCHMARKS.md, issue 14, experiment 37), two channels and width 32 up to 12 times (-q 7), then
        width 48 (-q 8; the grids dominate the count: the budget buys channels)."""
        levels = 1
        while levels < 5 and min(math.ceil(shape.height / 2**levels), math.ceil(shape.width / 2**levels)) >= 4:
            levels += 1
        base = PyramidConfig(shape.views, shape.frames, shape.height, shape.width, levels)
        ratio = params / self.params(base)
        if ratio < 6:
            return base
        wider = dict(view_channels=2, frame_channels=2, hidden=32 if ratio < 12 else 48)
        return PyramidConfig(shape.views, shape.frames, shape.height, shape.width, levels, **wider)

    def macs_per_pixel(self, cfg: PyramidConfig) -> float:
        upsampling = 4 * (cfg.in_channels - cfg.view_channels - (cfg.frame_channels if cfg.frame_skip == 0 else 0))
        # (the entropy-model network of arm_hidden runs on the latents while decoding, not per output pixel)
        return upsampling + cfg.in_channels * cfg.hidden + cfg.hidden**2 + 9 * cfg.hidden * 3

    def decode_floats_per_pixel(self, cfg: PyramidConfig, chain: int = 1) -> float:
        return self.band_floats(cfg, cfg.height, chain) / (cfg.height * cfg.width)

    def band_floats(self, cfg: PyramidConfig, rows: int, chain: int = 1) -> float:
        # the whole frame: each level's latents gathered and concatenated (a copy at level 0, a third of
        # that for the coarser ones); the band and its halo rows: the levels upsampled, their concatenation and
        # its channels-last copy, or a conv's input and output and GELU's temporary, or the 3x3 conv's input,
        # its tap planes and their padded copy and sums, then the colour conversion's planes and temporaries
        rows = min(cfg.height, rows + 2)
        c = cfg.view_channels + cfg.frame_channels
        per_row = max(3 * cfg.in_channels, cfg.in_channels + 2 * cfg.hidden, 3 * cfg.hidden, cfg.hidden + 66)
        return (3 * c * cfg.height + (per_row + COLOUR_FLOATS_PER_PIXEL) * rows) * cfg.width

    def describe(self, cfg: PyramidConfig) -> str:
        coarsest = "x".join(map(str, cfg.grid_size(cfg.levels - 1)))
        return (
            f"{cfg.levels} levels from {cfg.height}x{cfg.width} to {coarsest}, {cfg.view_channels} view and "
            f"{cfg.frame_channels} view-and-frame channels a level"
            + (f" from level {cfg.frame_skip}" if cfg.frame_skip else "")
            + f", synthesis width {cfg.hidden}"
        )
