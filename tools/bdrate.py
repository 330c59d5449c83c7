"""Bjontegaard delta rate and delta PSNR between two rate-distortion curves.

    from bdrate import bd_rate, bd_psnr
    bd_rate(anchor_rate, anchor_psnr, test_rate, test_psnr)            # percent; negative: the test saves bits
    bd_psnr(anchor_rate, anchor_psnr, test_rate, test_psnr)            # dB; positive: the test is better
    bd_rate(..., method="cubic")                                        # VCEG-M33's cubic polynomial fit

Both curves are interpolated in the log-rate domain and the gap between them is averaged over the interval
where they overlap (PSNR for BD-rate, log-rate for BD-PSNR):
  - "pchip" (the default): piecewise cubic Hermite interpolation through the points with Fritsch-Carlson
    slopes, as in the JCT-VC/JVET common-test-conditions spreadsheets (JCTVC-L1100, JVET-T2010);
  - "cubic": one least-squares cubic polynomial per curve, as in Bjontegaard's VCEG-M33 (needs 4 points).
Rates may be in any unit (bpp, kbps) as long as both curves use the same one.

Run as a script to compute the figures of two curves given on the command line:
    python tools/bdrate.py --anchor 100,200,400,800:30,33,36,39 --test 90,180,350,700:30,33,36,39
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METHODS = ("pchip", "cubic")


class Curve:
    """y(x) through sorted points, by one of METHODS, with its exact integral."""

    def __init__(self, x: np.ndarray, y: np.ndarray, method: str):
        order = np.argsort(x)
        self.x, self.y = x[order], y[order]
        if np.any(np.diff(self.x) <= 0):
            raise ValueError(f"two points share the value {self.x[np.argmin(np.diff(self.x))]:.6g}; drop one")
        self.method = method
        if method == "cubic":
            self.poly = np.polyint(np.polyfit(self.x, self.y, 3))
        else:
            self.slopes = pchip_slopes(self.x, self.y)

    def integral(self, lo: float, hi: float) -> float:
        if self.method == "cubic":
            return float(np.polyval(self.poly, hi) - np.polyval(self.poly, lo))
        total = 0.0
        for k in range(len(self.x) - 1):
            x0, x1 = self.x[k], self.x[k + 1]
            a, b = max(lo, x0), min(hi, x1)
            if b > a:
                h = x1 - x0
                total += h * (
                    hermite_area((b - x0) / h, self.y[k], self.y[k + 1], self.slopes[k] * h, self.slopes[k + 1] * h)
                    - hermite_area((a - x0) / h, self.y[k], self.y[k + 1], self.slopes[k] * h, self.slopes[k + 1] * h)
                )
        return total


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson slopes: weighted harmonic means inside, zero at extrema, the shape-preserving
    three-point formula at the ends (Fritsch and Butland, 1984; what MATLAB's and SciPy's pchip use)."""
    h = np.diff(x)
    m = np.diff(y) / h
    if len(x) == 2:
        return np.array([m[0], m[0]])
    d = np.zeros_like(y)
    for k in range(1, len(x) - 1):
        if m[k - 1] * m[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])
    d[0] = end_slope(h[0], h[1], m[0], m[1])
    d[-1] = end_slope(h[-1], h[-2], m[-1], m[-2])
    return d


def end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > 3 * abs(m0):
        return 3 * m0
    return d


def hermite_area(s: float, y0: float, y1: float, t0: float, t1: float) -> float:
    """Integral over t in [0, s] of the cubic Hermite basis combination on the unit interval."""
    s2, s3, s4 = s * s, s**3, s**4
    return y0 * (s4 / 2 - s3 + s) + t0 * (s4 / 4 - 2 * s3 / 3 + s2 / 2) + y1 * (-s4 / 2 + s3) + t1 * (s4 / 4 - s3 / 3)


def _points(rate: Sequence[float], psnr: Sequence[float], method: str, who: str) -> tuple[np.ndarray, np.ndarray]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    r = np.asarray(rate, dtype=np.float64)
    p = np.asarray(psnr, dtype=np.float64)
    if r.ndim != 1 or r.shape != p.shape:
        raise ValueError(f"{who}: rate and PSNR must be two lists of the same length")
    need = 4 if method == "cubic" else 2
    if len(r) < need:
        raise ValueError(f"{who}: the {method} method needs at least {need} points, got {len(r)}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(p)) and np.all(r > 0)):
        raise ValueError(f"{who}: rates must be positive and every value finite")
    return np.log10(r), p


def _delta(xa: np.ndarray, ya: np.ndarray, xt: np.ndarray, yt: np.ndarray, method: str, axis: str) -> float:
    lo, hi = max(xa.min(), xt.min()), min(xa.max(), xt.max())
    if hi <= lo:
        raise ValueError(
            f"the curves do not overlap in {axis}: anchor {xa.min():.4g} to {xa.max():.4g}, "
            f"test {xt.min():.4g} to {xt.max():.4g}"
        )
    return (Curve(xt, yt, method).integral(lo, hi) - Curve(xa, ya, method).integral(lo, hi)) / (hi - lo)


def bd_rate(anchor_rate, anchor_psnr, test_rate, test_psnr, method: str = "pchip") -> float:
    """Average rate difference of the test against the anchor at equal PSNR, in percent."""
    la, pa = _points(anchor_rate, anchor_psnr, method, "anchor")
    lt, pt = _points(test_rate, test_psnr, method, "test")
    return float((10.0 ** _delta(pa, la, pt, lt, method, "PSNR") - 1.0) * 100.0)


def bd_psnr(anchor_rate, anchor_psnr, test_rate, test_psnr, method: str = "pchip") -> float:
    """Average PSNR difference of the test against the anchor at equal rate, in dB."""
    la, pa = _points(anchor_rate, anchor_psnr, method, "anchor")
    lt, pt = _points(test_rate, test_psnr, method, "test")
    return float(_delta(la, pa, lt, pt, method, "log10 rate"))


def overlap(anchor_psnr, test_psnr) -> float:
    """Fraction of the union of the two PSNR ranges where both curves have points (0: BD-rate undefined)."""
    a, t = np.asarray(anchor_psnr, dtype=float), np.asarray(test_psnr, dtype=float)
    union = max(a.max(), t.max()) - min(a.min(), t.min())
    common = min(a.max(), t.max()) - max(a.min(), t.min())
    return max(common, 0.0) / union if union > 0 else 0.0


def main() -> None:
    import click

    def curve(text: str) -> tuple[list[float], list[float]]:
        try:
            rates, psnrs = text.split(":")
            return [float(v) for v in rates.split(",")], [float(v) for v in psnrs.split(",")]
        except ValueError:
            raise click.BadParameter("give RATES:PSNRS, e.g. 100,200,400,800:30,33,36,39") from None

    @click.command()
    @click.option("--anchor", required=True, help="Anchor curve as RATES:PSNRS, comma-separated.")
    @click.option("--test", required=True, help="Test curve as RATES:PSNRS, comma-separated.")
    def cli(anchor, test):
        (ar, ap), (tr, tp) = curve(anchor), curve(test)
        for method in METHODS:
            try:
                click.echo(
                    f"{method}: BD-rate {bd_rate(ar, ap, tr, tp, method):+.2f}%  "
                    f"BD-PSNR {bd_psnr(ar, ap, tr, tp, method):+.3f} dB"
                )
            except ValueError as e:
                click.echo(f"{method}: {e}")

    cli()


if __name__ == "__main__":
    main()
