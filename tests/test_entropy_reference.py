"""bitstream_spec.md section 11 against constriction: `entropy_reference` (written from the section alone)
decodes every conformance stream's symbols and masks as mvcodec's decoder does, its encoder writes the words
constriction writes, and constriction still writes the golden words recorded here (a release that changed
its quantiser or its coder would fail this; setup.cfg pins the version that passes)."""

from __future__ import annotations

import math
import random
from importlib.metadata import version
from pathlib import Path

import entropy_reference as ref
import numpy as np
import pytest

from mvcodec.bitstream import read_index, read_segment_tensors
from mvcodec.compress import decoding
from mvcodec.compress import range_coding as rc
from mvcodec.decoder import Decoder

STREAMS = sorted(p.parent for p in (Path(__file__).parent / "conformance").glob("c*/stream.mvinr"))


class Checked:
    """mvcodec's message readers, each piece they decode compared with the reference's decoding of the same
    words (one message a tensor and mask, or one a TNSL segment)."""

    def __init__(self):
        self.symbols = self.masks = 0

    def reader(self, words):
        checked, ours, theirs = self, rc.SymbolReader(words), ref.RangeDecoder(words)

        class Reader:
            def symbols(self, lo, hi, means, stds, laplace=False):
                got = ours.symbols(lo, hi, means, stds, laplace)
                np.testing.assert_array_equal(got, theirs.symbols(lo, hi, means, stds, laplace))
                checked.symbols += len(got)
                return got

            def mask(self, count, p_keep):
                got = ours.mask(count, p_keep)
                np.testing.assert_array_equal(got, theirs.mask(count, p_keep))
                checked.masks += count
                return got

        return Reader()


@pytest.mark.parametrize("stream", STREAMS, ids=[p.name for p in STREAMS])
def test_the_reference_decodes_every_conformance_stream_as_the_decoder_does(stream, monkeypatch):
    checked = Checked()
    monkeypatch.setattr(decoding, "SymbolReader", checked.reader)
    with Decoder(stream / "stream.mvinr") as dec:
        for segment in range(len(dec.index.segments)):
            dec.parameters(segment)  # checked against the segment's hash too
    assert checked.symbols > 500
    if stream.name == "c07_coding_tools":  # the stream with pruning masks
        assert checked.masks > 0


def _random_message(rng: random.Random, n: int, laplace: bool):
    lo = rng.choice([-(2**20), -300, -40, -2])
    hi = rng.choice([2**20, 300, 40, 3])
    mus = [rng.choice([0.0, rng.uniform(-50, 50), rng.uniform(-(2**20), 2**20)]) for _ in range(n)]
    scales = [rng.choice([2.0**-16, 0.1, rng.uniform(0.1, 30), 2.0**21]) for _ in range(n)]
    mus, scales = np.float32(mus).astype(np.float64), np.float32(scales).astype(np.float64)
    symbols = []
    for m, s in zip(mus, scales, strict=True):  # mostly near the mean, sometimes anywhere (tails, end symbols)
        q = round(m + s * rng.gauss(0, 1)) if rng.random() < 0.9 else rng.randint(lo, hi)
        symbols.append(min(max(q, lo), hi))
    return lo, hi, np.array(symbols, np.int32), mus, scales


@pytest.mark.parametrize("laplace", [False, True])
def test_the_reference_encoder_writes_constrictions_words(laplace):
    rng = random.Random(7 + laplace)
    for n in (1, 2, 3, 10, 200, 2000):  # long messages go through the carry ("held-back run") cases
        lo, hi, symbols, mus, scales = _random_message(rng, n, laplace)
        enc = ref.RangeEncoder()
        for q, m, s in zip(symbols.tolist(), mus.tolist(), scales.tolist(), strict=True):
            enc.encode(ref.symbol_model(lo, hi, m, s, laplace), q)
        words = rc.gaussian_encode(symbols, lo, hi, mus, scales, laplace)
        np.testing.assert_array_equal(enc.finish(), words)
        np.testing.assert_array_equal(ref.RangeDecoder(words).symbols(lo, hi, mus, scales, laplace), symbols)


def test_masks_and_the_empty_message():
    rng = np.random.default_rng(3)
    for p_keep in (0.6, 0.05, 0.999):
        mask = rng.random(3000) < p_keep
        enc, model = ref.RangeEncoder(), ref.mask_model(p_keep)
        for bit in mask.tolist():
            enc.encode(model, int(bit))
        words = rc.mask_encode(mask, p_keep)
        np.testing.assert_array_equal(enc.finish(), words)
        np.testing.assert_array_equal(ref.decode_mask(words, mask.size, p_keep), mask)
    assert len(rc.gaussian_encode(np.zeros(0, np.int32), -3, 3, [], [])) == len(ref.RangeEncoder().finish()) == 0


