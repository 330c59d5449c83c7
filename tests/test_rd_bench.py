"""tools/rd_bench.py end to end on the bundled sample, in a tiny configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SAMPLE_FILES

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

from rd_bench import bd_table  # noqa: E402


@pytest.fixture(scope="module")
def rd_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rd")
    args = [*map(str, SAMPLE_FILES), "-f", "2", "-q", "1,3", "--preset", "fast"]
    args += ["--mvenc-args", "--arch mv-mginr --epochs 2 --prune-epochs 1 --qat-epochs 1", "--crf", "30,40,51"]
    args += ["--x265-presets", "medium", "--svt-crf", "40,55", "--work", str(out / "work")]
    args += ["--json", str(out / "rd.json"), "--plot", str(out / "rd.png"), "--quiet"]
    proc = subprocess.run(
        [sys.executable, str(TOOLS / "rd_bench.py"), *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    return out, json.loads((out / "rd.json").read_text()), proc


@pytest.mark.slow
def test_every_codec_is_measured_the_same_way(rd_run):
    out, rec, proc = rd_run
    src = rec["source"]
    assert (src["views"], src["frames"], src["size"], src["pix_fmt"]) == (4, 2, "160x96", "yuv420p10le")
    assert list(rec["runs"]) == ["mvcodec", "x265-medium", "x265-medium-mv", "svtav1"]
    pixels = 4 * 2 * 160 * 96
    for run in rec["runs"].values():
        for p in run["points"]:
            assert p["bpp"] == pytest.approx(8 * p["bytes"] / pixels)
            assert p["psnr_yuv"] == pytest.approx((6 * p["psnr_y"] + p["psnr_u"] + p["psnr_v"]) / 8)
            assert 0 < p["ssim"] <= 1 and p["decode_fps"] > 0 and p["decoder_peak_mib"] > 1
    x265 = rec["runs"]["x265-medium"]["points"]
    assert x265[0]["bytes"] > x265[1]["bytes"] > x265[2]["bytes"]  # CRF 30 > 40 > 51
    assert x265[0]["psnr_yuv"] > x265[1]["psnr_yuv"] > x265[2]["psnr_yuv"]
    assert "x265 medium simulcast | 30 |" in proc.stdout and "mvcodec vs" in proc.stdout
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_mvcodec_points_are_the_files_mvenc_wrote(rd_run):
    out, rec, _ = rd_run
    for p, q in zip(rec["runs"]["mvcodec"]["points"], ("1", "3"), strict=True):
        stream = out / "work" / f"mvcodec_q{q}.mvinr"
        assert p["bytes"] == stream.stat().st_size
        # mvenc measured its own stream in-process; rd_bench measured the files mvdec wrote
        stats = json.loads((out / "work" / f"mvcodec_q{q}.json").read_text())
        assert p["psnr_yuv"] == pytest.approx(stats["psnr_yuv"], abs=1e-9)
        assert p["ssim"] == pytest.approx(stats["ssim"], abs=1e-9)


def test_bd_table_says_why_a_figure_is_missing():
    def run(points):
        return {"label": "x", "points": [{"bpp": r, "psnr_yuv": p} for r, p in points]}

    runs = {
        "mvcodec": run([(0.1, 25.0), (0.2, 26.0), (0.4, 27.0), (0.8, 28.0)]),
        "near": run([(0.08, 25.0), (0.16, 26.0), (0.32, 27.0), (0.64, 28.0)]),
        "far": run([(0.1, 35.0), (0.2, 37.0), (0.4, 39.0), (0.8, 41.0)]),
    }
    table = bd_table(runs, "psnr_yuv")
    assert table["near"]["bd_rate_pchip"] == pytest.approx(25.0) and table["near"]["psnr_gap"] is None
    assert table["far"]["bd_rate_pchip"] is None and "do not overlap" in table["far"]["bd_rate_pchip_why"]
    assert table["far"]["psnr_gap"] == pytest.approx(7.0)  # the anchor's worst, 35 dB, over mvcodec's best
    assert table["far"]["bd_psnr_pchip"] == pytest.approx(-11.5)  # 10, 11, 12, 13 dB below, linear in log rate


@pytest.mark.slow
def test_rd_table_renders_a_record(rd_run):
    out, rec, _ = rd_run
    proc = subprocess.run(
        [sys.executable, str(TOOLS / "rd_table.py"), str(out / "rd.json")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "### BD-rate and BD-PSNR (PCHIP), per sequence and average" in text
    assert "| data | medium |" in text  # x265's one-stream gain, for the sample's directory "data"
    assert text.count("| data | mvcodec | q:") == 2
