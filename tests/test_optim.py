"""The row-lazy optimiser (mvcodec/train/optim.py) and the batch-row pricing it makes stable."""

from __future__ import annotations

import pytest
import torch

from mvcodec.train.optim import RowAdam


def test_rows_a_batch_does_not_read_stay_put_and_read_rows_move_as_adam_alone_would():
    torch.manual_seed(0)
    lazy = torch.nn.Parameter(torch.randn(6, 3))
    dense = torch.nn.Parameter(torch.randn(4))
    # rows 2 and 4 as tensors of their own under plain Adam, stepped only when a batch reads them
    alone = {r: torch.nn.Parameter(lazy.detach()[r].clone()) for r in (2, 4)}
    refs = {r: torch.optim.Adam([p], lr=0.1) for r, p in alone.items()}
    opt = RowAdam([{"params": [lazy], "rows": True}, {"params": [dense]}], lr=0.1)
    before = lazy.detach().clone()
    for step in range(5):
        rows = torch.tensor([2, 4]) if step % 2 == 0 else torch.tensor([2])
        opt.zero_grad(set_to_none=True)
        (((lazy[rows] - 3) ** 2).sum() + (dense**2).sum()).backward()
        opt.step(rows=rows)
        for r in rows.tolist():
            refs[r].zero_grad()
            ((alone[r] - 3) ** 2).sum().backward()
            refs[r].step()
    untouched = [0, 1, 3, 5]
    assert torch.equal(lazy.detach()[untouched], before[untouched])
    for r, p in alone.items():  # plain Adam on the whole tensor would move row 4 on its momentum in between
        assert torch.allclose(lazy.detach()[r], p.detach(), rtol=1e-5, atol=1e-5), r
    assert opt.state[lazy]["row_step"].tolist() == [0, 0, 5, 0, 3, 0]
    assert not torch.equal(lazy.detach()[4], before[4]) and len(opt.state[dense]) > 0


def _pyramid(config: dict, draw):
    """A quantising MV-Pyramid (2 views x 4 frames x 24x40, 3 levels) in training mode, its grids drawn."""
    from mvcodec.compress.qat import CompressibleModel
    from mvcodec.model.pyramid import MVPyramid, PyramidConfig

    cfg = PyramidConfig(2, 4, 24, 40, levels=3, **config)
    base = MVPyramid(cfg)
    with torch.no_grad():
        for name, p in base.named_parameters():
            if "grids" in name:
                p.copy_(draw(p.shape))
    return CompressibleModel(base, cfg, quantise=True).train()


@pytest.fixture(params=[(False, False), (True, False), (True, True)], ids=["mode2", "mode5", "mode5-compact"])
def phased(request, monkeypatch):
    """MV-Pyramid's latent grids coded (and priced) in model_mode 2, or in model_mode 5 as MV-Pyramid-MC's, its
    pairs as bfloat16 or (as MV-Pyramid-MC's since experiment 39) in the compact table."""
    from mvcodec.model.registry import by_name

    phased, compact = request.param
    monkeypatch.setattr(type(by_name("mv-pyramid")), "phased_latents", phased)
    monkeypatch.setattr(type(by_name("mv-pyramid")), "compact_tables", compact)
    return request.param


def test_pricing_a_batchs_rows_estimates_the_whole_tensors_rate(phased):
    torch.manual_seed(1)
    # the frame grids' rate is nearly all of it
    model = _pyramid(dict(view_channels=0), lambda shape: torch.randn(shape) * 1.5 * (torch.rand(shape) < 0.3))
    with torch.no_grad():
        full = float(model.rate_bits(None))
        batches = [torch.tensor([r, r + 1]) for r in range(0, 8, 2)]
        estimate = sum(float(model.rate_bits(rows)) for rows in batches) / len(batches)
    assert abs(estimate / full - 1) < 0.03, (estimate, full)


def test_per_row_statistics_stay_those_of_the_whole_tensor_as_rows_are_stepped(phased):
    """end_batch updates the statistics of the stepped rows and of the rows whose contexts read them, so the
    Gaussians a batch is priced under equal those measured afresh over the whole tensor."""
    torch.manual_seed(2)
    model = _pyramid({}, lambda shape: torch.randn(shape) * 1.5)
    base = model.base
    view, frame = torch.tensor([0, 1]), torch.tensor([1, 2])
    rows = model.start_batch(view, frame)
    with torch.no_grad():
        model.rate_bits(rows)  # measures every row once
    with torch.no_grad():
        for name, p in base.named_parameters():
            if name.startswith("frame_grids"):
                p[rows] += 2.0 * torch.randn(p[rows].shape)  # what an optimiser step does to the batch's rows
    model.end_batch()
    for spec in model.layout:
        if spec.name.startswith("frame_grids"):
            key = spec.name.replace(".", "_")
            kept = getattr(model, f"rowstats_{key}").clone(), getattr(model, f"rowrange_{key}").clone()
            model.update_rows(spec)  # afresh, every row
            assert torch.allclose(kept[0], getattr(model, f"rowstats_{key}")), spec.name
            assert torch.equal(kept[1], getattr(model, f"rowrange_{key}")), spec.name


