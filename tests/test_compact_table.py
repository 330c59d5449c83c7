"""The compact table of model_modes 5 and 6 (bitstream_spec.md section 7.7): its std codes, the encoder's
rounding, the bytes and their parsing, damaged tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvcodec.bitstream.syntax import ByteReader
from mvcodec.bitstream.tensor import (
    MODEL_CONTEXT,
    MODEL_PHASED,
    MODEL_PREDICTED,
    TABLE_BFLOAT16,
    TABLE_COMPACT,
    CodedTensor,
    compact_stds,
    compact_table_bytes,
    read_compact_table,
)
from mvcodec.compress.coding import without_costly_pairs
from mvcodec.compress.context import compact_gaussians, stored_gaussians
from mvcodec.errors import InvalidStream, UnknownCriticalChunk


def test_the_std_codes_rise_from_0_1_to_6144_in_steps_of_at_most_6_25_percent():
    t = compact_stds()
    assert t.dtype == np.float32 and len(t) == 255
    assert t[0] == np.float32(0.1) and t[16] == np.float32(0.2) and t[52] == 1.0 and t[-1] == 6144.0
    ratio = t[1:].astype(np.float64) / t[:-1]
    assert ratio.min() > 1.03 and ratio.max() <= 1.0625 + 1e-7


def test_the_std_codes_are_one_binary32_product_each():
    # the spec's definition, written out with Python's exact integers and one rounding to binary32
    tenth = np.float32(0.1)
    for b in range(255):
        exact = float(tenth) * (16 + b % 16) * 2.0 ** (b // 16 - 4)  # exact in binary64 (29 bits)
        assert compact_stds()[b] == np.float32(exact)


def test_means_round_to_sixteenths_and_stds_to_the_nearest_code_in_ratio():
    rng = np.random.default_rng(1)
    mean = torch.tensor(rng.normal(0, 3, 400), dtype=torch.float32)
    std = torch.tensor(np.exp(rng.uniform(np.log(0.1), np.log(6000), 400)), dtype=torch.float32)
    m, s = compact_gaussians(mean, std)
    inside = mean.abs() * 16 <= 126.5
    assert torch.equal(m[inside], torch.round(mean[inside] * 16) / 16)
    codes = compact_stds().astype(np.float64)
    nearest = codes[np.abs(np.log(codes)[None, :] - np.log(std.double().numpy())[:, None]).argmin(axis=1)]
    assert np.array_equal(s.numpy(), nearest.astype(np.float32))
    # a mean that rounds to zero from below is +0, as the table decodes it
    assert not torch.signbit(compact_gaussians(torch.tensor([-0.01]), torch.tensor([1.0]))[0]).any()
    # outside the codes' range: the nearest bfloat16
    m, s = compact_gaussians(torch.tensor([9.3, -20.0]), torch.tensor([7000.0, 0.1]))
    assert m.tolist() == [9.3125, -20.0] and s.tolist() == [7008.0, pytest.approx(0.1)]
    assert stored_gaussians(MODEL_PHASED, torch.tensor([0.3]), torch.tensor([0.7]), compact=True)[0].item() == 0.3125
    assert stored_gaussians(MODEL_CONTEXT, torch.tensor([0.3]), torch.tensor([0.7]), compact=True)[0].item() == (
        pytest.approx(0.3)
    )  # other modes store float32


def _table(n: int = 36 * 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    mean, std = np.zeros(n, np.float32), np.ones(n, np.float32)
    used = rng.random(n) < 0.4
    mean[used] = rng.normal(0, 2, used.sum())
    std[used] = np.exp(rng.uniform(np.log(0.1), np.log(50), used.sum()))
    mean[3], std[3] = 20.0, 0.5  # an escaped mean
    mean[5], std[5] = 0.0, 9000.0  # an escaped std
    m, s = compact_gaussians(torch.from_numpy(mean), torch.from_numpy(std))
    return m.numpy(), s.numpy()


def test_a_table_round_trips_with_absent_pairs_and_escapes():
    m, s = _table()
    data = compact_table_bytes(m, s)
    present = int((~((m == 0) & (s == 1))).sum())
    assert len(data) == 9 + 2 * present + 2 * 2  # bitmap, two codes a pair, one escaped mean and one std
    r = ByteReader(data, "TNSR")
    mm, ss = read_compact_table(r, len(m))
    r.end()
    assert np.array_equal(mm, m) and np.array_equal(ss, s)


def test_a_table_written_by_hand_from_the_spec_decodes_to_its_values():
    """Section 7.7 read literally: 10 pairs, pairs 1, 3, 4 and 9 stored; pair 3's mean and std escaped."""
    data = bytes.fromhex(
        "1a02"  # presence: bits 1, 3, 4 (byte 0, least significant first) and 9 (bit 1 of byte 1)
        "0880fd00"  # mean codes: 8 (0.5), -128 (escaped), -3 (-0.1875), 0
        "00ff3411"  # std codes: 0 (0.1), 255 (escaped), 52 (1.0), 17
        "a041"  # escaped mean: bfloat16 0x41a0, 20.0
        "db45"  # escaped std: bfloat16 0x45db, 7008.0
    )
    r = ByteReader(data, "TNSR")
    means, stds = read_compact_table(r, 10)
    r.end()
    tenth = np.float32(0.1)
    assert means.tolist() == [0, 0.5, 0, 20.0, -0.1875, 0, 0, 0, 0, 0]
    want = [1, tenth, 1, 7008.0, tenth * np.float32(10), 1, 1, 1, 1, tenth * np.float32(17 / 8)]
    assert stds.tolist() == np.array(want, np.float32).tolist() and stds[4] == 1.0
    assert compact_table_bytes(means, stds) == data  # and the writer writes these bytes


