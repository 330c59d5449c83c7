"""MV-Pyramid-MC (mvenc's default architecture, bitstream_spec.md architecture 2): MV-Pyramid whose
view-and-frame latents are predicted along time by motion compensation in the latent domain, as a P-frame
codec predicts pixels, while any frame stays decodable on its own (no other frame is synthesised to make it).

Frame t of view v carries a motion field M[v * frames + t] (2 channels, x then y, in quarter pixels of the
frame, at the grid size of level flow_level; frame 0's is unused) and, at each level l with view-and-frame
grids, a residual FG_l[v * frames + t]. The level's latents of frame t are

    Z_l(0) = FG_l[v * frames]
    Z_l(t) = warp(Z_l(t - 1), M[v * frames + t]) + FG_l[v * frames + t]

where warp samples bilinearly (border values outside) at each cell centre moved by the motion field,
upsampled bilinearly (align_corners=False) to the level's size: the cell at (i, j) reads Z_l(t - 1) at
normalised coordinates (2 (j + 1/2) / w - 1 + 2 mx / W, 2 (i + 1/2) / h - 1 + 2 my / H), mx, my the motion in
pixels, W x H the frame size (torch grid_sample, align_corners=False). The view grids and the synthesis
are MV-Pyramid's. The encoder starts the motion fields from optical flow between the source's frames
(DIS, OpenCV) and trains them with everything else; they are coded as latents, context by the previous
frame's motion and by the decoded neighbours in the same frame, each context under a Laplace distribution
located at the median of those neighbours (model_mode 6: mostly zero with a heavy tail, which a Gaussian
prices badly, and smooth where things move; BENCHMARKS.md, issue 14, experiments 25 and 31).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvcodec.model.base import ParamSpec, Role, Shape
from mvcodec.model.pyramid import MAX_LEVELS, MVPyramid, MVPyramidArchitecture, PyramidConfig
from mvcodec.presets import PYRAMID_MC_PRESETS

MOTION_UNIT = 0.25  # pixels per motion symbol


@dataclass(frozen=True)
class PyramidMCConfig(PyramidConfig):
    flow_level: int = 4  # the motion fields have the grid size of this level (4: 1/16 of the frame a side)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.flow_level < MAX_LEVELS:
            raise ValueError(f"flow_level = {self.flow_level}, must be 0 to {MAX_LEVELS - 1}")
        if not self.frame_channels:
            raise ValueError("motion compensation needs view-and-frame channels (frame_channels >= 1)")

    @classmethod
    def of(cls, cfg: PyramidConfig, flow_level: int) -> PyramidMCConfig:
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cfg)}, flow_level=flow_level)


class MVPyramidMC(MVPyramid):
    """MV-Pyramid with the view-and-frame latents chained along time through motion fields."""

    def __init__(self, cfg: PyramidMCConfig):
        super().__init__(cfg)
        self.flows = nn.Parameter(torch.zeros(cfg.views * cfg.frames, 2, *cfg.grid_size(cfg.flow_level)))
        self._chains: dict[tuple, tuple[int, torch.Tensor]] | None = None  # keep_chains()

    def frame_part(self, level, view, frame, index, rows):
        cfg = self.cfg
        grids = self.frame_grids[str(level)]
        pairs = list(zip(view.tolist(), frame.tolist(), strict=True))
        found: dict[tuple[int, int], torch.Tensor] = {}
        for v in dict.fromkeys(u for u, _ in pairs):  # one chain a view, to the batch's last frame of it
            wanted = {t for u, t in pairs if u == v}
            run = torch.arange(v * cfg.frames, v * cfg.frames + max(wanted) + 1, device=grids.device)
            if rows is not None:
                run = torch.searchsorted(rows, run)
            keep = self._chains is not None and rows is None
            mode = (torch.is_inference_mode_enabled(), torch.is_grad_enabled())
            start = self._chains.get((level, v, mode)) if keep else None
            if start is not None and start[0] > min(wanted):
                start = None  # the decoder went back in time: from frame 0 again
            for t, z in self._chain(grids, run, wanted, start):
                found[v, t] = z
                if keep:
                    self._chains[level, v, mode] = (t, z)
        return torch.cat([found[p] for p in pairs])

    def keep_chains(self) -> None:
        """Remember each view's last chained latents between calls, so that frames asked for in order cost one
        warp each instead of a chain from frame 0: for a decoder's network, whose parameters no longer change
        (moving the network to another device or dtype forgets them; so does a call in another grad or
        inference mode, which keeps its own)."""
        self._chains = {}

    def _apply(self, fn, recurse=True):
        if self._chains:
            self._chains = {}
        return super()._apply(fn, recurse)

    def _chain(self, grids: torch.Tensor, run: torch.Tensor, wanted: set[int], start=None):
        """Z(t) for each t in `wanted` of one view's run of rows (frames 0..max(wanted)), as (t, Z(t)): each
        frame's residual added to the previous Z warped by the frame's motion; from `start` = (s, Z(s)) where
        a Z is already known."""
        first = start[0] if start is not None else 0
        run = run[first:]
        residuals = grids[run].unbind(0)  # one gather (and one scatter back) for the whole run
        z = start[1] if start is not None else residuals[0].unsqueeze(0)
        if first in wanted:
            yield first, z
        if len(run) == 1:
            return
        h, w = grids.shape[-2:]
        cfg = self.cfg
        motion = F.interpolate(self.flows[run[1:]].contiguous(), size=(h, w), mode="bilinear", align_corners=False)
        scale = torch.tensor([2 * MOTION_UNIT / cfg.width, 2 * MOTION_UNIT / cfg.height], device=grids.device)
        ys = (torch.arange(h, device=grids.device, dtype=grids.dtype) + 0.5) * (2 / h) - 1
        xs = (torch.arange(w, device=grids.device, dtype=grids.dtype) + 0.5) * (2 / w) - 1
        base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (h, w, 2): x, y
        # unbound once: a slice a warp would give the whole run's zero gradient back at every step of the chain
        samples = (base + motion.permute(0, 2, 3, 1) * scale).unbind(0)
        for s in range(1, len(run)):
            grid = samples[s - 1].unsqueeze(0)
            warped = F.grid_sample(z, grid, mode="bilinear", padding_mode="border", align_corners=False)
            z = warped + residuals[s].unsqueeze(0)
            if first + s in wanted:
                yield first + s, z

    @torch.no_grad()
    def init_flows(self, flow: np.ndarray) -> None:
        """Start the motion fields from per-pixel backward flow (views * frames, height, width, 2) in pixels
        (frame t's pixel (x, y) seen at (x + fx, y + fy) in frame t - 1; frame 0's ignored): averaged to
        the motion grid and rounded to its unit."""
        h, w = self.flows.shape[-2:]
        f = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(0, 3, 1, 2)
        f = F.interpolate(f, size=(h, w), mode="area") / MOTION_UNIT
        f[:: self.cfg.frames] = 0
        self.flows.copy_(torch.round(f).to(self.flows))


class MVPyramidMCArchitecture(MVPyramidArchitecture):
    """MV-Pyramid-MC in the stream: architecture id 2, MV-Pyramid's config fields, then flow_level (u8)
    (bitstream_spec.md sections 6.1, 10.1, 12.2; 0x8002, its private-use id while it was experimental, still
    decodes)."""

    id, name, config_type = 0x0002, "mv-pyramid-mc", PyramidMCConfig
    legacy_ids = (0x8002,)
    chain = True
    # the motion fields coded under a Laplace per context (model_mode 4): mostly 0, with a heavy tail where
    # things move, which a Gaussian prices 34-45% too high (BENCHMARKS.md, issue 14, experiment 25)
    motion_laplace = True
    # ... and in model_mode 6 rather than 4: decoded in mode 5's sub-lattices, each symbol's Laplace distribution
    # located at the median of its decoded neighbours (BENCHMARKS.md, issue 14, experiment 31)
    motion_phased = True
    # Quant-Noise's mix, as before experiment 23 (BENCHMARKS.md, issue 14): the noise proxy was neutral here;
    # the rate term prices a batch's own frames, not the chain it reads (experiment 25: the same RD, 20% less time)
    # every value rounded from half of QAT on (experiment 33: +0.02 to +0.18 dB on five runs, 8% cheaper steps)
    train_defaults = {
        **MVPyramidArchitecture.train_defaults,
        "latent_proxy": "mixed",
        "price_frames": True,
        "noise_ramp": 0.5,
        # trained on the frames' mean PSNR-YUV, the figure the RD tables report, rather than the MSE of YUV 6:1:1, which
        # weighed chroma 3-4 times less than the metric does at 320x180 (BENCHMARKS.md, issue 14, experiment 35: +1.2
        # dB BD-PSNR on both caliscope sessions; PSNR-Y -0.3 dB, chroma +5 dB)
        "loss": "psnr-yuv",
        # Adam's second moment over about the last 100 steps rather than 1000: the gradients shrink several-fold
        # over QAT, and a long memory of the early ones shrinks the late steps with them (BENCHMARKS.md, issue 14,
        # experiment 41: +0.09 dB on the small cut over three seeds, +0.15 dB over the 320x180 ladders)
        "adam_beta2": 0.99,
    }
    # the latents at 15x the learning rate, half MV-Pyramid's 30x: a residual moves every later frame of its chain
    # (BENCHMARKS.md, issue 14, experiment 28: +0.4 dB average BD-PSNR at 320x180, +1.9 dB on the small cut)
    lr_scales = {Role.LATENT: 15.0}
    # the latent grids' contexts refined by their decoded neighbours (model_mode 5): BENCHMARKS.md, issue 14,
    # experiment 29
    phased_latents = True
    # their tables of (mean, std) pairs compact: contexts that do not occur left out, 8-bit codes for the rest (spec
    # section 7.7; BENCHMARKS.md, issue 14, experiment 39)
    compact_tables = True
    # `medium` (7 + 63 epochs, the default) takes 316-367 s a point at 320x180 x 16 frames x 4 views on a 2-core
    # CPU, inside the budget of 1.5x 250 s (experiment 30; 5 + 45 took 212-228 s)
    presets = PYRAMID_MC_PRESETS
    # a segment under 64 views x frames trains up to twice its preset's epochs, so that its view grids and synthesis
    # take about a reference segment's steps (the small cut, 4 views x 8 frames: +0.45 dB over three seeds at twice
    # its time; BENCHMARKS.md, issue 14, experiment 44)
    short_segment_scale = 2.0

    def build(self, cfg: PyramidMCConfig) -> MVPyramidMC:
        return MVPyramidMC(cfg)

    def layout(self, cfg: PyramidMCConfig) -> list[ParamSpec]:
        out = super().layout(cfg)
        first_frame = next(i for i, p in enumerate(out) if p.name.startswith("frame_grids"))
        shape = (cfg.views * cfg.frames, 2, *cfg.grid_size(cfg.flow_level))
        flows = ParamSpec(
            "flows",
            shape,
            Role.LATENT,
            "frame",
            laplace=self.motion_laplace,
            phased=self.motion_laplace and self.motion_phased,
            compact=self.compact_tables,
        )
        return out[:first_frame] + [flows] + out[first_frame:]

    def param_split(self, cfg: PyramidMCConfig) -> dict[str, int]:
        split = {"view_grids": 0, "frame_grids": 0, "motion": 0, "synthesis": 0, "entropy model": 0}
        for p in self.layout(cfg):
            part = p.name.split(".")[0] if p.role is Role.LATENT else "synthesis"
            split["entropy model" if p.role is Role.ARM else "motion" if part == "flows" else part] += p.numel
        if not cfg.arm_hidden:
            del split["entropy model"]
        return split

    def config_bytes(self, cfg: PyramidMCConfig, w) -> None:
        self.fields_bytes(cfg, w)
        w.u8(cfg.flow_level)
        if cfg.arm_hidden:
            w.u8(cfg.arm_hidden)

    def parse_config(self, r, shape: Shape) -> PyramidMCConfig:
        return self.with_arm(replace(self.parse_fields(r, shape), flow_level=r.u8()), r)

    def size_for(self, shape: Shape, params: int) -> PyramidMCConfig:
        """MV-Pyramid's sizing (the motion fields are a small share), motion at 1/16 of the frame a side
        (1/8 cost 32% more rate for +0.2 dB: BENCHMARKS.md, issue 14, experiment 18)."""
        return PyramidMCConfig.of(MVPyramidArchitecture().size_for(shape, params), 4)

    def band_floats(self, cfg: PyramidMCConfig, rows: int, chain: int = 1) -> float:
        # MV-Pyramid's, and a chain through `chain` frames at each level (at most 4/3 of the frame's pixels in
        # all): the run's latents gathered, its motion upsampled, scaled and added to the sampling grid (two
        # values a pixel each), the grid, and the warped and summed latents of one step
        c = cfg.frame_channels
        chained = 4 / 3 * (chain * (c + 6) + 4 * c + 2) * cfg.height * cfg.width
        return super().band_floats(cfg, rows) + chained

    def macs_per_pixel(self, cfg: PyramidMCConfig) -> float:
        """MV-Pyramid's, plus the chain's warps averaged over the frames: (frames - 1) / 2 bilinear samples
        (4 taps) of each view-and-frame channel at each level, and the motion's upsampling to each level,
        per cell of the level (a quarter of the previous level's)."""
        chained = (cfg.frames - 1) / 2
        per_level = chained * (4 * cfg.frame_channels + 2 * 4)
        warps = sum(per_level / 4**level for level in cfg.frame_levels())
        return super().macs_per_pixel(cfg) + warps

    def describe(self, cfg: PyramidMCConfig) -> str:
        h, w = cfg.grid_size(cfg.flow_level)
        return super().describe(cfg) + f", view-and-frame latents chained along time by {w}x{h} motion fields"