def test_a_batchs_latents_are_priced_under_the_gaussians_the_encoder_stores(monkeypatch, phased):
    # (with `phased`, model mode 5's: rounded to bfloat16 or the compact table's values as the encoder stores them)
    """After a step, every latent of a batch, the view grids' (priced whole) and the view-and-frame grids'
    (priced in the batch's rows, from the per-row statistics), is priced under the float32 Gaussian and in
    the symbol range export_tensors writes for its symbols. (Measured on the relaxed values, the Gaussians
    were never narrower than the noise's sqrt(1/12): a mostly-zero level's stray symbols were priced at a
    fifth of their cost and MV-Pyramid's full-resolution view-and-frame grids ran away at strong lambda:
    BENCHMARKS.md, issue 14, experiment 24.)"""
    import numpy as np

    from mvcodec.compress import qat
    from mvcodec.compress.context import context_grid
    from mvcodec.compress.decoding import segment_symbols, tensor_contexts
    from mvcodec.model.base import Role

    # export leaves out the compact table's costly pairs after training (experiment 43), which the rate term
    # does not see: the pricing is that of the table before
    monkeypatch.setattr("mvcodec.compress.coding.without_costly_pairs", lambda t, *_: (t.means, t.stds))
    torch.manual_seed(3)
    model = _pyramid({}, lambda shape: torch.randn(shape) * 1.2)
    rows = model.start_batch(torch.tensor([0, 1]), torch.tensor([0, 3]))
    with torch.no_grad():
        model.rate_bits(rows)
        for name, p in model.base.named_parameters():
            if name.startswith("frame_grids"):
                p[rows] += torch.randn(p[rows].shape)
    model.end_batch()
    priced = []
    plain = qat.gaussian_bits
    monkeypatch.setattr(
        qat,
        "gaussian_bits",
        lambda y, m, s, lo, hi, *a, **k: priced.append((m, s, lo, hi)) or plain(y, m, s, lo, hi, *a, **k),
    )
    with torch.no_grad():
        model.rate_bits(rows)
    tensors = [e.tensor for e in qat.export_tensors(model)]
    exported = {t.name: t for t in tensors}
    from mvcodec.bitstream.tensor import MODEL_PHASED, TABLE_BFLOAT16, TABLE_COMPACT

    in_mode5, compact = phased
    latents = [t for t in tensors if t.model_mode == MODEL_PHASED]
    assert bool(latents) == in_mode5
    assert all(t.table_format == (TABLE_COMPACT if compact else TABLE_BFLOAT16) for t in latents)
    symbols = dict(zip(exported, segment_symbols(tensors), strict=True))
    specs = [spec for spec in model.layout if spec.role is not Role.BIAS]  # one priced call each, in order
    for spec, (mean, std, lo, hi) in zip(specs, priced, strict=True):
        if spec.role is not Role.LATENT:
            continue
        t = exported[spec.name]
        coarse = symbols[spec.coarse] if spec.coarse else None
        means, stds = (
            torch.from_numpy(np.ascontiguousarray(a))
            for a in context_grid(t, tensor_contexts(t, symbols[t.name], coarse))
        )
        if spec.rows == "frame":
            means, stds = means[rows], stds[rows]
        assert torch.allclose(mean, means, atol=1e-6) and torch.allclose(std, stds, atol=1e-6), spec.name
        assert (int(lo), int(hi)) == (t.sym_min, t.sym_max), spec.name


def test_row_moments_from_the_histogram_equal_those_of_weighted_bincounts():
    """The per-row statistics come from one histogram of (row, group, value) where that is small and from
    three weighted bincounts otherwise: both give each group's exact count, sum and sum of squares."""
    from mvcodec.bitstream.tensor import NUM_CONTEXTS
    from mvcodec.compress.qat import _row_moments

    torch.manual_seed(3)
    for spread in (2.0, 4000.0):  # a narrow alphabet (the histogram) and a wide one (the bincounts)
        sym = torch.round(torch.randn(5, 2, 7, 9) * spread)
        ctx = torch.randint(0, NUM_CONTEXTS, sym.shape, dtype=torch.uint8)
        got = _row_moments(ctx, sym, sym.min(), sym.max())
        assert got.shape == (5, 3, NUM_CONTEXTS * 2) and got.dtype == torch.float64
        want = torch.zeros(5, 3, NUM_CONTEXTS * 2, dtype=torch.float64)
        for r in range(5):
            for c in range(2):
                for k in range(NUM_CONTEXTS):
                    y = sym[r, c][ctx[r, c] == k].double()
                    want[r, :, k * 2 + c] = torch.stack([torch.tensor(float(len(y))), y.sum(), (y * y).sum()])
        assert torch.equal(got, want), spread
    # a diverged training's values: statistics of NaN, not an exception
    sym = torch.full((1, 1, 2, 2), float("nan"))
    got = _row_moments(torch.zeros(sym.shape, dtype=torch.uint8), sym, sym.min(), sym.max())
    assert got[0, 0, 0] == 4 and torch.isnan(got[0, 1, 0])