def test_a_table_refuses_values_it_cannot_hold():
    with pytest.raises(ValueError):
        compact_table_bytes(np.array([0.3], np.float32), np.array([1.0], np.float32))  # not a 1/16, not bfloat16
    with pytest.raises(ValueError):
        compact_table_bytes(np.array([0.0], np.float32), np.array([0.7001], np.float32))


def _tensor(mode: int = MODEL_PHASED) -> CodedTensor:
    count = {MODEL_PHASED: 36, MODEL_PREDICTED: 12}[mode]
    m, s = _table(count * 2)
    return CodedTensor(
        "view_grids.0",
        (3, 2, 4, 6),
        steps=np.ones(1, np.float32),
        sym_min=-3,
        sym_max=4,
        model_mode=mode,
        model_axis=1,
        row_period=0,
        means=m,
        stds=s,
        table_format=TABLE_COMPACT,
        words=np.arange(5, dtype=np.uint32),
    )


@pytest.mark.parametrize("mode", [MODEL_PHASED, MODEL_PREDICTED])
def test_a_tensor_with_a_compact_table_round_trips_and_is_smaller(mode):
    t = _tensor(mode)
    data = t.to_bytes()
    back = CodedTensor.parse(data)
    assert back.model_mode == mode and back.table_format == TABLE_COMPACT
    assert np.array_equal(back.means, t.means) and np.array_equal(back.stds, t.stds)
    assert np.array_equal(back.words, t.words)
    assert bytes([0x80 | mode, 1]) in data  # model_mode with bit 7, model_axis 1
    table = len(compact_table_bytes(t.means, t.stds))
    assert table < 2 * len(t.means)  # under half the 4 bytes a pair of bfloat16 pairs
    mean, std = stored_gaussians(mode, torch.from_numpy(t.means), torch.from_numpy(t.stds))
    t.table_format, t.means, t.stds = TABLE_BFLOAT16, mean.numpy(), std.numpy()
    assert len(t.to_bytes()) - len(data) == 4 * len(t.means) - table  # the rest is the same


def _compact_payload() -> tuple[bytes, int]:
    """A compact tensor's payload and the offset of its model_mode byte."""
    data = _tensor().to_bytes()
    at = next(i for i in range(len(data)) if data[i] == 0x85 and data[i + 1] == 1)
    return data, at


def test_a_compact_flag_on_another_mode_needs_a_newer_decoder():
    data, at = _compact_payload()
    for byte in (0x80 | MODEL_CONTEXT, 0x87, 0xFF):
        bad = data[:at] + bytes([byte]) + data[at + 1 :]
        with pytest.raises(UnknownCriticalChunk, match="needs a newer decoder"):
            CodedTensor.parse(bad)


def test_damaged_tables_are_invalid_streams():
    data, at = _compact_payload()
    table = at + 2 + 2 + 4 + 4  # model_mode, model_axis, coarse_ref, row_period, model_count
    with pytest.raises(InvalidStream):
        CodedTensor.parse(data[: table + 20])  # ends inside the table
    count = 36 * 2
    r = ByteReader(bytes([0xFF] * 9) + bytes(200), "TNSR")
    with pytest.raises(InvalidStream, match="presence bit set past"):
        read_compact_table(r, 70)  # 72 bits for 70 pairs, the last 2 set
    r = ByteReader(bytes([0xFF] * 9), "TNSR")
    with pytest.raises(InvalidStream):
        read_compact_table(r, count)  # 72 pairs present, no codes
    huge = data[: table - 4] + (1 << 30).to_bytes(4, "little") + data[table:]
    with pytest.raises(InvalidStream):
        CodedTensor.parse(huge)  # a count the mode does not imply, before anything is allocated


def test_the_encoder_leaves_out_a_pair_that_costs_more_than_its_symbols_save():
    # context 0: 63 zeros, cheap under (0, 0.1) and 1.4 bits each under (0, 1): kept; context 5: one symbol
    # 1, about 2 bits under (0, 1) against the pair's 16: left out, coded under (0, 1)
    t = CodedTensor("view_grids.0", (1, 1, 8, 8), model_mode=MODEL_PHASED, model_axis=1, sym_min=-1, sym_max=1)
    t.means, t.stds = np.zeros(36, np.float32), np.ones(36, np.float32)
    t.means[5], t.stds[:6] = 1.0, np.float32(0.1)
    symbols, ctx = np.zeros(t.shape, np.int32), np.zeros(t.shape, np.int64)
    symbols[0, 0, 3, 3], ctx[0, 0, 3, 3] = 1, 5
    means, stds = without_costly_pairs(t, symbols, ctx, None)
    assert (means[0], stds[0]) == (0, np.float32(0.1)) and (means[5], stds[5]) == (0, 1)
    assert stds[1:5].tolist() == [1.0] * 4  # and those of contexts without symbols
    symbols[0, 0, :2] = 1  # 16 symbols in context 5: now the pair pays
    ctx[0, 0, :2] = 5
    assert without_costly_pairs(t, symbols, ctx, None)[0][5] == 1.0
