"""bitstream_spec.md section 11 (entropy coding), implemented from that section alone for the tests: the
range decoder (11.4), the integer models (11.5), erf and exp (11.6) and the informative range encoder
(11.7), in Python integers and binary64 floats (which round to nearest even and never fuse a multiply-add).

It is test code, not a second codec path: `tests/test_entropy_reference.py` checks that it decodes every
conformance stream's symbols as mvcodec's decoder (constriction) does, and that its encoder writes the words
constriction writes, so that the specification, not a library's behaviour, is what the tests hold.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence

import numpy as np

PRECISION = 24
TOTAL = 1 << PRECISION
M32 = (1 << 32) - 1
M64 = (1 << 64) - 1


class InvalidMessage(ValueError):
    """A message section 11.4 calls invalid."""


# ---- section 11.6: erf and exp -------------------------------------------------------------------------

LN2HI, LN2LO, INVLN2 = 6.93147180369123816490e-01, 1.90821492927058770002e-10, 1.44269504088896338700e00
P1, P2, P3 = 1.66666666666666019037e-01, -2.77777777770155933842e-03, 6.61375632143793436117e-05
P4, P5 = -1.65339022054652515390e-06, 4.13813679705723846039e-08
ERX, EFX8 = 8.45062911510467529297e-01, 1.02703333676410069053e00
PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
      -5.77027029648944159157e-03, -2.37630166566501626084e-05)  # fmt: skip
QQ = (3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
      1.32494738004321644526e-04, -3.96022827877536812320e-06)  # fmt: skip
PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
      3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
      -2.16637559486879084300e-03)  # fmt: skip
QA = (1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
      1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)  # fmt: skip
RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e01,
      -6.23753324503260060396e01, -1.62396669462573470355e02, -1.84605092906711035994e02,
      -8.12874355063065934246e01, -9.81432934416914548592e00)  # fmt: skip
SA = (1.96512716674392571292e01, 1.37657754143519042600e02, 4.34565877475229228821e02,
      6.45387271733267880336e02, 4.29008140027567833386e02, 1.08635005541779435134e02,
      6.57024977031928170135e00, -6.04244152148580987438e-02)  # fmt: skip
RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e01,
      -1.60636384855821916062e02, -6.37566443368389627722e02, -1.02509513161107724954e03,
      -4.83519191608651397019e02)  # fmt: skip
SB = (3.03380607434824582924e01, 3.25792512996573918826e02, 1.53672958608443695994e03,
      3.19985821950859553908e03, 2.55305040643316442583e03, 4.74528541206955367215e02,
      -2.24409524465858183362e01)  # fmt: skip


def _bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def _float(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def _horner(x: float, coefficients: Sequence[float]) -> float:
    """c0 + x * (c1 + x * (... + x * c_last)), innermost first."""
    acc = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        acc = c + x * acc
    return acc


def exp(x: float) -> float:
    h, sign = (_bits(x) >> 32) & 0x7FFFFFFF, _bits(x) >> 63
    if h >= 0x4086232B:
        if x != x:
            return x
        if x > 709.782712893383973096:
            return float("inf")
        if x < -745.13321910194110842:
            return 0.0
    if h > 0x3FD62E42:
        k = int(INVLN2 * x + (-0.5 if sign else 0.5)) if h >= 0x3FF0A2B2 else 1 - 2 * sign
        hi = x - k * LN2HI
        lo = k * LN2LO
        x = hi - lo
    elif h > 0x3E300000:
        k, hi, lo = 0, x, 0.0
    else:
        return 1.0 + x
    xx = x * x
    c = x - xx * (P1 + xx * (P2 + xx * (P3 + xx * (P4 + xx * P5))))
    y = 1.0 + ((x * c / (2.0 - c) - lo) + hi)
    return y if k == 0 else math.ldexp(y, k)  # exact but where the result is subnormal, which changes no frequency


def _erfc_pos(h: int, x: float) -> float:
    if h < 0x3FF40000:
        s = x - 1.0
        return (1.0 - ERX) - (PA[0] + s * _horner(s, PA[1:])) / (1.0 + s * _horner(s, QA))
    s = 1.0 / (x * x)
    if h < 0x4006DB6D:
        r, q = RA[0] + s * _horner(s, RA[1:]), 1.0 + s * _horner(s, SA)
    else:
        r, q = RB[0] + s * _horner(s, RB[1:]), 1.0 + s * _horner(s, SB)
    z = _float(_bits(x) & 0xFFFFFFFF00000000)
    return (exp((-z) * z - 0.5625) * exp((z - x) * (z + x) + r / q)) / x


def erf(x: float) -> float:
    h, sign = (_bits(x) >> 32) & 0x7FFFFFFF, _bits(x) >> 63
    if h >= 0x7FF00000:
        return (1.0 - 2.0 * sign) + 1.0 / x
    if h < 0x3FEB0000:
        if h < 0x3E300000:
            return 0.125 * (8.0 * x + EFX8 * x)
        z = x * x
        r = PP[0] + z * _horner(z, PP[1:])
        s = 1.0 + z * _horner(z, QQ)
        return x + x * (r / s)
    y = 1.0 - _erfc_pos(h, abs(x)) if h < 0x40180000 else 1.0
    return -y if sign else y


# ---- section 11.5: the integer models --------------------------------------------------------------------

SQRT2 = _float(0x3FF6A09E667F3BCD)


def gaussian_cdf(mu: float, sigma: float) -> Callable[[float], float]:
    r = sigma * SQRT2
    return lambda x: (1.0 + erf((x - mu) / r)) / 2.0


def laplace_cdf(mu: float, b: float) -> Callable[[float], float]:
    def cdf(x: float) -> float:
        d = x - mu
        return 0.5 * exp(d / b) if x <= mu else 1.0 - 0.5 * exp((-d) / b)

    return cdf


def truncate(y: float) -> int:
    """T of section 11.5.1."""
    if y != y or y <= 0.0:
        return 0
    return M32 if y >= M32 else int(y)


class LeakyModel:
    """The cumulative frequencies C(s), sym_min <= s <= sym_max + 1, of a continuous CDF (section 11.5.1)."""

    def __init__(self, sym_min: int, sym_max: int, cdf: Callable[[float], float], guess: float = 0.0):
        self.lo, self.hi, self.cdf = sym_min, sym_max, cdf
        self.fw = float(TOTAL - (sym_max - sym_min + 1))
        self.guess = guess

    def __call__(self, s: int) -> int:
        if s == self.lo:
            return 0
        if s == self.hi + 1:
            return TOTAL
        return truncate(self.fw * self.cdf(s - 0.5)) + (s - self.lo)

    def symbol(self, quantile: int) -> int:
        """The largest s with C(s) <= quantile: a search outwards from the guess, then bisection."""
        s = min(max(int(self.guess), self.lo), self.hi)
        step = 1
        if self(s) <= quantile:
            a, b = s, s + 1  # C(a) <= quantile; look for b with C(b) > quantile
            while b <= self.hi and self(b) <= quantile:
                a, b, step = b, min(b + 2 * step, self.hi + 1), 2 * step
        else:
            a, b = s - 1, s  # C(b) > quantile; look for a with C(a) <= quantile
            while a > self.lo and self(a) > quantile:
                a, b, step = max(a - 2 * step, self.lo), a, 2 * step
        while b - a > 1:
            m = (a + b) // 2
            a, b = (m, b) if self(m) <= quantile else (a, m)
        return a


class TableModel:
    """A model given by its cumulative table over symbols 0..len-2 (section 11.5.3's mask model)."""

    def __init__(self, table: Sequence[int]):
        self.table, self.lo, self.hi = list(table), 0, len(table) - 2

    def __call__(self, s: int) -> int:
        return self.table[s - self.lo]

    def symbol(self, quantile: int) -> int:
        return max(s for s in range(self.lo, self.hi + 1) if self(s) <= quantile)


def mask_model(p_keep: float) -> TableModel:
    p = float(np.float32(p_keep))
    a = 1.0 - p
    m = a + p
    k = 16777214.0 / m
    return TableModel([0, truncate(a * k) + 1, TOTAL])


def symbol_model(sym_min: int, sym_max: int, mu: float, scale: float, laplace: bool) -> LeakyModel:
    cdf = laplace_cdf(mu, scale) if laplace else gaussian_cdf(mu, scale)
    return LeakyModel(sym_min, sym_max, cdf, guess=mu)


# ---- section 11.4: the range decoder ---------------------------------------------------------------------


class RangeDecoder:
    def __init__(self, words: Sequence[int]):
        self.words, self.pos = [int(w) for w in words], 0
        self.lower, self.range = 0, M64
        self.point = (self._next() << 32) | self._next()

    def _next(self) -> int:
        if self.pos < len(self.words):
            self.pos += 1
            return self.words[self.pos - 1]
        return 0

    def decode(self, model: LeakyModel | TableModel) -> int:
        scale = self.range >> PRECISION
        quantile = ((self.point - self.lower) & M64) // scale
        if quantile >= TOTAL:
            raise InvalidMessage("quantile beyond 2^24")
        s = model.symbol(quantile)
        left, right = model(s), model(s + 1)
        if right <= left:
            raise InvalidMessage("a symbol without probability")
        self.lower = (self.lower + scale * left) & M64
        self.range = scale * (right - left)
        if self.range < 1 << 32:
            self.lower = (self.lower << 32) & M64
            self.range <<= 32
            self.point = ((self.point << 32) & M64) | self._next()
        return s

    def symbols(self, sym_min: int, sym_max: int, mus, scales, laplace: bool = False) -> np.ndarray:
        """One symbol per (mu, scale) pair (binary32 parameters, widened exactly)."""
        mus = np.asarray(mus, np.float32).astype(np.float64).ravel().tolist()
        scales = np.asarray(scales, np.float32).astype(np.float64).ravel().tolist()
        out = [self.decode(symbol_model(sym_min, sym_max, m, s, laplace)) for m, s in zip(mus, scales, strict=True)]
        return np.array(out, np.int32)

    def mask(self, count: int, p_keep: float) -> np.ndarray:
        """count mask entries, each under the Bernoulli model of p_keep (section 11.5.3)."""
        model = mask_model(p_keep)
        return np.array([self.decode(model) for _ in range(count)], dtype=bool)


def decode_mask(words: Sequence[int], count: int, p_keep: float) -> np.ndarray:
    return RangeDecoder(words).mask(count, p_keep)


# ---- section 11.7: the range encoder (informative) -------------------------------------------------------


class RangeEncoder:
    def __init__(self):
        self.lower, self.range, self.out = 0, M64, []
        self.run: tuple[int, int] | None = None  # (first word, words in the run) held back for a carry
        self.count = 0

    def encode(self, model: LeakyModel | TableModel, s: int) -> None:
        if not model.lo <= s <= model.hi:
            raise ValueError(f"symbol {s} is outside the alphabet")
        left, freq = model(s), model(s + 1) - model(s)
        self.count += 1
        scale = self.range >> PRECISION
        self.range = scale * freq
        new = (self.lower + scale * left) & M64
        if self.run and ((new + self.range) & M64) > new:
            first, m = self.run
            self.out += [first + 1] + [0] * (m - 1) if new < self.lower else [first] + [M32] * (m - 1)
            self.run = None
        self.lower = new
        if self.range < 1 << 32:
            self.range <<= 32
            top, self.lower = self.lower >> 32, (self.lower << 32) & M64
            if self.run:
                self.run = (self.run[0], self.run[1] + 1)
            elif ((self.lower + self.range) & M64) > self.lower:
                self.out.append(top)
            else:
                self.run = (top, 1)

    def finish(self) -> np.ndarray:
        if not self.count:
            return np.zeros(0, np.uint32)
        out = list(self.out)
        point = (self.lower + M32) & M64
        if self.run:
            first, m = self.run
            out += [first] + [M32] * (m - 1) if point >= self.lower else [first + 1] + [0] * (m - 1)
        out.append(point >> 32)
        if ((self.lower + self.range) & M64) >> 32 == point >> 32:
            out.append(0)
        return np.array(out, np.uint32)
