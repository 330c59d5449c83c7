"""The MV-MGINR network: layouts, shapes, parameter counts, budgets, ablations, grid embedding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mvcodec.errors import InputError
from mvcodec.model import MVMGINR, ModelConfig, ablate, choose_layout, solve_config
from mvcodec.model.mginr import Block
from mvcodec.model.sizing import widths_for


def test_layouts_of_the_papers_frame_sizes():
    assert choose_layout(1080, 1920) == (9, 16, (5, 3, 2, 2, 2))
    assert choose_layout(720, 1280) == (9, 16, (5, 2, 2, 2, 2))


@pytest.mark.parametrize("height,width", [(36, 64), (96, 160), (50, 70), (100, 130), (64, 64), (180, 320)])
def test_layout_covers_any_even_size_with_little_padding(height, width):
    lh, lw, strides = choose_layout(height, width)
    up = math.prod(strides)
    assert lh * up >= height and lw * up >= width
    assert lh * up * lw * up <= 1.5 * height * width


@pytest.mark.parametrize("height,width", [(36, 64), (96, 160), (50, 70), (100, 130), (720, 1280)])
def test_output_shape_is_the_frame_size(height, width):
    lh, lw, strides = choose_layout(height, width)
    cfg = ModelConfig(3, 5, height, width, lh, lw, strides, widths_for(12, len(strides)), 4, 1)
    with torch.no_grad():
        out = MVMGINR(cfg)(torch.tensor([0, 2]), torch.tensor([4, 1]))
    assert out.shape == (2, 3, height, width)
    assert 0 <= float(out.min()) and float(out.max()) <= 1


@pytest.mark.parametrize("c1,c2", [(18, 2), (0, 5), (8, 0)])
def test_analytic_parameter_count_matches_the_module(c1, c2):
    cfg = ModelConfig(3, 7, 96, 160, 10, 16, (5, 2), (20, 16), c1, c2)
    model = MVMGINR(cfg)
    assert sum(p.numel() for p in model.parameters()) == cfg.params
    grids = sum(p.numel() for p in model.grids())
    split = cfg.param_split()
    assert grids == split["time_grid"] + split["view_grid"] + split["time_view_grid"]


@pytest.mark.parametrize(
    "views,frames,height,width,budget",
    [
        (2, 3, 36, 64, 20_000),
        (4, 8, 96, 160, 100_000),
        (4, 57, 720, 1280, 1_500_000),
        (14, 100, 1080, 1920, 6_000_000),
        (25, 100, 1080, 1920, 3_000_000),
        (3, 10, 100, 130, 40_000),
    ],
)
def test_budget_is_met_within_five_percent(views, frames, height, width, budget):
    cfg = solve_config(views, frames, height, width, budget)
    assert abs(cfg.params - budget) <= 0.05 * budget
    assert cfg.c1 > 0 and cfg.c2 > 0 and list(cfg.widths) == sorted(cfg.widths, reverse=True)


def test_impossible_budget_is_an_input_error():
    with pytest.raises(InputError, match="raise --params"):
        solve_config(25, 100, 1080, 1920, 2_000)


@pytest.mark.parametrize("without,zeroed", [("time_view", "c1"), ("time_view_grid", "c2")])
def test_ablations_keep_the_model_size(without, zeroed):
    cfg = solve_config(4, 57, 720, 1280, 1_500_000)
    ab = ablate(cfg, without)
    assert getattr(ab, zeroed) == 0
    assert abs(ab.params - cfg.params) <= 0.02 * cfg.params
    assert MVMGINR(ab)(torch.tensor([1]), torch.tensor([3])).shape == (1, 3, 720, 1280)


def test_grid_embedding_is_a_per_phase_bias_tiled_after_pixelshuffle():
    torch.manual_seed(0)
    block = Block(6, 4, 3, views=2, kernel=3)
    torch.nn.init.normal_(block.ge)
    x, view = torch.randn(2, 6, 5, 7), torch.tensor([1, 0])
    tiled = block.ge[view].repeat(1, 1, 5, 7)  # (B, C, s*5, s*7): GE[v, c, i, j] at rows i mod s, cols j mod s
    expected = F.gelu(F.pixel_shuffle(block.conv(x), 3) + tiled)
    torch.testing.assert_close(block(x, view), expected)


def test_latents_follow_the_time_and_view_indexing():
    cfg = ModelConfig(2, 5, 36, 64, 9, 16, (2, 2), (12, 12), 4, 2)
    m = MVMGINR(cfg)
    lat = m.latents(torch.tensor([1]), torch.tensor([3]))
    t0, t1 = m.time_grids
    expected = torch.cat([torch.cat([t0[3], t1[1]]) + m.view_grid[1], m.time_view_grid[1 * 5 + 3]])
    torch.testing.assert_close(lat[0], expected)
    assert t1.shape[0] == 3  # ceil(5 / 2)


def test_config_round_trips_through_json():
    cfg = solve_config(4, 8, 96, 160, 100_000)
    import json

    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**cfg.to_dict(), "extra": 1})
