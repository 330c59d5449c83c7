"""MV-Pyramid-MC: the view-and-frame latents chained along time by motion fields (mvcodec/model/pyramid_mc.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import SAMPLE_FILES

from mvcodec.bitstream import read_index
from mvcodec.cli import mvdec, mvenc
from mvcodec.compress.qat import CompressibleModel
from mvcodec.model import Shape, by_name
from mvcodec.model.pyramid_mc import PyramidMCConfig
from mvcodec.train.fit import batch_order


def _run(command, args: list, capsys) -> str:
    command.main(args=[str(a) for a in args], prog_name=command.name, standalone_mode=False)
    return capsys.readouterr().out


def _random_mc(std: float = 1.0, frames: int = 4, arm_hidden: int = 0):
    """An MV-Pyramid-MC (2 views x `frames` x 16x24, 2 levels, width 8; its grids coded by an entropy-model
    network `arm_hidden` wide, if not 0), parameters drawn from N(0, std), motion from N(0, 6) quarter pixels."""
    cfg = PyramidMCConfig(2, frames, 16, 24, levels=2, hidden=8, flow_level=1, arm_hidden=arm_hidden)
    torch.manual_seed(0)
    net = by_name("mv-pyramid-mc").build(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, std)
        net.flows.normal_(0, 6)
    return net, cfg


def test_the_chain_adds_each_frames_residual_to_the_previous_latents_moved_by_its_motion():
    net, cfg = _random_mc()
    grids = net.frame_grids["0"]
    first = net.frame_part(0, torch.tensor([1]), torch.tensor([0]), None, None)
    assert torch.equal(first, grids[4:5])  # frame 0: its residual alone
    with torch.no_grad():
        net.flows.zero_()
        net.flows[5, 0] = 4  # frame 1 of view 1: one pixel to the right, at level 0 one cell
    second = net.frame_part(0, torch.tensor([1]), torch.tensor([1]), None, None)
    moved = torch.cat([grids[4:5, :, :, 1:], grids[4:5, :, :, -1:]], dim=3)  # border values outside
    assert torch.allclose(second, moved + grids[5:6], atol=1e-5)
    with torch.no_grad():
        net.flows.zero_()
    third = net.frame_part(1, torch.tensor([0]), torch.tensor([2]), None, None)  # no motion: residuals summed
    assert torch.allclose(third, net.frame_grids["1"][0:3].sum(dim=0, keepdim=True), atol=1e-5)


def test_kept_chains_give_the_same_latents_in_any_order_of_frames():
    net, cfg = _random_mc(frames=5)
    net.train(False)
    with torch.inference_mode():
        alone = {(v, t): net(torch.tensor([v]), torch.tensor([t])) for t in range(5) for v in range(2)}
        batch = (torch.tensor([0, 1, 1]), torch.tensor([2, 4, 3]))
        together = net(*batch)
        net.keep_chains()  # as the decoder does: in order, back in time, again, then a mixed batch
        for t, v in [(t, v) for t in range(5) for v in range(2)] + [(3, 1), (4, 0), (1, 1), (1, 1), (2, 1)]:
            assert torch.equal(net(torch.tensor([v]), torch.tensor([t])), alone[v, t])
        assert torch.equal(net(*batch), together)
    out = net(torch.tensor([1]), torch.tensor([3]))  # grad mode after inference mode: its own chains
    out.sum().backward()
    assert torch.equal(out.detach(), alone[1, 3]) and net.flows.grad is not None
    net.to(torch.float64)  # another dtype forgets the chains
    with torch.inference_mode():
        assert net(torch.tensor([1]), torch.tensor([4])).dtype == torch.float64


def test_a_batch_reads_its_views_earlier_frames_and_nothing_else():
    net, cfg = _random_mc()
    model = CompressibleModel(net, cfg, quantise=True).train()
    view, frame = torch.tensor([1, 0]), torch.tensor([2, 1])
    rows = model.start_batch(view, frame)
    assert rows.tolist() == [0, 1, 4, 5, 6]  # view 0: frames 0-1, view 1: frames 0-2
    full = torch.func.functional_call(net, model.effective_params(hard=True), (view, frame))
    part = torch.func.functional_call(net, model.effective_params(hard=True, rows=rows), (view, frame), {"rows": rows})
    assert torch.equal(full, part)


@pytest.mark.parametrize("price_frames", [False, True])
@pytest.mark.parametrize("window", [None, 1])
@pytest.mark.parametrize("order", ["random", "runs"])
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_the_rate_estimate_of_a_batchs_rows_is_the_whole_rate_over_an_epoch(batch, order, window, price_frames):
    """Weighted by the epoch's steps over the steps that price them, the rows each batch of an epoch prices
    (those it trains, or its own frames alone with price_frames) price, on average over the epoch's
    batches, exactly what the whole tensor costs, in either batch order and with a chain window."""
    net, cfg = _random_mc(frames=5)
    model = CompressibleModel(net, cfg, quantise=True).train()
    model.chain_window, model.price_frames = window, price_frames
    row_bits = torch.rand(cfg.views * cfg.frames, dtype=torch.float64) * 100  # any per-row cost
    for seed in range(3):
        perm = batch_order(cfg.views, cfg.frames, batch, order, torch.Generator().manual_seed(seed))
        assert sorted(perm.tolist()) == list(range(cfg.views * cfg.frames))  # every sample once an epoch
        model.plan_epoch(perm, batch)
        batches = perm.split(batch)
        total = 0.0
        for idx in batches:
            model.start_batch(idx // cfg.frames, idx % cfg.frames)
            rows = model.priced_rows()
            assert set(rows.tolist()) <= set(model.step_rows().tolist())
            if price_frames:
                assert sorted(rows.tolist()) == sorted(set(idx.tolist()))
            total += float((row_bits[rows] * model._read_weights(rows).double()).sum())
        assert total / len(batches) == pytest.approx(float(row_bits.sum()), rel=1e-5)


def test_a_chain_window_trains_the_last_frames_of_a_chain_alone():
    """With chain_window 1, a batch frame t trains its rows t - 1 and t: the frames before are read (the output
    is the same) but get no gradient and are not priced."""
    net, cfg = _random_mc(frames=5)
    model = CompressibleModel(net, cfg, quantise=True).train()
    view, frame = torch.tensor([0]), torch.tensor([3])
    model.plan_epoch(torch.arange(cfg.views * cfg.frames), 1)
    whole = model(view, frame)
    model.chain_window = 1
    model.plan_epoch(torch.arange(cfg.views * cfg.frames), 1)
    rows = model.start_batch(view, frame)
    assert rows.tolist() == [0, 1, 2, 3] and model.step_rows().tolist() == [2, 3]
    out = model(view, frame)
    assert torch.equal(out, whole)
    (out.square().mean() + model.rate_bits(rows) * 1e-6).backward()
    for grad in model.batch_grads().values():
        assert grad.shape[0] == 2 and grad.abs().sum() > 0
    for leaf in model.batch_leaves():
        assert leaf.grad[:2].abs().sum() == 0


@pytest.mark.parametrize("arm_hidden", [0, 8])
def test_price_frames_prices_a_batchs_own_frames_and_trains_its_whole_chain(arm_hidden):
    """With price_frames the rate term's gradient reaches the batch frame's rows alone (context-coded grids
    and motion, or grids coded by an entropy-model network), the distortion's every frame of its chain,
    which the step still updates; the output is the same."""
    net, cfg = _random_mc(frames=5, arm_hidden=arm_hidden)
    model = CompressibleModel(net, cfg, quantise=True).train()
    view, frame = torch.tensor([0]), torch.tensor([3])
    model.plan_epoch(torch.arange(cfg.views * cfg.frames), 1)
    whole = model(view, frame)
    model.price_frames = True
    model.plan_epoch(torch.arange(cfg.views * cfg.frames), 1)
    rows = model.start_batch(view, frame)
    assert rows.tolist() == [0, 1, 2, 3] and model.priced_rows().tolist() == [3]
    assert model.step_rows().tolist() == [0, 1, 2, 3]
    model.rate_bits(rows).backward()
    for leaf in model.batch_leaves():
        assert leaf.grad[:3].abs().sum() == 0 and leaf.grad[3].abs().sum() > 0
    rows = model.start_batch(view, frame)
    out = model(view, frame)
    assert torch.equal(out, whole)
    (out.square().mean() + 1e-6 * model.rate_bits(rows)).backward()
    grads = dict(zip(model.batch_grads().values(), model._batch[1], strict=True))
    for grad, name in grads.items():
        assert grad.shape[0] == 4
        for row in range(1 if name == "flows" else 0, 4):  # frame 0's motion is never read
            assert grad[row].abs().sum() > 0, (name, row)


def test_a_started_batch_is_reused_only_for_the_same_frames():
    """Two batches that read the same rows but hold other frames price other rows: the forward pass starts
    the second afresh."""
    net, cfg = _random_mc(frames=5)
    model = CompressibleModel(net, cfg, quantise=True).train()
    model.price_frames = True
    model.plan_epoch(torch.arange(cfg.views * cfg.frames), 1)
    model(torch.tensor([0]), torch.tensor([3]))
    assert model.priced_rows().tolist() == [3]
    model(torch.tensor([0, 0]), torch.tensor([2, 3]))
    assert model.priced_rows().tolist() == [2, 3]


@pytest.mark.parametrize("phased", [True, False], ids=["mode6", "mode4"])
def test_the_motion_is_priced_under_the_laplace_distributions_the_encoder_stores(monkeypatch, phased):
    """MV-Pyramid-MC's motion fields are coded under a Laplace per context (model_mode 6, section 7.6: located
    at the median of the decoded neighbours; before experiment 31 model_mode 4, section 7.4); the rate term
    prices a batch's rows under the locations and scales, and in the symbol range, that export_tensors
    writes."""
    from mvcodec.bitstream.tensor import MODEL_LAPLACE, MODEL_PREDICTED
    from mvcodec.compress import qat
    from mvcodec.compress.decoding import segment_symbols, tensor_models
    from mvcodec.model.pyramid_mc import MVPyramidMCArchitecture

    monkeypatch.setattr(MVPyramidMCArchitecture, "motion_phased", phased)
    # export leaves out the compact table's costly pairs after training (experiment 43), which the rate term
    # does not see: the pricing is that of the table before
    monkeypatch.setattr("mvcodec.compress.coding.without_costly_pairs", lambda t, *_: (t.means, t.stds))
    net, cfg = _random_mc(frames=5)
    model = CompressibleModel(net, cfg, quantise=True).train()
    model.plan_epoch(torch.arange(cfg.views * cfg.frames), 2)
    rows = model.start_batch(torch.tensor([0, 1]), torch.tensor([2, 4]))
    priced = []
    plain = qat.laplace_bits
    monkeypatch.setattr(qat, "laplace_bits", lambda y, *a, **k: priced.append(a) or plain(y, *a, **k))
    with torch.no_grad():
        model.rate_bits(rows)
    ((loc, scale, lo, hi),) = priced
    tensors = [e.tensor for e in qat.export_tensors(model)]
    (t,) = [t for t in tensors if t.name == "flows"]
    assert t.model_mode == (MODEL_PREDICTED if phased else MODEL_LAPLACE)
    symbols = dict(zip([t.name for t in tensors], segment_symbols(tensors), strict=True))
    locs, scales = (torch.from_numpy(np.ascontiguousarray(a)) for a in tensor_models(t, symbols["flows"], None))
    pick = model.priced_rows()
    assert torch.equal(loc, locs[pick]) and torch.equal(scale, scales[pick])
    assert (int(lo), int(hi)) == (t.sym_min, t.sym_max)
    if phased:  # the locations follow the neighbours
        assert len(torch.unique(locs)) > 36 * 2


def test_runs_are_consecutive_frames_of_one_view():
    """3 views of 7 frames in batches of 2: 3 runs of 2 frames a view, cut at either offset, then the 3 frames
    left at the views' ends."""
    for seed in range(4):
        perm = batch_order(3, 7, 2, "runs", torch.Generator().manual_seed(seed)).tolist()
        assert sorted(perm) == list(range(21))
        runs = [perm[i : i + 2] for i in range(0, 18, 2)]
        assert all(b == a + 1 and a // 7 == b // 7 for a, b in runs)
        for v in range(3):
            assert {a % 7 for a, _ in runs if a // 7 == v} in ({0, 2, 4}, {1, 3, 5})
        assert sorted(p % 7 for p in perm[18:]) in ([0, 0, 0], [0, 0, 6], [0, 6, 6], [6, 6, 6])


def test_mv_pyramid_mc_round_trips_and_decodes_any_frame_alone(tmp_path, capsys):
    arch = by_name("mv-pyramid-mc")
    cfg = arch.size_for(Shape(2, 3, 96, 160), 0)
    assert cfg.flow_level == 4 and cfg.grid_size(4) == (6, 10)
    CompressibleModel(arch.build(cfg), cfg)  # the network has exactly its layout's tensors
    stream = tmp_path / "m.mvinr"
    args = [*SAMPLE_FILES[:2], stream, "-f", "3", "--arch", "mv-pyramid-mc", "--preset", "fast", "--no-progress"]
    out = _run(mvenc, [*args, "--epochs", "2", "--qat-epochs", "2"], capsys)
    assert "chained along time by 10x6 motion fields" in out
    with open(stream, "rb") as f:
        index = read_index(f)
    assert index.segments[0].config == cfg
    assert [c.type for c in index.chunks].count("TNSL") == 1 and index.segments[0].lean  # section 7.9
    assert not {"TNSR", "TNSC"} & {c.type for c in index.chunks}
    _run(mvdec, [stream, "-o", tmp_path / "all", "--no-progress"], capsys)
    _run(mvdec, [stream, "-o", tmp_path / "one", "--frames", "2", "--views", "1", "--no-progress"], capsys)
    (whole,) = sorted((tmp_path / "all").glob("v1*"))
    (alone,) = sorted((tmp_path / "one").glob("v1*"))
    frame_bytes = 160 * 96 * 3 // 2 * 2  # 10-bit samples
    assert np.array_equal(np.fromfile(alone, np.uint8), np.fromfile(whole, np.uint8)[2 * frame_bytes :])


def test_a_short_segment_trains_up_to_twice_the_presets_epochs_and_the_given_ones_as_given():
    from mvcodec.encoder.recipe import recipe
    from mvcodec.presets import REFERENCE_VIEW_FRAMES, epoch_scale

    assert REFERENCE_VIEW_FRAMES == 64 and by_name("mv-pyramid-mc").short_segment_scale == 2.0
    assert [epoch_scale(n, 2.0) for n in (1, 32, 48, 64, 400)] == [2.0, 2.0, 64 / 48, 1.0, 1.0]
    assert epoch_scale(8, 1.0) == 1.0  # an architecture without the scale (MV-MGINR, MV-Pyramid)
    with pytest.raises(ValueError, match="at least one view and frame"):
        epoch_scale(0, 2.0)
    medium = recipe("medium", arch="mv-pyramid-mc")
    assert [p.epochs for p in medium.for_segment(32, 2.0).phases] == [14, 126]  # the small cut: 4 views x 8 frames
    assert [p.epochs for p in medium.for_segment(48, 2.0).phases] == [9, 84]
    assert medium.for_segment(64, 2.0) is medium and medium.for_segment(8, 1.0) is medium
    assert medium.for_segment(32, 2.0).train.epochs == 14  # the fit's TrainConfig follows its phase
    given = recipe("medium", arch="mv-pyramid-mc", qat_epochs=5)  # the command line's epochs stay as given
    assert [p.epochs for p in given.for_segment(32, 2.0).phases] == [14, 5]


def test_mvenc_says_when_a_short_segment_trains_more_epochs(tmp_path, capsys):
    stream = tmp_path / "s.mvinr"
    args = [*SAMPLE_FILES[:2], stream, "-f", "1", "--preset", "fast", "--epochs", "1", "--no-progress"]
    out = _run(mvenc, args, capsys)  # 2 views x 1 frame: fast's 32 QAT epochs twice, the fit's 1 as given
    assert "training: preset fast, 1 + 32 epochs" in out
    assert "training: 2 views x frames, fewer than 64: 1 + 64 epochs (the preset's, up to 2x" in out
    with open(stream, "rb") as f:
        info = read_index(f).info
    assert info["compress"]["qat_epochs"] == 64 and info["train"]["epochs"] == 1
