"""Multi-view sources: every input form yields the same views, frames and summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import SAMPLE_FILES, make_format, random_planes, run_tool, sample_views, write_forms

from mvcodec.cli import mvenc
from mvcodec.io import RawWriter, open_source


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    return write_forms(tmp_path_factory.mktemp("forms"))


def _open(args):
    """open_source() through the same option parsing as mvenc."""
    ctx = mvenc.make_context("mvenc", ["--dry-run", *args])
    p = ctx.params
    from mvcodec.cli import open_cli_source

    return open_cli_source(list(p["paths"]), p["size"], p["pix_fmt"], p["fps"], p["frames"], p["seek"], p["views"])


@pytest.mark.parametrize("form", ["miv", "stacked", "raw", "y4m", "mp4", "mkv"])
def test_every_form_yields_the_sample_frames(forms, form):
    fmt, views = sample_views()
    src = _open(forms[form])
    assert (src.fmt, src.num_views, src.num_frames) == (fmt, 4, 8)
    assert src.view_names == ["v0", "v1", "v2", "v3"]
    for v in (0, 3):
        for t in (0, 7, 2):
            for a, b in zip(src.read(v, t), views[v][t], strict=True):
                np.testing.assert_array_equal(a, b)
    src.close()


@pytest.mark.slow
def test_dry_run_summaries_are_identical_across_forms(forms, tmp_path):
    outputs = {}
    for form, args in forms.items():
        stats = tmp_path / f"{form}.json"
        r = run_tool("mvenc", "--dry-run", *args, "--stats", stats)
        assert r.returncode == 0, r.stderr
        outputs[form] = (r.stdout, json.loads(stats.read_text()))
    first = outputs["miv"]
    for form, out in outputs.items():
        assert out == first, form
    record = first[1]
    assert {k: record[k] for k in ("views", "frames", "width", "height", "pix_fmt", "fps", "view_names")} == {
        "views": 4,
        "frames": 8,
        "width": 160,
        "height": 96,
        "pix_fmt": "yuv420p10le",
        "fps": 30.0,
        "view_names": ["v0", "v1", "v2", "v3"],
    }
    assert "160x96" in first[0] and "yuv420p10le" in first[0] and "1474560 bytes" in first[0]


def test_miv_views_sort_numerically_not_lexically(tmp_path):
    fmt = make_format()
    for k in (0, 1, 2, 10, 11):
        with RawWriter(tmp_path / f"v{k}_texture_64x36_yuv420p.yuv", fmt) as w:
            w.write(random_planes(fmt, k))
    given = sorted(str(p) for p in tmp_path.iterdir())  # as a shell glob orders them: v0 v1 v10 v11 v2
    src = open_source(given)
    assert src.view_names == ["v0", "v1", "v2", "v10", "v11"]
    np.testing.assert_array_equal(src.read(3, 0).y, random_planes(fmt, 10).y)
    assert open_source([tmp_path]).view_names == src.view_names


def test_plain_files_keep_the_order_given_and_their_names(tmp_path):
    fmt = make_format()
    paths = []
    for name in ("left", "centre", "right"):
        paths.append(tmp_path / f"{name}.yuv")
        with RawWriter(paths[-1], fmt) as w:
            w.write(random_planes(fmt, len(paths)))
    src = open_source(paths, size=(64, 36))
    assert src.view_names == ["left", "centre", "right"]
    np.testing.assert_array_equal(src.read(1, 0).u, random_planes(fmt, 2).u)


def test_seek_and_frames_select_the_right_frames():
    src = open_source(SAMPLE_FILES, seek=3, frames=4)
    full = open_source(SAMPLE_FILES)
    assert src.num_frames == 4
    np.testing.assert_array_equal(src.read(2, 0).y, full.read(2, 3).y)
    np.testing.assert_array_equal(src.read(2, 3).v, full.read(2, 6).v)
    assert src.describe()["seek"] == 3 and src.raw_bytes == 4 * 4 * full.fmt.frame_bytes


def test_fps_option_overrides_and_reads_fractions():
    src = open_source(SAMPLE_FILES, fps=__import__("fractions").Fraction(30000, 1001))
    assert src.describe()["fps_fraction"] == "30000/1001"
    assert abs(src.describe()["fps"] - 29.97) < 1e-3


def test_narrow_pair_cuts_two_shifted_windows_of_one_view(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "narrow_pair.py"
    cmd = [sys.executable, str(tool), SAMPLE_FILES[0], tmp_path, "--size", "48x96", "--shift", "8", "-f", "2"]
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    pair = open_source(sorted(tmp_path.glob("v*.yuv")))
    src = open_source(SAMPLE_FILES[:1], frames=2)
    assert (pair.num_views, pair.num_frames, pair.fmt.width, pair.fmt.height) == (2, 2, 48, 96)
    assert pair.fmt.pix_fmt == src.fmt.pix_fmt  # the source's bit depth kept
    left, right = (next(iter(pair.frames(v))).y for v in (0, 1))
    full = next(iter(src.frames(0))).y
    x0 = (160 - 48 - 8) // 2 // 2 * 2  # windows of the full height, centred, 8 pixels apart (no scaling here)
    assert np.array_equal(left, full[:, x0 : x0 + 48]) and np.array_equal(right, full[:, x0 + 8 : x0 + 56])
    pair.close()
    src.close()
