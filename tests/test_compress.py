"""Compression: pruning, learned steps with QAT, the Gaussian rate model, export, rate control, -q."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SAMPLE_FILES, run_tool, train_config
from test_train import moving_square_source

from mvcodec.bitstream import SegmentData, SegmentHeader, SequenceHeader, parameter_hash, write_stream
from mvcodec.bitstream.tensor import MASK_BERNOULLI, STEP_ROW_COLUMN, STEPS_BFLOAT16, CodedTensor
from mvcodec.color import ColorSpec
from mvcodec.compress.coding import plan_for, quantize_uniform
from mvcodec.compress.decoding import decode_mask, decode_symbols, decode_tensor, ideal_bits
from mvcodec.compress.gaussian import gaussian_bits, group_stats, model_grid
from mvcodec.compress.pruning import prunable, prune_masks
from mvcodec.compress.qat import CompressibleModel, export_tensors
from mvcodec.decoder import Decoder
from mvcodec.encoder.phases import run_phases
from mvcodec.encoder.recipe import recipe
from mvcodec.model import MVMGINR, ParamSpec, Role, parameter_layout, solve_config
from mvcodec.train.fit import FrameStore, TrainingData, evaluate, fit, read_checkpoint
from mvcodec.train.motion import motion_masks


def tiny(seed=0, params=20_000):
    src = moving_square_source()
    torch.manual_seed(seed)
    cfg = solve_config(2, 3, 36, 64, params)
    data = TrainingData(FrameStore(src, torch.device("cpu")), motion_masks(src, progress=False))
    return src, MVMGINR(cfg), data


def pruned_model(model: MVMGINR, sparsity: float) -> CompressibleModel:
    layout = parameter_layout(model.cfg)
    return CompressibleModel(model, model.cfg, prune_masks(dict(model.named_parameters()), layout, sparsity))


@pytest.mark.parametrize("sparsity", [0.4, 0.25, 0.0])
def test_pruning_reaches_the_requested_sparsity_with_one_global_threshold(sparsity):
    _, model, _ = tiny()
    masks = prune_masks(dict(model.named_parameters()), parameter_layout(model.cfg), sparsity)
    assert set(masks) == {p.name for p in parameter_layout(model.cfg) if prunable(p)}
    total = sum(m.numel() for m in masks.values())
    pruned = sum(int((~m).sum()) for m in masks.values())
    assert pruned == round(sparsity * total)
    # one threshold on |w| / sqrt(P): every kept score is at least every pruned score
    params = dict(model.named_parameters())
    scores = {n: params[n].detach().abs() / params[n].numel() ** 0.5 for n in masks}
    if sparsity:
        kept_min = min(float(scores[n][m].min()) for n, m in masks.items() if m.any())
        pruned_max = max(float(scores[n][~m].max()) for n, m in masks.items() if (~m).any())
        assert kept_min >= pruned_max


def test_masks_stay_fixed_while_fine_tuning():
    _, model, data = tiny()
    wrapped = pruned_model(model, 0.4)
    fit(wrapped, data, train_config("fast", epochs=2), progress=False)
    pruned = 0
    for name, w in wrapped.effective_params(hard=True).items():
        m = wrapped.mask(name)
        if m is not None:
            assert (w[~m] == 0).all()
            pruned += int((~m).sum())
    assert pruned > 0


def _qat(seed=0, epochs=3, rate_weight=1 / 8, step_lr=5e-2):
    src, model, data = tiny(seed)
    pruned = pruned_model(model, 0.4)
    q = CompressibleModel(pruned.base, pruned.cfg, pruned.masks(), quantise=True)
    tcfg = train_config("fast", epochs=epochs, lr=2e-4, rate_weight=rate_weight, step_lr=step_lr, seed=seed)
    fit(q, data, tcfg, progress=False)
    q.train(False)
    return q, data.store


def test_fit_hands_the_latent_proxy_to_the_model():
    _, model, data = tiny()
    q = CompressibleModel(model, model.cfg, quantise=True)
    for proxy in ("noise", "mixed"):
        fit(q, data, train_config("fast", epochs=1, lr=2e-4, rate_weight=1 / 8, latent_proxy=proxy), progress=False)
        assert q.latent_noise is (proxy == "noise")


def test_fit_hands_the_noise_ramp_to_the_model():
    _, model, data = tiny()
    q = CompressibleModel(model, model.cfg, quantise=True)
    fit(q, data, train_config("fast", epochs=1, lr=2e-4, rate_weight=1 / 8, noise_ramp=0.5), progress=False)
    assert q.noise_ramp == 0.5


def test_fit_hands_price_frames_to_the_model():
    _, model, data = tiny()
    q = CompressibleModel(model, model.cfg, quantise=True)
    for price in (True, False):
        fit(q, data, train_config("fast", epochs=1, lr=2e-4, rate_weight=1 / 8, price_frames=price), progress=False)
        assert q.price_frames is price


def test_decoded_parameters_equal_the_encoders_quantised_parameters_bit_for_bit():
    q, store = _qat()
    exported = export_tensors(q)
    seq = SequenceHeader(("a", "b"), 3, 64, 36, 8, ColorSpec(), 30, 1)
    seg = SegmentData(
        SegmentHeader(0, 0, 3), q.cfg, [e.tensor for e in exported], parameter_hash([e.values for e in exported])
    )
    buf = io.BytesIO()
    write_stream(buf, seq, [seg], {})
    coded = {e.tensor.name: e.tensor for e in exported}
    assert any(t.mask_mode == MASK_BERNOULLI for t in coded.values())
    assert any(t.step_mode == STEP_ROW_COLUMN and t.step_format == STEPS_BFLOAT16 for t in coded.values())
    encoder_side = q.effective_params(hard=True)
    with Decoder(io.BytesIO(buf.getvalue())) as dec:
        decoded = dict(zip([p.name for p in q.layout], dec.parameters(0), strict=True))
    for name, w in encoder_side.items():
        a = w.detach().numpy() + np.float32(0)  # -0.0 -> +0.0 (pruned weights are +0.0 in the stream)
        assert a.dtype == np.float32 and np.array_equal(a.view(np.uint32), decoded[name].view(np.uint32)), name
    # and the network the decoder runs is the one the encoder evaluated
    with Decoder(io.BytesIO(buf.getvalue())) as dec:
        ours = evaluate(q, store)
        model = dec.model(0)
        assert torch.equal(model(torch.tensor([1]), torch.tensor([2])), q(torch.tensor([1]), torch.tensor([2])))
    assert ours["psnr_y"] > 10


def test_the_file_size_matches_the_trained_rate_term():
    q, _ = _qat()
    params = dict(q.base.named_parameters())
    for e, spec in zip(export_tensors(q), q.layout, strict=True):
        t = e.tensor
        if spec.role is Role.BIAS:
            continue
        y = params[t.name].detach() / q.steps(spec).detach()
        mask = q.mask(t.name)
        symbols = torch.round(y * mask if mask is not None else y).double()
        # the rate term's formula on the integer symbols, with the Gaussians fitted to them
        mean, std = group_stats(symbols, mask, plan_for(spec).group_axis)
        kept = symbols if mask is None else symbols[mask]
        trained = float(gaussian_bits(symbols, mean, std, kept.min(), kept.max(), mask))
        mask_np = decode_mask(t)
        mask_cost = 0.0 if mask_np is None else ideal_bits(t) - _symbol_bits(t)
        assert abs((ideal_bits(t) - mask_cost) - trained) <= 0.01 * trained + 16, t.name


def _symbol_bits(t: CodedTensor) -> float:
    mask = decode_mask(t)
    means, stds = (torch.from_numpy(np.ascontiguousarray(a, np.float64)) for a in model_grid(t))
    symbols = torch.from_numpy(decode_symbols(t, mask).astype(np.float64))
    if mask is not None:
        keep = torch.from_numpy(mask)
        means, stds = means[keep], stds[keep]
    return float(gaussian_bits(symbols, means.flatten(), stds.flatten(), t.sym_min, t.sym_max))


def test_the_rate_term_lowers_the_rate():
    sizes = []
    for rate_weight in (0.0, 10.0):
        q, _ = _qat(epochs=6, rate_weight=rate_weight, step_lr=0.2)
        sizes.append(sum(len(e.tensor.to_bytes()) for e in export_tensors(q)))
    assert sizes[1] < 0.8 * sizes[0]


def test_quant_noise_rate_rises_linearly_to_one():
    _, model, _ = tiny()
    q = CompressibleModel(model, model.cfg, quantise=True)
    rates = []
    for step in range(0, 101, 25):
        q.set_step(step, 100)
        rates.append(q.noise_rate)
    assert rates[0] < rates[1] < rates[2] < rates[3] == 1.0 == rates[4]
    q.noise_ramp = 0.5  # TrainConfig.noise_ramp: every value rounded from half of the steps on
    q.set_step(49, 100)
    assert q.noise_rate < 1.0
    q.set_step(50, 100)
    assert q.noise_rate == 1.0
    q.noise_ramp = 0.75
    q.train()
    q.set_step(0, 100)
    soft = q.effective_params()
    hard = q.effective_params(hard=True)
    name = "blocks.0.conv.weight"
    same = float((soft[name] == hard[name]).float().mean())
    assert 0.02 < same < 0.5  # about 10% quantised at the start (plus weights that are already on the grid)


def test_every_phase_resumes_from_its_named_checkpoint(tmp_path, monkeypatch):
    src = moving_square_source()
    cfg = solve_config(2, 3, 36, 64, 20_000)
    rec = recipe("fast", arch="mv-mginr", epochs=1, prune_epochs=1, qat_epochs=2, seed=1).with_lambda(8.0)
    quiet = dict(progress=False, log=lambda *_: None)
    whole = run_phases(src, cfg, rec, torch.device("cpu"), prefix=None, **quiet)
    reference = [e.values for e in export_tensors(whole.model)]

    work = str(tmp_path / "x.mvinr")
    run_phases(src, cfg, rec, torch.device("cpu"), prefix=work, **quiet)
    for phase, epochs in (("x.mvinr.ckpt", 1), ("x.mvinr.prune.ckpt", 1), ("x.mvinr.qat.ckpt", 2)):
        meta, _ = read_checkpoint(tmp_path / phase)
        assert meta["epoch"] == epochs and meta["arch"] == "mv-mginr"
    assert read_checkpoint(tmp_path / "x.mvinr.qat.ckpt")[0]["tag"]["stage"] == "qat"
    # another initialisation: the finished phases' checkpoints hold everything
    monkeypatch.setattr("mvcodec.encoder.phases.torch.manual_seed", lambda _: torch.random.manual_seed(7))
    resumed = run_phases(src, cfg, rec, torch.device("cpu"), prefix=work, **quiet)
    for a, b in zip(reference, [e.values for e in export_tensors(resumed.model)], strict=True):
        assert np.array_equal(a, b)


def test_ladder_codings_decode():
    w = np.random.default_rng(0).normal(0, 0.1, (16, 8, 3, 3)).astype(np.float32)
    mask = np.abs(w) > 0.05
    spec = ParamSpec("blocks.0.conv.weight", w.shape, Role.CONV_WEIGHT)
    flat = quantize_uniform(spec, w, mask=mask, flat=True)
    gauss = quantize_uniform(spec, w, mask=mask)
    assert len(gauss.tensor.words) < len(flat.tensor.words)

    for e in (flat, gauss):
        assert np.array_equal(decode_tensor(CodedTensor.parse(e.tensor.to_bytes())), e.values)
        assert (e.values[~mask] == 0).all()
    # the stand-in for fixed-length coding: 7.5 bits (centre of the alphabet) to 9.3 bits (its ends) a symbol
    assert 7.4 < 32 * len(flat.tensor.words) / mask.sum() < 8.5


@pytest.mark.slow
def test_bpp_target_is_reached_within_ten_percent(tmp_path):
    out = tmp_path / "r.mvinr"
    args = [*SAMPLE_FILES, out, "--fps", "6", "--arch", "mv-mginr", "--epochs", "3", "--prune-epochs", "1"]
    args += ["--qat-epochs", "2"]
    r = run_tool("mvenc", *args, "--bpp", "0.25", "--no-progress", "--stats", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / "r.json").read_text())
    assert abs(stats["bpp"] - 0.25) <= 0.025 and "rate control: target" in r.stdout
    r = run_tool("mvenc", *args, "-b", "40", "--no-progress", "--stats", tmp_path / "b.json")
    assert r.returncode == 0, r.stderr
    assert abs(json.loads((tmp_path / "b.json").read_text())["kbps"] - 40) <= 4


@pytest.mark.slow
def test_higher_quality_level_gives_more_bytes_and_higher_psnr(tmp_path):
    results = []
    for q in (2, 6):
        args = [*SAMPLE_FILES[:2], tmp_path / f"q{q}.mvinr", "--fps", "6", "-f", "4", "--arch", "mv-mginr"]
        args += ["--epochs", "12"]
        r = run_tool(
            "mvenc",
            *args,
            "-q",
            str(q),
            "--prune-epochs",
            "1",
            "--qat-epochs",
            "3",
            "--no-progress",
            "--stats",
            tmp_path / f"q{q}.json",
        )
        assert r.returncode == 0, r.stderr
        results.append(json.loads((tmp_path / f"q{q}.json").read_text()))
    low, high = results
    assert high["bytes"] > low["bytes"] and high["psnr_yuv"] > low["psnr_yuv"]


def test_rate_options_are_checked(tmp_path):
    r = run_tool("mvenc", *SAMPLE_FILES[:1], tmp_path / "x.mvinr", "--bpp", "0.1", "-b", "10")
    assert r.returncode == 2 and "not both" in r.stderr and "Traceback" not in r.stderr
    r = run_tool("mvenc", *SAMPLE_FILES[:1], tmp_path / "x.mvinr", "--arch", "mv-mginr", "--sparsity", "1.5")
    assert r.returncode == 2 and "--sparsity must be at least 0 and below 1" in r.stderr


def test_mvinfo_reports_coded_and_ideal_bits_and_the_side_information():
    stream = Path(__file__).parent / "conformance" / "c01_8bit" / "stream.mvinr"
    info = json.loads(run_tool("mvinfo", stream, "--json").stdout)
    assert abs(info["coded_bits"] - info["ideal_bits"]) <= 0.005 * info["ideal_bits"]
    assert 0 < info["side_share"] < 1 and info["side_bytes"] > 0
    tensors = info["segments"][0]["tensors"]
    assert all(t["coded_bits"] >= t["ideal_bits"] - 1 for t in tensors)