# Words constriction 0.5.0 writes (recorded with it); the first is constriction's own documentation example.
GOLDEN = [
    ("gaussian", -100, 100, [12, -13, 25], [10.3, -4.7, 20.5], [5.2, 24.2, 3.1], [2655472005]),
    (
        "gaussian",
        -(2**20),
        2**20,
        [0, 1, -1, 7, -300, 2**20, -(2**20), 3, 0, 0, 2, -5],
        [0.0, 0.25, -0.5, 6.0, -290.0, 1000.0, -1000.0, 2.5, 0.0, 0.1, 1.9, -4.2],
        [0.1, 0.7, 1.3, 2.0, 12.0, 3.0, 3.0, 0.4, 2.0**-16, 0.25, 0.9, 6.0],
        [3040471796, 3624636196, 3591382285],
    ),
    (
        "laplace",
        -512,
        512,
        [0, 0, 1, -1, 0, 5, -40, 512, 0, -2],
        [0.0, 0.5, 0.5, -0.5, 0.0, 4.5, -35.0, 0.0, 0.0, -2.0],
        [0.1, 0.3, 0.8, 0.8, 2.0, 1.1, 9.0, 1.0, 2.0**-16, 0.6],
        [1360364227, 1302815981],
    ),
]
MASK_GOLDEN = [1637887990, 409812609, 2963185141, 4026297100, 3741628922, 2628931032]


@pytest.mark.parametrize("case", range(len(GOLDEN)))
def test_constriction_writes_the_golden_words(case):
    kind, lo, hi, symbols, mus, scales, words = GOLDEN[case]
    got = rc.gaussian_encode(np.array(symbols, np.int32), lo, hi, np.array(mus), np.array(scales), kind == "laplace")
    assert got.tolist() == words, f"constriction {version('constriction')} writes other words than 0.5.0"
    mus32, scales32 = np.float32(mus), np.float32(scales)
    assert ref.RangeDecoder(words).symbols(lo, hi, mus32, scales32, kind == "laplace").tolist() == symbols


def test_constriction_writes_the_golden_mask_words():
    mask = np.array([(i * 7919) % 11 < 7 for i in range(200)])
    assert rc.mask_encode(mask, 0.63).tolist() == MASK_GOLDEN
    np.testing.assert_array_equal(ref.decode_mask(MASK_GOLDEN, mask.size, 0.63), mask)


@pytest.mark.parametrize(
    "x", [0.0, -0.0, 1e-300, 2.0**-29, -3e-9, 0.3, -0.84375, 0.9, 1.2, -1.25, 2.0, 2.857, 3.1, -5.9, 6.0, 30.0]
)
def test_erf_and_exp_are_within_an_ulp_of_the_platforms(x):
    """A sanity check of the transcription (the platform's own functions need not agree to the bit)."""
    assert abs(ref.erf(x) - math.erf(x)) <= math.ulp(math.erf(x))
    assert abs(ref.exp(x) - math.exp(x)) <= math.ulp(math.exp(x))
    assert abs(ref.exp(-40 * x) - math.exp(-40 * x)) <= math.ulp(math.exp(-40 * x))


def test_the_reference_reads_a_tnsl_message_in_the_order_the_spec_gives():
    # section 7.9 alone: each coded tensor in turn, its mask (mask_mode 1) and then its kept symbols, coding 0
    # tensors skipped; c20's models are 0 and 1, whose Gaussians come from the fields alone (section 7.1)
    path = Path(__file__).parent / "conformance" / "c20_coding_tools_lean" / "stream.mvinr"
    with open(path, "rb") as f:
        index = read_index(f)
        segments = [read_segment_tensors(f, s) for s in index.segments]
    kinds = set()
    for tensors in segments:
        theirs = ref.RangeDecoder(tensors[0].message)
        ours = decoding.decode_segment(tensors)
        for t, symbols, mask in zip(tensors, ours.symbols, ours.masks, strict=True):
            if t.coding == 0:
                kinds.add("float32")
                continue
            kept = theirs.mask(t.numel, t.p_keep).reshape(t.shape) if t.mask_mode == 1 else np.ones(t.shape, bool)
            axis = [1] * len(t.shape)
            axis[t.model_axis] = -1
            means = np.broadcast_to(t.means.reshape(axis if t.model_mode == 1 else [1]), t.shape)
            stds = np.broadcast_to(t.stds.reshape(axis if t.model_mode == 1 else [1]), t.shape)
            got = theirs.symbols(t.sym_min, t.sym_max, means[kept], stds[kept])
            np.testing.assert_array_equal(got, symbols[kept])
            if mask is not None:
                np.testing.assert_array_equal(kept, mask)
            kinds.update({f"model {t.model_mode}", f"mask {t.mask_mode}"})
    assert {"float32", "model 0", "model 1", "mask 0", "mask 1"} <= kinds
