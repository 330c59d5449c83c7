"""Choosing the latent size, strides and channel widths: frame layout and parameter-budget solving."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

from mvcodec.errors import InputError
from mvcodec.model.mginr import ModelConfig

TARGET_LATENT_CELLS = 9 * 16  # the MV-IERV lineage's 9x16 latent
MAX_BLOCKS = 6
WIDTH_REDUCTION = 1.2  # block i has max(round(c0 / 1.2^i), LOWER_WIDTH) channels (NeRV/HNeRV)
LOWER_WIDTH = 12
GRID_SHARE = 0.17  # grids' share of the parameters (the paper's Table V: 16-17%)
C1_PER_C2 = 9  # C1:C2 = 9:1


def choose_layout(height: int, width: int) -> tuple[int, int, tuple[int, ...]]:
    """(latent_h, latent_w, strides) covering a frame: 9x16 with 5,3,2,2,2 at 1080p and 5,2,2,2,2 at 720p.

    Other sizes: among non-increasing stride sequences of 2..5 (1 to 6 blocks), the one whose latent
    (ceil(H/S) x ceil(W/S)) is closest to 144 cells, with padding penalised; ties go to 5 blocks.
    """
    best = None
    for n in range(1, MAX_BLOCKS + 1):
        for strides in itertools.combinations_with_replacement((5, 4, 3, 2), n):
            up = math.prod(strides)
            lh, lw = math.ceil(height / up), math.ceil(width / up)
            waste = lh * lw * up * up / (height * width) - 1
            cost = 4 * waste + abs(math.log2(lh * lw / TARGET_LATENT_CELLS))
            key = (round(cost, 9), abs(n - 5), tuple(-s for s in strides))
            if best is None or key < best[0]:
                best = (key, (lh, lw, strides))
    return best[1]


def widths_for(c0: int, blocks: int) -> tuple[int, ...]:
    """Block widths shrinking with depth from c0."""
    return tuple(max(round(c0 / WIDTH_REDUCTION**i), LOWER_WIDTH) for i in range(blocks))


def _best_c0(base: ModelConfig, target: int) -> ModelConfig:
    """The config with the first-block width whose total parameter count is nearest `target`."""
    lo, hi = 1, 1 << 14
    while lo < hi:  # smallest c0 reaching the target
        mid = (lo + hi) // 2
        if replace(base, widths=widths_for(mid, len(base.strides))).params < target:
            lo = mid + 1
        else:
            hi = mid
    cands = [replace(base, widths=widths_for(c, len(base.strides))) for c in (max(lo - 1, 1), lo)]
    return min(cands, key=lambda c: abs(c.params - target))


def solve_config(views: int, frames: int, height: int, width: int, params: int) -> ModelConfig:
    """A config within 5% of `params` parameters, about GRID_SHARE of them in the grids (C1:C2 = 9:1)."""
    lh, lw, strides = choose_layout(height, width)
    hw = lh * lw
    per_c1 = ((frames + math.ceil(frames / 2)) / 2 + views) * hw + views * frames * hw / C1_PER_C2
    c1_goal = max(2, 2 * round(GRID_SHARE * params / per_c1 / 2))
    best = None
    for c1 in range(max(2, c1_goal // 2) & ~1, c1_goal * 2 + 2, 2):
        base = ModelConfig(
            views,
            frames,
            height,
            width,
            lh,
            lw,
            strides,
            widths_for(1, len(strides)),
            c1,
            max(1, round(c1 / C1_PER_C2)),
        )
        cfg = _best_c0(base, params)
        err = abs(cfg.params - params) / params
        key = (err > 0.01, abs(c1 - c1_goal), err)  # near the grid share, once within 1% of the budget
        if best is None or key < best[0]:
            best = (key, cfg)
    cfg = best[1]
    if abs(cfg.params - params) > 0.05 * params:
        raise InputError(
            f"a parameter budget of {params} cannot be met for {views} views x {frames} frames at "
            f"{width}x{height} (nearest model: {cfg.params}); raise --params or -q"
        )
    return cfg


def ablate(cfg: ModelConfig, without: str) -> ModelConfig:
    """The paper's grid ablations at (nearly) equal size: without="time_view" or "time_view_grid".

    The removed grid's parameters go to the remaining grid's channels (as the paper's Table IV).
    """
    if without == "time_view":
        options = [replace(cfg, c1=0, c2=c) for c in range(1, 4 * (cfg.c1 + cfg.c2) + 2)]
    elif without == "time_view_grid":
        options = [replace(cfg, c2=0, c1=c) for c in range(2, 8 * (cfg.c1 + cfg.c2) + 4, 2)]
    else:
        raise ValueError(f"unknown ablation {without!r}")
    nearest = min(options, key=lambda c: abs(c.params - cfg.params))
    if abs(nearest.params - cfg.params) <= 0.01 * cfg.params:
        return nearest
    return _best_c0(nearest, cfg.params)  # channel steps too coarse: let the synthesis width absorb the rest
