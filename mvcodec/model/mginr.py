"""The MV-MGINR network: multi-grid latents (time, view, time-and-view) and a PixelShuffle synthesis net.

For view v and frame t the input latent (c1 + c2 channels, latent_h x latent_w) is

    concat( concat(T0[t], T1[t // 2]) + V[v],  TV[v * frames + t] )

with T0 (frames slices) and T1 (ceil(frames / 2) slices) the two temporal levels of c1/2 channels each,
V the view grid (c1 channels) and TV the integrated time-and-view grid (c2 channels). c1 = 0 drops the
time and view grids, c2 = 0 the integrated grid (the paper's ablations). Each synthesis block is

    x <- GELU( PixelShuffle_s( Conv3x3(x) + GE[v] ) )

where GE (views, c_out, s, s) is a view-conditioned bias for every channel and sub-pixel phase; adding it
to the conv output before PixelShuffle is the same as tiling it over the upsampled map after. A 1x1 head
and a sigmoid give RGB in [0, 1]; the output is computed on the padded size and cropped to the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mvcodec.model import bands
from mvcodec.model.base import COLOUR_FLOATS_PER_PIXEL, ArchConfig, Architecture, ParamSpec, Role, Shape


@dataclass(frozen=True)
class ModelConfig(ArchConfig):
    """Everything needed to rebuild the network; stored in the stream."""

    latent_h: int
    latent_w: int
    strides: tuple[int, ...]  # PixelShuffle factor of each block
    widths: tuple[int, ...]  # output channels of each block
    c1: int  # channels of the time/view latent (each temporal level has c1 / 2); 0: no such grids
    c2: int  # channels of the integrated time-and-view grid; 0: no such grid
    kernel: int = 3

    def __post_init__(self) -> None:
        if len(self.strides) != len(self.widths) or not self.strides:
            raise ValueError("strides and widths must be non-empty and of equal length")
        if self.c1 % 2 or self.c1 < 0 or self.c2 < 0 or self.c1 + self.c2 == 0:
            raise ValueError(f"grid channels c1={self.c1} (even), c2={self.c2}: at least one must be positive")
        if self.padded_h < self.height or self.padded_w < self.width:
            raise ValueError("latent x strides does not cover the frame")

    @property
    def upscale(self) -> int:
        return math.prod(self.strides)

    @property
    def padded_h(self) -> int:
        return self.latent_h * self.upscale

    @property
    def padded_w(self) -> int:
        return self.latent_w * self.upscale

    def param_split(self) -> dict[str, int]:
        """Parameter count of each part: time grid, view grid, time-and-view grid, synthesis net."""
        hw = self.latent_h * self.latent_w
        synthesis, c_in = 0, self.c1 + self.c2
        for s, c_out in zip(self.strides, self.widths, strict=True):
            synthesis += (self.kernel**2 * c_in + 1 + self.views) * c_out * s * s  # conv, bias, GE
            c_in = c_out
        synthesis += 3 * c_in + 3  # head
        return {
            "time_grid": (self.frames + math.ceil(self.frames / 2)) * (self.c1 // 2) * hw,
            "view_grid": self.views * self.c1 * hw,
            "time_view_grid": self.views * self.frames * self.c2 * hw,
            "synthesis": synthesis,
        }

    @property
    def params(self) -> int:
        return sum(self.param_split().values())


def band_rows(cfg: ModelConfig, r0: int, r1: int) -> list[tuple[int, int]]:
    """The rows (lo, hi) of each block's input (then the head's) that output rows r0..r1 need: the block's
    conv output rows are those its PixelShuffle spreads over the rows after it, with the conv's halo."""
    need = [(r0, r1)]
    size = cfg.padded_h
    for s in reversed(cfg.strides):
        size //= s
        a, b = need[0]
        need.insert(0, bands.halo(a // s, -(-b // s), size, cfg.kernel))
    return need


def parameter_layout(cfg: ModelConfig) -> list[ParamSpec]:
    """Every parameter tensor, in stream order (bitstream_spec.md, "Parameter tensors and their order")."""
    h, w, k = cfg.latent_h, cfg.latent_w, cfg.kernel
    grid, conv, bias = Role.GRID, Role.CONV_WEIGHT, Role.BIAS
    out: list[ParamSpec] = []
    if cfg.c1:
        out += [
            ParamSpec("time_grids.0", (cfg.frames, cfg.c1 // 2, h, w), grid),
            ParamSpec("time_grids.1", (math.ceil(cfg.frames / 2), cfg.c1 // 2, h, w), grid),
            ParamSpec("view_grid", (cfg.views, cfg.c1, h, w), grid),
        ]
    if cfg.c2:
        out.append(ParamSpec("time_view_grid", (cfg.views * cfg.frames, cfg.c2, h, w), grid))
    c_in = cfg.c1 + cfg.c2
    for i, (s, c_out) in enumerate(zip(cfg.strides, cfg.widths, strict=True)):
        out += [
            ParamSpec(f"blocks.{i}.conv.weight", (c_out * s * s, c_in, k, k), conv),
            ParamSpec(f"blocks.{i}.conv.bias", (c_out * s * s,), bias),
            ParamSpec(f"blocks.{i}.ge", (cfg.views, c_out, s, s), grid),  # the grid embedding
        ]
        c_in = c_out
    return out + [ParamSpec("head.weight", (3, c_in, 1, 1), conv), ParamSpec("head.bias", (3,), bias)]


class Block(nn.Module):
    """Conv3x3 -> + grid embedding -> PixelShuffle -> GELU."""

    def __init__(self, c_in: int, c_out: int, stride: int, views: int, kernel: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(c_in, c_out * stride * stride, kernel, padding=kernel // 2)
        self.ge = nn.Parameter(torch.zeros(views, c_out, stride, stride))

    def forward(self, x: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.shuffle(self.conv(x), view))

    def shuffle(self, y: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """The conv's output `y` plus the grid embedding, PixelShuffled (before the GELU)."""
        bias = self.ge[view].flatten(1)[:, :, None, None]  # PixelShuffle channel order: c * s * s + i * s + j
        return F.pixel_shuffle(y + bias.to(y.dtype), self.stride)


class MVMGINR(nn.Module):
    """Maps (view, frame) index pairs to RGB frames (B, 3, height, width) in [0, 1]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        h, w, half = cfg.latent_h, cfg.latent_w, cfg.c1 // 2
        if cfg.c1:
            self.time_grids = nn.ParameterList(
                [nn.Parameter(torch.empty(n, half, h, w)) for n in (cfg.frames, math.ceil(cfg.frames / 2))]
            )
            self.view_grid = nn.Parameter(torch.empty(cfg.views, cfg.c1, h, w))
        if cfg.c2:
            self.time_view_grid = nn.Parameter(torch.empty(cfg.views * cfg.frames, cfg.c2, h, w))
        for p in self.grids():
            nn.init.xavier_uniform_(p)  # as MV-IERV
        c_in = cfg.c1 + cfg.c2
        blocks = []
        for s, c_out in zip(cfg.strides, cfg.widths, strict=True):
            blocks.append(Block(c_in, c_out, s, cfg.views, cfg.kernel))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c_in, 3, 1)

    def grids(self) -> list[nn.Parameter]:
        """The grid parameters, in stream order."""
        out = list(self.time_grids) + [self.view_grid] if self.cfg.c1 else []
        return out + [self.time_view_grid] if self.cfg.c2 else out

    def latents(self, view: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Input latents (B, c1 + c2, latent_h, latent_w) for index tensors view, frame of shape (B,)."""
        parts = []
        if self.cfg.c1:
            temporal = torch.cat([g[frame // 2**level] for level, g in enumerate(self.time_grids)], dim=1)
            parts.append(temporal + self.view_grid[view])
        if self.cfg.c2:
            parts.append(self.time_view_grid[view * self.cfg.frames + frame])
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(self, view: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        x = self.latents(view, frame)
        for block in self.blocks:
            x = block(x, view)
        rgb = torch.sigmoid(self.head(x))
        return rgb[..., : self.cfg.height, : self.cfg.width]

    def band_input(self, view: torch.Tensor, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What `band` synthesises rows from: the batch's input latents and views."""
        return self.latents(view, frame), view

    def band(self, inputs: tuple[torch.Tensor, torch.Tensor], r0: int, r1: int) -> torch.Tensor:
        """RGB rows r0..r1 (B, 3, r1 - r0, width) of the frames of `band_input`, each block run on the rows its
        successors need: within rounding of `forward`'s (PyTorch's convolutions sum by the input's size), the
        decoder's path where a whole frame does not fit its memory limit."""
        x, view = inputs
        need = band_rows(self.cfg, r0, r1)
        x = x[..., need[0][0] : need[0][1], :]
        size = self.cfg.latent_h
        for block, (a, b) in zip(self.blocks, need[1:], strict=True):
            s = block.stride
            c0, c1 = a // s, -(-b // s)
            y = block.shuffle(bands.conv_rows(x, block.conv, c0, c1, size), view)
            x = F.gelu(y[..., a - c0 * s : b - c0 * s, :])
            size *= s
        return torch.sigmoid(self.head(x))[..., : self.cfg.width]


MAX_BLOCKS = 16
MAX_WIDTH = 4096
ACTIVATION_GELU, OUTPUT_SIGMOID = 0, 0


class MVMGINRArchitecture(Architecture):
    """MV-MGINR in the stream: architecture id 0, coded in the ARCH chunk (bitstream_spec.md, section 6)."""

    id, name, config_type = 0, "mv-mginr", ModelConfig
    bands = True  # within rounding of the whole frame's (bitstream_spec.md section 14)

    def build(self, cfg: ModelConfig) -> MVMGINR:
        return MVMGINR(cfg)

    def layout(self, cfg: ModelConfig) -> list[ParamSpec]:
        return parameter_layout(cfg)

    def param_split(self, cfg: ModelConfig) -> dict[str, int]:
        return cfg.param_split()

    def params(self, cfg: ModelConfig) -> int:
        return cfg.params

    def config_bytes(self, cfg: ModelConfig, w) -> None:
        w.u16(cfg.views)
        w.u32(cfg.frames)
        w.u16(cfg.height)
        w.u16(cfg.width)
        w.u16(cfg.latent_h)
        w.u16(cfg.latent_w)
        w.u8(len(cfg.strides))
        for s, c in zip(cfg.strides, cfg.widths, strict=True):
            w.u8(s)
            w.u16(c)
        w.u16(cfg.c1)
        w.u16(cfg.c2)
        w.u8(cfg.kernel)
        w.u8(ACTIVATION_GELU)
        w.u8(OUTPUT_SIGMOID)

    def parse_config(self, r, shape: Shape) -> ModelConfig:
        views, frames, height, width, latent_h, latent_w = r.u16(), r.u32(), r.u16(), r.u16(), r.u16(), r.u16()
        r.check(views == shape.views, f"views = {views}, the sequence has {shape.views}")
        r.check(frames == shape.frames, f"frames = {frames}, the segment has {shape.frames}")
        r.check((height, width) == (shape.height, shape.width), f"size {width}x{height} is not the sequence's")
        n = r.u8()
        r.check(1 <= n <= MAX_BLOCKS, f"{n} blocks, must be 1 to {MAX_BLOCKS}")
        strides, widths = [], []
        for _ in range(n):
            s, c = r.u8(), r.u16()
            r.check(1 <= s <= 8, f"stride {s}, must be 1 to 8")
            r.check(1 <= c <= MAX_WIDTH, f"block width {c}, must be 1 to {MAX_WIDTH}")
            strides.append(s)
            widths.append(c)
        c1, c2, kernel, activation, output = r.u16(), r.u16(), r.u8(), r.u8(), r.u8()
        r.check(c1 % 2 == 0 and c1 + c2 > 0 and c1 <= MAX_WIDTH and c2 <= MAX_WIDTH, f"grid channels c1={c1}, c2={c2}")
        r.check(kernel % 2 == 1 and kernel <= 7, f"kernel {kernel}, must be odd, 1 to 7")
        r.check(activation == ACTIVATION_GELU, f"activation {activation} is not 0 (GELU)")
        r.check(output == OUTPUT_SIGMOID, f"output function {output} is not 0 (sigmoid)")
        up = math.prod(strides)
        r.check(
            0 <= latent_h * up - height < up and 0 <= latent_w * up - width < up,
            f"latent {latent_h}x{latent_w} x {up} does not cover {width}x{height} with less than one cell of padding",
        )
        return ModelConfig(
            views, frames, height, width, latent_h, latent_w, tuple(strides), tuple(widths), c1, c2, kernel
        )

    def size_for(self, shape: Shape, params: int) -> ModelConfig:
        from mvcodec.model.sizing import solve_config  # sizing builds on ModelConfig: imported on use

        return solve_config(shape.views, shape.frames, shape.height, shape.width, params)

    def macs_per_pixel(self, cfg: ModelConfig) -> float:
        macs, c_in, cells = 0, cfg.c1 + cfg.c2, cfg.latent_h * cfg.latent_w
        for s, c_out in zip(cfg.strides, cfg.widths, strict=True):
            macs += cells * cfg.kernel**2 * c_in * c_out * s * s  # each block's conv runs before its upsampling
            cells, c_in = cells * s * s, c_out
        macs += cells * 3 * c_in  # the 1x1 head on the padded frame
        return macs / (cfg.height * cfg.width)

    def decode_floats_per_pixel(self, cfg: ModelConfig, chain: int = 1) -> float:
        # the largest stage: its input, and its conv's output, that plus the grid embedding, the shuffle and
        # the GELU, two of them at once (over the padded frame, as the head and its sigmoid)
        cells, c_in = cfg.latent_h * cfg.latent_w, cfg.c1 + cfg.c2
        peak = 3 * cells * c_in  # the latents: the grids gathered, summed and concatenated
        for s, c_out in zip(cfg.strides, cfg.widths, strict=True):
            peak = max(peak, cells * c_in + 3 * cells * s * s * c_out)
            cells, c_in = cells * s * s, c_out
        peak = max(peak, cells * (c_in + 6))
        return peak / (cfg.height * cfg.width) + COLOUR_FLOATS_PER_PIXEL

    def band_floats(self, cfg: ModelConfig, rows: int, chain: int = 1) -> float:
        if rows >= cfg.height:
            return super().band_floats(cfg, rows, chain)
        # as the whole frame's, over the rows each stage computes for a band in the middle of the frame (its
        # input also copied with the conv's zero rows); the latents are gathered whole
        r0 = (cfg.height - rows) // 2
        need = band_rows(cfg, r0, r0 + rows)
        width, c_in = cfg.latent_w, cfg.c1 + cfg.c2
        peak = 3 * cfg.latent_h * width * c_in
        for s, c_out, (lo, hi), (a, b) in zip(cfg.strides, cfg.widths, need, need[1:], strict=False):
            conv_rows = -(-b // s) - a // s
            peak = max(peak, 2 * (hi - lo + cfg.kernel) * width * c_in + 3 * conv_rows * width * s * s * c_out)
            width, c_in = width * s, c_out
        return max(peak, rows * width * (c_in + 6)) + COLOUR_FLOATS_PER_PIXEL * rows * cfg.width

    def describe(self, cfg: ModelConfig) -> str:
        return (
            f"latent {cfg.latent_h}x{cfg.latent_w}, strides {','.join(map(str, cfg.strides))}, "
            f"widths {','.join(map(str, cfg.widths))}, grid channels c1={cfg.c1} c2={cfg.c2}"
        )
