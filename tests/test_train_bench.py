"""tools/train_bench.py end to end in a tiny configuration: presets, ablations and the training-path check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_format, write_video
from test_train import moving_square_source

TOOL = Path(__file__).resolve().parents[1] / "tools" / "train_bench.py"


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train_bench")
    src = moving_square_source(views=2, frames=3)
    for v in range(src.num_views):
        write_video(tmp / f"cam_{v}.mkv", list(src.frames(v)), make_format(), "ffv1")
    args = [str(tmp), "-s", "64x36", "-f", "3", "--presets", "fast", "--ablation-preset", "fast", "--epochs", "2"]
    proc = run_bench(*args, "--speed-check", "3", "--json", str(tmp / "rec.json"))
    assert proc.returncode == 0, proc.stderr
    return json.loads((tmp / "rec.json").read_text()), proc.stdout


@pytest.mark.slow
def test_presets_and_ablations_are_recorded(bench):
    rec, out = bench
    assert (rec["views"], rec["frames"], rec["device"]) == (2, 3, "cpu")
    (fast,) = rec["presets"]
    assert fast["epochs"] == 2 and fast["train_fps"] > 0
    full, *ablated = rec["ablations"]
    assert {k: v for k, v in full.items() if k != "run"} == {k: v for k, v in fast.items() if k != "run"}
    assert [a["run"] for a in ablated] == [
        "w/o time- and view-indexed grids",
        "w/o integrated time-and-view grid",
        "w/o motion mask",
    ]
    for a in ablated:  # equal size: within the 5% the size solver promises
        assert abs(a["params"] / full["params"] - 1) <= 0.05
    assert "| w/o motion mask |" in out


@pytest.mark.slow
def test_speed_check_compares_the_paths_on_the_same_model(bench):
    rec, out = bench
    rows = {r["key"]: r for r in rec["speed_check"]}
    assert list(rows) == ["bf16", "fp32", "fp32-no-tf32"]
    for r in rows.values():
        assert r["epochs"] == 3 and r["steady_fps"] > 0 and r["first_epoch_seconds"] > 0
        assert r["precision"] == "fp32" and r["peak_gpu_mib"] is None  # the CPU trains in float32 on every path
    # same seed, data and arithmetic on the CPU: the runs are the same run
    assert len({(r["psnr_yuv"], r["final_loss"]) for r in rows.values()}) == 1
    verdict = rec["speed_verdict"]
    assert verdict["speedup"] == pytest.approx(rows["bf16"]["steady_fps"] / rows["fp32"]["steady_fps"])
    assert verdict["psnr_yuv_delta"] == 0.0
    assert "CUDA path vs fp32 eager" in out and "on the CPU every path trains in float32" in out


def test_unknown_training_path_is_refused(tmp_path):
    proc = run_bench(str(tmp_path), "--speed-check", "2", "--speed-paths", "fp16")
    assert proc.returncode == 2 and "unknown path 'fp16'" in proc.stderr
