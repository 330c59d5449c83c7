"""MV-HiNeRV (bitstream_spec.md architecture 3): HiNeRV's network shared by all views, with feature grids of
their own for each view (Kwan et al., "Immersive Video Compression using Implicit Neural Representations",
2024; HiNeRV, 2023).

For view v and frame t:

1. **Base encoding.** Grid level l (0 <= l < grid_levels) holds, for each view, T_l = ceil((T - 1) / 2^l) + 1
   slices of grid_channels * 2^l channels at the base size (the frame's divided by the product of the
   strides, rounded up): the finer in time a level, the fewer its channels (HiNeRV's multi-resolution
   temporal grids). Each level is read at time t / 2^l, linearly between its two nearest slices; the levels
   are concatenated and a 3x3 stem convolution maps them to widths[0] channels.
2. **Blocks** n = 0 .. N-1 (HiNeRV blocks): the features are upsampled bilinearly by strides[n]; the block's
   local grids (local_levels levels of the same temporal layout, strides[n] x strides[n] cells each, read
   at time t as above and concatenated) go through a 1x1 convolution to the features' channels and are added
   at every position (Y mod s, X mod s) (HiNeRV's hierarchical encoding: a local grid indexed by the position
   inside the upsampled cell); then one ConvNeXt layer: a depthwise kernel x kernel convolution, a layer norm
   over the channels, a 1x1 convolution to expansion times the channels, GELU, a 1x1 convolution to
   widths[n + 1] channels, and the block's input added where the widths are equal.
3. **Head.** A 1x1 convolution to RGB and a sigmoid, cropped to the frame.

Every view has its own grids (base and local), the network's weights are shared by all views: MV-HiNeRV's
split, where the shared parameters carry most of the rate. Compressed as MV-MGINR is (HiNeRV's pipeline):
pruning, learned quantisation steps with Quant-Noise, the Gaussian entropy model and its rate term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mvcodec.model.base import ArchConfig, Architecture, ParamSpec, Role, Shape
from mvcodec.presets import HINERV_PRESETS

MAX_BLOCKS = 8
MAX_STRIDE = 8
MAX_WIDTH = 1024
MAX_GRID_LEVELS = 6
MAX_GRID_CHANNELS = 64
MAX_EXPANSION = 8
MAX_KERNEL = 9
NORM_EPS = 1e-6  # the layer norm's epsilon (bitstream_spec.md section 12.3)


def time_slices(frames: int, level: int) -> int:
    """Slices a view's temporal grid of this level holds: ceil((frames - 1) / 2^level) + 1."""
    return -(-(frames - 1) // 2**level) + 1


@dataclass(frozen=True)
class HiNeRVConfig(ArchConfig):
    strides: tuple[int, ...] = (2, 2, 2)  # each block's upsampling factor
    widths: tuple[int, ...] = (32, 32, 16, 8)  # the stem's output, then each block's
    grid_levels: int = 3  # base encoding: temporal levels
    grid_channels: int = 1  # ... channels of level 0 (level l has 2^l times as many)
    local_levels: int = 2  # hierarchical encoding: temporal levels of each block's local grids
    local_channels: tuple[int, ...] = (4, 4, 2)  # ... channels of level 0 of each block's (0: none in that block)
    kernel: int = 5  # the depthwise convolution's size
    expansion: int = 4  # the ConvNeXt layer's hidden channels, a multiple of its input's

    def __post_init__(self) -> None:
        n = len(self.strides)
        if not 1 <= n <= MAX_BLOCKS or len(self.widths) != n + 1 or len(self.local_channels) != n:
            raise ValueError(f"{n} blocks: 1 to {MAX_BLOCKS}, with one more width and as many local channels")
        if not all(1 <= s <= MAX_STRIDE for s in self.strides):
            raise ValueError(f"strides {self.strides}: each 1 to {MAX_STRIDE}")
        if self.upscale > max(self.height, self.width):
            raise ValueError(f"strides {self.strides}: their product is above the frame's larger side")
        if not all(1 <= w <= MAX_WIDTH for w in self.widths):
            raise ValueError(f"widths {self.widths}: each 1 to {MAX_WIDTH}")
        if not 1 <= self.grid_levels <= MAX_GRID_LEVELS or not 0 <= self.local_levels <= MAX_GRID_LEVELS:
            raise ValueError(
                f"grid levels {self.grid_levels}, local levels {self.local_levels}: 1 (0) to {MAX_GRID_LEVELS}"
            )
        if not 1 <= self.grid_channels <= MAX_GRID_CHANNELS or not all(
            0 <= c <= MAX_GRID_CHANNELS for c in self.local_channels
        ):
            raise ValueError(f"grid channels {self.grid_channels}, {self.local_channels}: 1 (0) to {MAX_GRID_CHANNELS}")
        if self.kernel % 2 == 0 or not 1 <= self.kernel <= MAX_KERNEL:
            raise ValueError(f"kernel {self.kernel}: odd, 1 to {MAX_KERNEL}")
        if not 1 <= self.expansion <= MAX_EXPANSION:
            raise ValueError(f"expansion {self.expansion}: 1 to {MAX_EXPANSION}")

    @property
    def upscale(self) -> int:
        return math.prod(self.strides)

    @property
    def base_size(self) -> tuple[int, int]:
        """(height, width) of the base grids: the frame's divided by the strides' product, rounded up."""
        return -(-self.height // self.upscale), -(-self.width // self.upscale)

    def block_size(self, n: int) -> tuple[int, int]:
        """(height, width) of block n's output (n = -1: the stem's)."""
        h, w = self.base_size
        s = math.prod(self.strides[: n + 1])
        return h * s, w * s

    def grid_shape(self, level: int) -> tuple[int, int]:
        """(rows, channels) of base grid level l: views x its slices, grid_channels * 2^l."""
        return self.views * time_slices(self.frames, level), self.grid_channels * 2**level

    def local_shape(self, n: int, level: int) -> tuple[int, int]:
        """(rows, channels) of block n's local grid of level l."""
        return self.views * time_slices(self.frames, level), self.local_channels[n] * 2**level

    def has_local(self, n: int) -> bool:
        return self.local_levels > 0 and self.local_channels[n] > 0

    @property
    def in_channels(self) -> int:
        return self.grid_channels * (2**self.grid_levels - 1)

    def local_in(self, n: int) -> int:
        """Channels of block n's local grids, all levels concatenated."""
        return self.local_channels[n] * (2**self.local_levels - 1)


def parameter_layout(cfg: HiNeRVConfig) -> list[ParamSpec]:
    """Every parameter tensor in stream order (bitstream_spec.md, section 10.2)."""
    grid, conv, bias = Role.GRID, Role.CONV_WEIGHT, Role.BIAS
    bh, bw = cfg.base_size
    out = [ParamSpec(f"grids.{lv}", (*cfg.grid_shape(lv), bh, bw), grid) for lv in range(cfg.grid_levels)]
    out += [
        ParamSpec("stem.weight", (cfg.widths[0], cfg.in_channels, 3, 3), conv),
        ParamSpec("stem.bias", (cfg.widths[0],), bias),
    ]
    k = cfg.kernel
    for n, s in enumerate(cfg.strides):
        c, c_out, hidden = cfg.widths[n], cfg.widths[n + 1], cfg.widths[n] * cfg.expansion
        b = f"blocks.{n}"
        if cfg.has_local(n):
            out += [
                ParamSpec(f"{b}.local.{lv}", (*cfg.local_shape(n, lv), s, s), grid) for lv in range(cfg.local_levels)
            ]
            out += [
                ParamSpec(f"{b}.enc.weight", (c, cfg.local_in(n), 1, 1), conv),
                ParamSpec(f"{b}.enc.bias", (c,), bias),
            ]
        out += [
            ParamSpec(f"{b}.dw.weight", (c, 1, k, k), conv),
            ParamSpec(f"{b}.dw.bias", (c,), bias),
            ParamSpec(f"{b}.norm.weight", (c,), bias),
            ParamSpec(f"{b}.norm.bias", (c,), bias),
            ParamSpec(f"{b}.pw1.weight", (hidden, c, 1, 1), conv),
            ParamSpec(f"{b}.pw1.bias", (hidden,), bias),
            ParamSpec(f"{b}.pw2.weight", (c_out, hidden, 1, 1), conv),
            ParamSpec(f"{b}.pw2.bias", (c_out,), bias),
        ]
    return out + [ParamSpec("head.weight", (3, cfg.widths[-1], 1, 1), conv), ParamSpec("head.bias", (3,), bias)]


def read_in_time(grid: torch.Tensor, view: torch.Tensor, frame: torch.Tensor, slices: int, level: int) -> torch.Tensor:
    """The batch's slices (B, channels, ...) of a temporal grid of `slices` slices a view, at time
    frame / 2^level: linearly between slices floor and floor + 1 (the one slice where it falls on it)."""
    step = 2**level
    i0 = frame // step
    frac = ((frame % step).to(grid.device, grid.dtype) / step).view(-1, *[1] * (grid.ndim - 1))
    rows = view * slices + i0
    nxt = view * slices + torch.clamp(i0 + 1, max=slices - 1)
    return grid[rows] * (1 - frac) + grid[nxt] * frac


def read_levels(grids, view: torch.Tensor, frame: torch.Tensor, frames: int) -> torch.Tensor:
    """Temporal grids of levels 0, 1, ... read at the batch's frames (read_in_time), concatenated along channels."""
    parts = [read_in_time(g, view, frame, time_slices(frames, level), level) for level, g in enumerate(grids)]
    return torch.cat(parts, dim=1)


class Block(nn.Module):
    """Bilinear upsampling, the hierarchical encoding added, a ConvNeXt layer."""

    def __init__(self, cfg: HiNeRVConfig, n: int):
        super().__init__()
        self.cfg, self.n, self.stride = cfg, n, cfg.strides[n]
        c, c_out, s = cfg.widths[n], cfg.widths[n + 1], cfg.strides[n]
        if cfg.has_local(n):
            self.local = nn.ParameterList(
                [nn.Parameter(torch.empty(*cfg.local_shape(n, lv), s, s)) for lv in range(cfg.local_levels)]
            )
            self.enc = nn.Conv2d(cfg.local_in(n), c, 1)
        self.dw = nn.Conv2d(c, c, cfg.kernel, padding=cfg.kernel // 2, groups=c)
        self.norm = nn.LayerNorm(c, eps=NORM_EPS)
        self.pw1 = nn.Conv2d(c, c * cfg.expansion, 1)
        self.pw2 = nn.Conv2d(c * cfg.expansion, c_out, 1)

    def encoding(self, view: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """The block's local encoding of the batch (B, channels, s, s), through its 1x1 convolution."""
        return self.enc(read_levels(self.local, view, frame, self.cfg.frames))

    def forward(self, x: torch.Tensor, view: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        s = self.stride
        if s > 1:
            x = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        if self.cfg.has_local(self.n):
            h, w = x.shape[-2:]
            x = x + self.encoding(view, frame).repeat(1, 1, h // s, w // s)
        y = self.dw(x)
        y = self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        y = self.pw2(F.gelu(self.pw1(y)))
        return y + x if y.shape[1] == x.shape[1] else y


class MVHiNeRV(nn.Module):
    """Maps (view, frame) index pairs to RGB frames (B, 3, height, width) in [0, 1]."""

    def __init__(self, cfg: HiNeRVConfig):
        super().__init__()
        self.cfg = cfg
        bh, bw = cfg.base_size
        self.grids = nn.ParameterList(
            [nn.Parameter(torch.empty(*cfg.grid_shape(lv), bh, bw)) for lv in range(cfg.grid_levels)]
        )
        self.stem = nn.Conv2d(cfg.in_channels, cfg.widths[0], 3, padding=1)
        self.blocks = nn.ModuleList([Block(cfg, n) for n in range(len(cfg.strides))])
        self.head = nn.Conv2d(cfg.widths[-1], 3, 1)
        for g in self.grid_tensors():
            nn.init.uniform_(g, -1e-3, 1e-3)  # as HiNeRV's grids

    def grid_tensors(self) -> list[nn.Parameter]:
        """Every grid of the network, base and local."""
        local = [g for b in self.blocks if self.cfg.has_local(b.n) for g in b.local]
        return [*self.grids, *local]

    def forward(self, view: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        x = self.stem(read_levels(self.grids, view, frame, cfg.frames))
        for block in self.blocks:
            x = block(x, view, frame)
        rgb = torch.sigmoid(self.head(x))
        return rgb[..., : cfg.height, : cfg.width]


class MVHiNeRVArchitecture(Architecture):
    """MV-HiNeRV in the stream: an ARCX chunk, architecture id 3 (bitstream_spec.md sections 6.1, 10.2, 12.3)."""

    id, name, config_type = 0x0003, "mv-hinerv", HiNeRVConfig
    # -q 4 at about 0.05 parameters a pixel of all views and frames (184k at 320x180 x 16 frames x 4 views),
    # HiNeRV's weights costing 4-6 bits each after QAT
    params_per_pixel_at_4 = 0.05
    min_params_at_4 = 20_000
    bits_per_param = 5.0
    lambda_at_4 = 512.0  # D is the MSE-scaled psnr-yuv loss, as MV-Pyramid-MC's
    # trained as the default architecture is, on the frames' mean PSNR-YUV, at HiNeRV's learning rate (2e-3 with
    # gradient-norm clipping at 1.0, TrainConfig's)
    train_defaults = {"lr": 2e-3, "loss": "psnr-yuv", "motion_weight": 0.0}
    # its grids at 10x the learning rate: HiNeRV trains for hundreds of epochs on a GPU, this CPU's budget is a
    # few dozen, and the grids learn what the network cannot in that time (BENCHMARKS.md, issue 16: +1.2 dB for
    # the float network after 20 epochs on the small cut)
    lr_scales = {Role.GRID: 10.0}
    sparsity = 0.15  # HiNeRV's: 15% of the weights pruned, by magnitude, before fine-tuning and QAT
    presets = HINERV_PRESETS

    def build(self, cfg: HiNeRVConfig) -> MVHiNeRV:
        return MVHiNeRV(cfg)

    def layout(self, cfg: HiNeRVConfig) -> list[ParamSpec]:
        return parameter_layout(cfg)

    def param_split(self, cfg: HiNeRVConfig) -> dict[str, int]:
        split = {"grids": 0, "local grids": 0, "network": 0}
        for p in self.layout(cfg):
            part = "grids" if p.name.startswith("grids") else "local grids" if ".local." in p.name else "network"
            split[part] += p.numel
        return split

    def config_bytes(self, cfg: HiNeRVConfig, w) -> None:
        w.u8(len(cfg.strides))
        for s in cfg.strides:
            w.u8(s)
        for c in cfg.widths:
            w.u16(c)
        w.u8(cfg.grid_levels)
        w.u8(cfg.grid_channels)
        w.u8(cfg.local_levels)
        for c in cfg.local_channels:
            w.u8(c)
        w.u8(cfg.kernel)
        w.u8(cfg.expansion)

    def parse_config(self, r, shape: Shape) -> HiNeRVConfig:
        n = r.u8()
        r.check(1 <= n <= MAX_BLOCKS, f"{n} blocks, must be 1 to {MAX_BLOCKS}")
        strides = tuple(r.u8() for _ in range(n))
        r.check(all(1 <= s <= MAX_STRIDE for s in strides), f"strides {strides}, each must be 1 to {MAX_STRIDE}")
        side = max(shape.height, shape.width)
        r.check(math.prod(strides) <= side, f"strides {strides}: their product is above the frame's larger side {side}")
        widths = tuple(r.u16() for _ in range(n + 1))
        r.check(all(1 <= c <= MAX_WIDTH for c in widths), f"widths {widths}, each must be 1 to {MAX_WIDTH}")
        grid_levels, grid_channels, local_levels = r.u8(), r.u8(), r.u8()
        r.check(1 <= grid_levels <= MAX_GRID_LEVELS, f"{grid_levels} grid levels, must be 1 to {MAX_GRID_LEVELS}")
        r.check(
            1 <= grid_channels <= MAX_GRID_CHANNELS, f"{grid_channels} grid channels, must be 1 to {MAX_GRID_CHANNELS}"
        )
        r.check(local_levels <= MAX_GRID_LEVELS, f"{local_levels} local levels, must be 0 to {MAX_GRID_LEVELS}")
        local = tuple(r.u8() for _ in range(n))
        r.check(all(c <= MAX_GRID_CHANNELS for c in local), f"local channels {local}, each 0 to {MAX_GRID_CHANNELS}")
        kernel, expansion = r.u8(), r.u8()
        r.check(kernel % 2 == 1 and kernel <= MAX_KERNEL, f"kernel {kernel}, must be odd, 1 to {MAX_KERNEL}")
        r.check(1 <= expansion <= MAX_EXPANSION, f"expansion {expansion}, must be 1 to {MAX_EXPANSION}")
        return HiNeRVConfig(
            *(shape.views, shape.frames, shape.height, shape.width),
            strides,
            widths,
            grid_levels,
            grid_channels,
            local_levels,
            local,
            kernel,
            expansion,
        )

    def size_for(self, shape: Shape, params: int) -> HiNeRVConfig:
        """Strides of 2 down to a base of at least 5 rows and columns (1 to 6 blocks), widths halving from the
        second block on to no fewer than 8, three base levels of one channel and two local levels of an
        eighth of the block's width; the stem's width is the largest whose count stays within `params`
        (the smallest, 8, where none does)."""
        stages = max(1, min(6, int(math.log2(max(1.0, min(shape.height, shape.width) / 5)))))

        def config(c0: int) -> HiNeRVConfig:
            widths = [c0, c0] + [max(8, c0 >> n) for n in range(1, stages)]
            local = tuple(max(1, w // 8) for w in widths[:stages])
            return HiNeRVConfig(
                shape.views, shape.frames, shape.height, shape.width, (2,) * stages, tuple(widths), 3, 1, 2, local
            )

        best = config(8)
        for c0 in range(8, MAX_WIDTH + 1, 4):
            cfg = config(c0)
            if self.params(cfg) > params:
                break
            best = cfg
        return best

    def macs_per_pixel(self, cfg: HiNeRVConfig) -> float:
        """The stem at the base size; each block at its output size: the upsampling (4 a value), the local
        encoding's addition, the depthwise convolution, the layer norm (about 4 a value) and the two 1x1
        convolutions; the head on the padded frame. The grids' temporal reads and the local encodings'
        1x1 convolutions (once a frame, on s x s cells) are left out."""
        bh, bw = cfg.base_size
        macs = bh * bw * 9 * cfg.in_channels * cfg.widths[0]
        for n, s in enumerate(cfg.strides):
            h, w = cfg.block_size(n)
            c, hidden = cfg.widths[n], cfg.widths[n] * cfg.expansion
            per_cell = (4 if s > 1 else 0) + (1 if cfg.has_local(n) else 0) + cfg.kernel**2 + 4
            macs += h * w * (c * per_cell + c * hidden + hidden * cfg.widths[n + 1])
        h, w = cfg.block_size(len(cfg.strides) - 1)
        return (macs + h * w * 3 * cfg.widths[-1]) / (cfg.height * cfg.width)

    def describe(self, cfg: HiNeRVConfig) -> str:
        bh, bw = cfg.base_size
        return (
            f"base {bh}x{bw}, {cfg.grid_levels} grid levels of {cfg.grid_channels}+ channels a view, strides "
            f"{','.join(map(str, cfg.strides))}, widths {','.join(map(str, cfg.widths))}, local grids of "
            f"{cfg.local_levels} levels ({','.join(map(str, cfg.local_channels))} channels), ConvNeXt kernel "
            f"{cfg.kernel}, expansion {cfg.expansion}"
        )
