"""tools/bdrate.py against exact cases and against an independent implementation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

from bdrate import Curve, bd_psnr, bd_rate, overlap  # noqa: E402

# Values printed by the `bjontegaard` package 1.3.0 (FAU-LMS, BSD-3; SciPy's PchipInterpolator and numpy's
# polyfit inside; its authors report its pchip equal to the JVET-T2010 spreadsheet to 10 decimals) for
# these curves, with require_matching_points=False:
#   bd.bd_rate(ar, ap, tr, tp, method=m, require_matching_points=False), and likewise bd.bd_psnr.
# "readme" is the package's own example (libx265 at two presets, measured by its authors).
INDEPENDENT = {
    "readme": (
        ([9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851]),
        ([9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987]),
        {"pchip": (-4.417485350589045, 0.11969278542479489), "cubic": (-4.420462706026296, 0.12040941911471303)},
    ),
    "shifted": (
        ([100, 200, 400, 800], [30.0, 33.1, 35.9, 38.2]),
        ([70, 150, 310, 650], [29.5, 32.8, 35.6, 38.4]),
        {"pchip": (-18.98289942313276, 0.8156818759112984), "cubic": (-19.105932997848228, 0.8143349967018302)},
    ),
    "crossing, unequal counts": (
        ([0.05, 0.1, 0.2, 0.4, 0.8], [27.0, 30.5, 33.2, 35.1, 36.4]),
        ([0.03, 0.06, 0.12, 0.25], [26.1, 29.9, 32.4, 33.0]),
        {"pchip": (-29.41361085924086, 0.969996737767397), "cubic": (-18.399538567303765, 1.0044334664828851)},
    ),
}


@pytest.mark.parametrize("name", INDEPENDENT)
@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_matches_independent_implementation(name, method):
    (ar, ap), (tr, tp), expected = INDEPENDENT[name]
    rate, psnr = expected[method]
    assert bd_rate(ar, ap, tr, tp, method) == pytest.approx(rate, abs=1e-9)
    assert bd_psnr(ar, ap, tr, tp, method) == pytest.approx(psnr, abs=1e-11)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_exact_cases(method):
    rates = [0.05, 0.11, 0.23, 0.52, 0.9]
    psnr = [28.1, 31.0, 33.7, 36.2, 37.5]
    # the same curve at 80% of the rate: -20% at every PSNR
    assert bd_rate(rates, psnr, [0.8 * r for r in rates], psnr, method) == pytest.approx(-20.0, abs=1e-9)
    # the same curve 0.5 dB higher: +0.5 dB at every rate
    assert bd_psnr(rates, psnr, rates, [p + 0.5 for p in psnr], method) == pytest.approx(0.5, abs=1e-12)
    assert bd_rate(rates, psnr, rates, psnr, method) == pytest.approx(0.0, abs=1e-12)
    # the order of the points does not matter
    assert bd_rate(rates[::-1], psnr[::-1], rates, [p + 0.3 for p in psnr], method) == pytest.approx(
        bd_rate(rates, psnr, rates, [p + 0.3 for p in psnr], method)
    )


def test_pchip_is_exact_on_a_line_and_keeps_shape():
    x = np.array([0.0, 1.0, 3.0, 4.0])
    line = Curve(x, 2 * x + 1, "pchip")
    assert line.integral(0.5, 3.5) == pytest.approx((3.5**2 + 3.5) - (0.5**2 + 0.5))
    # a step-like curve: monotone data give a monotone interpolant, so its integral stays inside the bounds
    step = Curve(x, np.array([0.0, 0.0, 1.0, 1.0]), "pchip")
    assert 0.0 < step.integral(1.0, 3.0) < 2.0
    assert step.integral(0.0, 1.0) == pytest.approx(0.0)


def test_errors():
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate([1, 2, 3, 4], [30, 31, 32, 33], [1, 2, 3, 4], [20, 21, 22, 23])
    with pytest.raises(ValueError, match="at least 4 points"):
        bd_rate([1, 2, 3], [30, 31, 32], [1, 2, 3], [30, 31, 32], "cubic")
    with pytest.raises(ValueError, match="positive"):
        bd_rate([0, 2], [30, 31], [1, 2], [30, 31])
    with pytest.raises(ValueError, match="unknown method"):
        bd_psnr([1, 2], [30, 31], [1, 2], [30, 31], "akima")
    with pytest.raises(ValueError, match="share the value"):
        bd_rate([1, 2, 3], [30, 30, 31], [1, 2, 3], [30, 30.5, 31])
    assert overlap([30, 34], [32, 36]) == pytest.approx(2 / 6)
    assert overlap([30, 31], [32, 36]) == 0.0


def test_command_line():
    out = subprocess.run(
        [sys.executable, str(TOOLS / "bdrate.py"), "--anchor", "100,200,400,800:30,33,36,39"]
        + ["--test", "80,160,320,640:30,33,36,39"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pchip: BD-rate -20.00%" in out and "cubic: BD-rate -20.00%" in out
