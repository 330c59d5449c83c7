"""Quantisation-aware training (the MV-HiNeRV / NVRC recipe): learned steps, Quant-Noise, the rate term.

Every parameter tensor has learned log-domain steps laid out as its coding plan says (conv weights a step
per output row times a step per input column, step[i, j] = exp(a_i) * exp(b_j); grids and embeddings a
step per channel; biases one step). During training, Quant-Noise replaces a random fraction of the weights
by their quantised values (straight-through rounding, so the steps get LSQ gradients); the fraction rises
linearly to 1 over TrainConfig.noise_ramp of the steps. With the latent proxy "noise" (TrainConfig.latent_proxy),
a latent not picked is seen as y + U(-1/2, 1/2) instead of y, the relaxation its rate term prices.
Evaluation always uses the quantised network.

Rate: symbols y = w / step are relaxed to y + U(-1/2, 1/2); each group (see coding.plan_for) has a
Gaussian whose mean and standard deviation are computed from its current symbols at every step (as
MV-HiNeRV), and R = gaussian_bits(...). At export the same statistics of the final integer symbols,
stored as float32, drive the range coder, so the file size is the trained rate term evaluated on the
integers. Biases are quantised but not regularised (they are a few hundred values). A context-coded
latent (model mode 2) is priced under the Gaussians of its rounded values in each context, those the
encoder will store (see _context_bits).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from mvcodec.bitstream.tensor import (
    LAPLACE_MODES,
    LATENT_MODES,
    MAX_SYMBOL,
    MODEL_ARM,
    MODEL_CONTEXT,
    MODEL_PHASED,
    MODEL_PREDICTED,
    NO_REF,
    NUM_CONTEXTS,
    STEP_RANGE,
    STEP_ROW_COLUMN,
    STEP_SCALAR,
    context_count,
)
from mvcodec.compress import arm
from mvcodec.compress.coding import ExportedTensor, LatentContext, code_symbols, plan_for
from mvcodec.compress.context import (
    context_laplace_stats,
    context_stats,
    contexts,
    gaussians,
    phased_contexts,
    predictions,
    previous_rows,
    stored_gaussians,
)
from mvcodec.compress.gaussian import gaussian_bits, group_stats, laplace_bits
from mvcodec.compress.pruning import prunable
from mvcodec.compress.steps import step_grid
from mvcodec.model.base import Role
from mvcodec.model.registry import arch_of

ARM_STEP = 2.0**-8  # the step of the entropy-model network's weights (bitstream_spec.md section 7.3)
INIT_LEVELS = 63  # initial steps: the largest weight of a row or channel is 63 steps (7-bit symbols)
NOISE_START = 0.1
NOISE_RAMP = 0.75  # the default fraction of the steps after which Quant-Noise rounds every value


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest (ties to even) with the identity gradient."""
    return x + (torch.round(x) - x).detach()


def bfloat16_ste(x: torch.Tensor) -> torch.Tensor:
    """x rounded to bfloat16 values (as stored in the stream), with the identity gradient."""
    return x + (x.to(torch.bfloat16).float() - x).detach()


def _key(name: str) -> str:
    return name.replace(".", "_")


def _row_moments(
    ctx: torch.Tensor, sym: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, count: int = NUM_CONTEXTS
) -> torch.Tensor:
    """(rows, 3, count * channels) float64: in each row of the integer values `sym` (float, in lo..hi; shape
    (rows, channels, h, w)), each group's (context * channels + channel, the contexts `ctx` in 0..count - 1)
    count, sum and sum of squares. From one histogram of (row, group, value) where that is small (about two
    thirds of the time of three weighted bincounts); the sums of integers are exact either way, so the result
    is the same."""
    rows, channels = sym.shape[:2]
    size, device = count * channels, sym.device
    span = int(hi - lo) + 1 if torch.isfinite(hi - lo) else 2**31  # (a diverged training's values: the bincounts)
    bins = rows * size * span
    if bins <= max(4 * sym.numel(), 1 << 16) and bins < 2**31:
        offset = torch.arange(rows, device=device).view(-1, 1, 1, 1) * (size * span)
        offset = (offset + torch.arange(channels, device=device).view(1, -1, 1, 1) * span).int()
        key = ctx.to(torch.int32).mul_(channels * span).add_(offset).add_((sym - lo).to(torch.int32))
        hist = torch.bincount(key.flatten(), minlength=bins).view(rows, size, span).double()
        values = torch.arange(span, dtype=torch.float64, device=device) + lo.double()
        return torch.stack([hist.sum(dim=2), hist @ values, hist @ (values * values)], dim=1)
    group = ctx.long() * channels + torch.arange(channels, device=device).view(1, -1, 1, 1)
    group = (group + size * torch.arange(rows, device=device).view(-1, 1, 1, 1)).flatten()
    y = sym.flatten().double()
    counts = [torch.bincount(group, w, minlength=rows * size).double().view(rows, size) for w in (None, y, y * y)]
    return torch.stack(counts, dim=1)


def _phased(spec) -> bool:
    return plan_for(spec).model_mode == MODEL_PHASED


def _as_stored(spec, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 Gaussians as the encoder stores them (model mode 5's in bfloat16 or the compact table)."""
    plan = plan_for(spec)
    return stored_gaussians(plan.model_mode, mean, std, plan.compact)


class CompressibleModel(nn.Module):
    """A network of any registered architecture with fixed pruning masks and (optionally) learned
    quantisation steps and a rate term; every training phase trains one of these.

    forward(view, frame) runs the network on the masked, (noisily) quantised parameters; in eval mode
    on the fully quantised ones, which are what the decoder rebuilds from the stream. Without masks and
    quantisation it is the network itself (the fit phase)."""

    def __init__(
        self, base: nn.Module, cfg, masks: dict[str, torch.Tensor] | None = None, quantise: bool = False
    ) -> None:
        super().__init__()
        self.base, self.cfg, self.quantise = base, cfg, quantise
        self.layout = arch_of(cfg).layout(cfg)
        params = dict(base.named_parameters())
        have, declared = {n: tuple(p.shape) for n, p in params.items()}, {p.name: p.shape for p in self.layout}
        if have != declared:
            diff = sorted(set(have.items()) ^ set(declared.items()))
            raise ValueError(f"the network's parameters differ from its architecture's layout: {diff[:4]}")
        for spec in self.layout:
            if masks is not None and prunable(spec):
                m = masks.get(spec.name, torch.ones_like(params[spec.name], dtype=torch.bool))
                self.register_buffer(f"mask_{_key(spec.name)}", m.to(params[spec.name].device).clone())
        self.log_steps = nn.ParameterDict()
        if quantise:
            for spec in self.layout:
                if spec.role is Role.ARM:
                    continue  # the fixed step 2^-8 (section 7.3)
                if spec.role is not Role.LATENT:
                    self._init_steps(spec, params[spec.name].detach())
                elif self._lazy_context(spec):  # per-row statistics of its Gaussians (see update_rows; checkpointed)
                    n, c, device = spec.shape[0], spec.shape[1], params[spec.name].device
                    count = context_count(plan_for(spec).model_mode)
                    stats = torch.zeros(n, 3, count * c, dtype=torch.float64, device=device)
                    key = _key(spec.name)
                    self.register_buffer(f"rowstats_{key}", stats)
                    self.register_buffer(f"rowrange_{key}", torch.zeros(n, 2, device=device))
                    self.register_buffer(f"rowready_{key}", torch.zeros((), dtype=torch.bool, device=device))
        self.arm_names = {spec.name for spec in self.layout if spec.role is Role.ARM}
        self.noise_rate = 1.0
        self.latent_noise = False  # Quant-Noise's unrounded latents replaced by y + U(-1/2, 1/2)
        self.noise_ramp = NOISE_RAMP  # Quant-Noise's rate reaches 1 after this fraction of the steps (TrainConfig's)
        self.noise_seed = 0
        self.step_index = 0
        self.plain = not quantise and not self.masks()  # the network runs on its own parameters
        self.frame_rows = any(spec.rows == "frame" for spec in self.layout)
        self.chain = arch_of(cfg).chain  # frame t reads the frame-row tensors' rows of frames 0..t of its view
        self._batch: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None  # see start_batch
        self._read_table: torch.Tensor | None = None  # a chain's rate weight per row this epoch (plan_epoch)
        # With a chain: the frames before a batch frame's t - chain_window are read as constants (no gradient,
        # not priced, not updated by the step); None: every frame read trains
        self.chain_window: int | None = None
        # With a chain: price only the batch's own frames in the rate term, not every earlier frame it reads
        self.price_frames = False
        self._trained: torch.Tensor | None = None  # the started batch's positions in its rows that train
        self._priced: torch.Tensor | None = None  # the same, of the rows it prices (chain_window, price_frames)
        self._batch_of: tuple[torch.Tensor, torch.Tensor] | None = None  # the started batch's (view, frame)
        self._trains: torch.Tensor | None = None  # the same as a mask over its rows

    def _lazy_context(self, spec) -> bool:
        """Whether a tensor is context-coded under Gaussians (model mode 2 or 5) and priced in a batch's rows
        only, under per-row statistics."""
        gaussian = plan_for(spec).model_mode in (MODEL_CONTEXT, MODEL_PHASED)
        return spec.rows == "frame" and gaussian and self.mask(spec.name) is None

    def base_device(self) -> torch.device:
        return next(self.base.parameters()).device

    def arm_layers(self, spec, params: dict) -> list[torch.Tensor]:
        """The entropy-model network of a model_mode 3 latent as the decoder will have it: its six tensors
        rounded to multiples of 2^-8 (straight-through)."""
        names = [p.name for p in self.layout]
        first = names.index(spec.arm)
        return [
            round_ste(params[n] * (1 / ARM_STEP)).clamp(-arm.WEIGHT_MAX / ARM_STEP, arm.WEIGHT_MAX / ARM_STEP)
            * ARM_STEP
            for n in names[first : first + 6]
        ]

    def _arm_bits(
        self, spec, params: dict, rows: torch.Tensor | None, salt: int, layers: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Rate of a model_mode 3 latent: the relaxed symbols under the Gaussians the network predicts from
        their context (the anchors relaxed, with gradients; the coarser level and the previous frame rounded).
        A frame-row tensor with `rows` is priced in those of them the batch prices (priced_rows; with a chain,
        each at its rate weight), scaled to the whole tensor."""
        w, period = params[spec.name], self._row_period(spec)
        coarse = params[spec.coarse] if spec.coarse else None
        scale: torch.Tensor | float = 1.0
        if rows is not None and spec.rows == "frame":
            y, rows, scale = self._priced_values(spec, w, rows)
            with torch.no_grad():
                prev, c = self._row_neighbours(spec, w, coarse, rows)
        else:
            y = w
            with torch.no_grad():
                prev = previous_rows(torch.round(w), period)
                c = None if coarse is None else torch.round(coarse)
        y = y + torch.rand(y.shape, generator=self._generator(y.device, salt), device=y.device) - 0.5
        layers = self.arm_layers(spec, params) if layers is None else layers
        mean, std = arm.all_gaussians(y, c, prev, layers, exact=False)
        with torch.no_grad():  # the whole tensor's alphabet, as coded (not the batch rows'); round is monotone
            lo = torch.round(torch.minimum(w.min(), y.min()))
            hi = torch.round(torch.maximum(w.max(), y.max()))
        if torch.is_tensor(scale):
            return gaussian_bits(y, mean, std, lo, hi, weight=scale)
        return scale * gaussian_bits(y, mean, std, lo, hi)

    def _row_period(self, spec) -> int:
        return self.cfg.frames if spec.rows == "frame" else 0

    def _context_bits(self, spec, params: dict, rows: torch.Tensor | None, salt: int) -> torch.Tensor:
        """Rate of a context-coded latent (unit step): the relaxed symbols under the Gaussian of their
        context (from the rounded coarse level and previous frame), the Gaussians those the encoder would
        store now: measured on the rounded values, not differentiated. A frame-row tensor with `rows` is
        priced in those of them the batch prices (priced_rows), scaled to all, under Gaussians of all its
        rows from the per-row statistics that update_rows keeps current.

        Measured on the relaxed values instead, a Gaussian is never narrower than the noise's sqrt(1/12), so
        a quiet level is priced at 0.40-0.52 bits a latent whether its symbols cost the coder nothing or
        0.14 bits each, and a symbol +-1 among zeros at about 4 bits where the coder spends about 20: the
        rate term cannot see what a level's few non-zero symbols cost, and at strong lambda MV-Pyramid's
        full-resolution view-and-frame grids ran away (BENCHMARKS.md, issue 14, experiment 24). The relaxed
        values remain an estimate: under a Gaussian at the 0.1 floor the noise alone costs a zero symbol
        about 0.1 bit."""
        w, period, channels = params[spec.name], self._row_period(spec), spec.shape[1]
        coarse = params[spec.coarse] if spec.coarse else None
        lazy = rows is not None and self._lazy_context(spec)
        if lazy:
            key = _key(spec.name)
            if not bool(getattr(self, f"rowready_{key}")):
                self.update_rows(spec, params, None)
            mean, std, lo, hi = self.row_gaussians(spec)
            y, rows, scale = self._priced_values(spec, w, rows)
            with torch.no_grad():
                ctx = self._row_contexts(spec, w, coarse, rows)
        else:
            y, scale = w, 1.0
            with torch.no_grad():
                sym = torch.round(w)
                c = None if coarse is None else torch.round(coarse)
                ctx = contexts(w.shape, c, previous_rows(sym, period), w.device)
                if _phased(spec):
                    ctx = phased_contexts(ctx, sym)
        y = y + torch.rand(y.shape, generator=self._generator(y.device, salt), device=y.device) - 0.5
        if not lazy:
            with torch.no_grad():
                mean, std = _as_stored(
                    spec, *context_stats(sym, ctx, channels, context_count(plan_for(spec).model_mode))
                )
                lo, hi = sym.min(), sym.max()
        group = ctx * channels + torch.arange(channels, device=y.device).view(1, -1, 1, 1)
        if torch.is_tensor(scale):
            return gaussian_bits(y, mean[group], std[group], lo, hi, weight=scale)
        return scale * gaussian_bits(y, mean[group], std[group], lo, hi)

    def _laplace_bits(self, spec, params: dict, rows: torch.Tensor | None, salt: int) -> torch.Tensor:
        """Rate of a model_mode 4 or 6 latent (unit step): the relaxed symbols under the Laplace distribution of
        their context (mode 6: located at its location plus their prediction from the rounded neighbours),
        those the encoder would store now (context_laplace_stats of the whole tensor's rounded values, less
        their predictions in mode 6; not differentiated: a small tensor, the motion fields, so no per-row
        statistics). A frame-row tensor with `rows` is priced in those of them the batch prices
        (priced_rows), scaled to all, as _context_bits does."""
        w, period, channels = params[spec.name], self._row_period(spec), spec.shape[1]
        mode = plan_for(spec).model_mode
        with torch.no_grad():
            sym = torch.round(w.detach())
            coarse = torch.round(params[spec.coarse].detach()) if spec.coarse else None
            ctx = contexts(w.shape, coarse, previous_rows(sym, period), w.device)
            pred = None
            if mode == MODEL_PREDICTED:
                ctx, pred = phased_contexts(ctx, sym, mode), predictions(sym)
            loc, scale = context_laplace_stats(sym if pred is None else sym - pred, ctx, channels, context_count(mode))
            loc, scale = stored_gaussians(mode, loc, scale, plan_for(spec).compact)
            lo = sym.min()
            hi = torch.maximum(sym.max(), lo + 1)  # the coder's alphabet has two symbols at least
        weight: torch.Tensor | float = 1.0
        if rows is not None and spec.rows == "frame":
            y, rows, weight = self._priced_values(spec, w, rows)
            ctx = ctx[rows]
            pred = None if pred is None else pred[rows]
        else:
            y = w
        y = y + torch.rand(y.shape, generator=self._generator(y.device, salt), device=y.device) - 0.5
        group = ctx * channels + torch.arange(channels, device=y.device).view(1, -1, 1, 1)
        loc = loc[group] if pred is None else loc[group] + pred
        if torch.is_tensor(weight):
            return laplace_bits(y, loc, scale[group], lo, hi, weight=weight)
        return weight * laplace_bits(y, loc, scale[group], lo, hi)

    def row_gaussians(self, spec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A batch-row-priced latent's Gaussians (float32 means and stds, index context * C + channel) and
        symbol range (lo, hi) from its per-row statistics: those the encoder would store for its symbols now
        (it widens a one-symbol range to two)."""
        key = _key(spec.name)
        table, span = getattr(self, f"rowstats_{key}"), getattr(self, f"rowrange_{key}")
        count, total, squares = table.sum(dim=0)
        mean = total / count.clamp_min(1)
        var = (squares / count.clamp_min(1) - mean * mean).clamp_min(0)
        mean, std = _as_stored(spec, *gaussians(count, mean, var))
        return mean, std, span[:, 0].min(), span[:, 1].max()

    def plan_epoch(self, order: torch.Tensor, batch_size: int) -> None:
        """Before an epoch of training (and on resuming one): the epoch's sample order (view * frames + frame),
        served batch_size at a time. With prediction along time (chain), it fixes each row's rate weight: the
        epoch's steps over the steps that price the row, so that over the epoch the weighted rows a batch
        prices exactly the whole tensor, whatever the order, though the early frames are read by most steps
        and the last ones by few (with price_frames, each row is priced by the one step whose batch holds its
        frame)."""
        if not self.chain:
            return
        frames = self.cfg.frames
        reads = torch.zeros(self.cfg.views * frames, dtype=torch.float64)
        batches = order.cpu().split(batch_size)
        for idx in batches:
            reads[self.batch_rows(idx // frames, idx % frames, always=True, trained=True, priced=True).cpu()] += 1
        self._read_table = (len(batches) / reads).float().to(order.device)

    def _read_weights(self, rows: torch.Tensor) -> torch.Tensor:
        """The rate weight of each row a chain's batch prices (see plan_epoch)."""
        if self._read_table is None:
            raise RuntimeError("plan_epoch must give the epoch's order before a chain's rows are priced")
        return self._read_table[rows]

    def _row_neighbours(
        self, spec, w: torch.Tensor, coarse: torch.Tensor | None, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The rounded previous rows of a frame-row tensor's `rows` (zero for the first row of a run) and the
        rounded rows of its coarser level (None without one)."""
        prev = torch.round(w[(rows - 1).clamp_min(0)])
        prev[torch.nonzero(rows % self._row_period(spec) == 0).flatten()] = 0  # the first rows of runs
        return prev, None if coarse is None else torch.round(coarse[rows])

    def _row_contexts(
        self,
        spec,
        w: torch.Tensor,
        coarse: torch.Tensor | None,
        rows: torch.Tensor,
        dtype: torch.dtype = torch.long,
        sym: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The contexts (of `dtype`) of a frame-row tensor's `rows` from the rounded values of its coarser
        level's rows and of the previous rows (none for the first row of a run); model mode 5's also from
        the rounded values of the rows themselves (`sym`, where the caller has them)."""
        prev, c = self._row_neighbours(spec, w, coarse, rows)
        ctx = contexts((len(rows), *w.shape[1:]), c, prev, w.device, dtype)
        if not _phased(spec):
            return ctx
        return phased_contexts(ctx, torch.round(w[rows]) if sym is None else sym)

    @torch.no_grad()
    def update_rows(self, spec, params: dict | None = None, rows: torch.Tensor | None = None) -> None:
        """Measure a batch-row-priced tensor's statistics in `rows` (all where None): per row, the count, sum
        and sum of squares of its rounded values (its symbols) in each context and channel, and its symbol
        range. Called after every optimiser step for the rows it moved and the rows after them (whose
        contexts read them), so the Gaussians under which a batch is priced are those of the current values
        (measured only every 16 steps, they let the rate of a frame-grid level run away: BENCHMARKS.md,
        issue 14, experiment 15)."""
        params = dict(self.base.named_parameters()) if params is None else params
        w = params[spec.name].detach()
        coarse = params[spec.coarse].detach() if spec.coarse else None
        key = _key(spec.name)
        table, span = getattr(self, f"rowstats_{key}"), getattr(self, f"rowrange_{key}")
        if rows is None:
            rows = torch.arange(spec.shape[0], device=w.device)
        sym = torch.round(w[rows])
        ctx = self._row_contexts(spec, w, coarse, rows, dtype=torch.uint8, sym=sym)
        low, high = sym.flatten(1).min(dim=1).values, sym.flatten(1).max(dim=1).values
        table[rows] = _row_moments(ctx, sym, low.min(), high.max(), context_count(plan_for(spec).model_mode))
        span[rows, 0] = low
        span[rows, 1] = high
        getattr(self, f"rowready_{key}").fill_(True)

    def end_batch(self) -> None:
        """After the optimiser step of a started batch: update_rows for its rows and the rows after them."""
        if self._batch is None or not self.quantise:
            return
        rows = self.step_rows()
        params = dict(self.base.named_parameters())
        for spec in self.layout:
            if self._lazy_context(spec) and bool(getattr(self, f"rowready_{_key(spec.name)}")):
                after = rows[(rows + 1) % self._row_period(spec) != 0] + 1
                self.update_rows(spec, params, torch.unique(torch.cat([rows, after])))

    def _init_steps(self, spec, w: torch.Tensor) -> None:
        plan = plan_for(spec)
        m = self.mask(spec.name)
        w = w * m if m is not None else w
        if plan.step_mode == STEP_SCALAR:
            peak = w.abs().max().reshape(1)
        else:
            axis = 0 if plan.step_mode == STEP_ROW_COLUMN else plan.step_axis
            peak = w.abs().transpose(0, axis).flatten(1).max(dim=1).values
        peak = torch.where(peak > 0, peak, peak.max().clamp_min(1e-6))
        log = torch.log(peak / INIT_LEVELS).float()
        if plan.step_mode == STEP_ROW_COLUMN:
            log = torch.cat([log, torch.zeros(spec.shape[1], device=w.device)])
        self.log_steps[_key(spec.name)] = nn.Parameter(log)

    def mask(self, name: str) -> torch.Tensor | None:
        return getattr(self, f"mask_{_key(name)}", None)

    def masks(self) -> dict[str, torch.Tensor]:
        """The keep-mask of every pruned tensor, by parameter name."""
        return {p.name: m for p in self.layout if (m := self.mask(p.name)) is not None}

    def steps(self, spec) -> torch.Tensor | None:
        """The float32 step of every element (broadcastable to its shape), as the decoder forms it; None for
        a latent, whose step is 1."""
        if spec.role is Role.LATENT:
            return None
        if spec.role is Role.ARM:
            return torch.full((1,) * len(spec.shape), ARM_STEP, device=self.base_device())
        plan = plan_for(spec)
        s = bfloat16_ste(torch.exp(self.log_steps[_key(spec.name)]).clamp(*STEP_RANGE))
        return step_grid(plan.step_mode, plan.step_axis, s, spec.shape)

    def set_step(self, step: int, total: int) -> None:
        """Called by the training loop before every optimiser step: the Quant-Noise rate and noise seed."""
        self.step_index = step
        ramp = max(1.0, self.noise_ramp * total)
        self.noise_rate = min(1.0, NOISE_START + (1 - NOISE_START) * step / ramp)

    def _generator(self, device: torch.device, salt: int) -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed((self.noise_seed * 1_000_003 + self.step_index * 7919 + salt) % (2**63))
        return g

    def _compact(self, spec) -> bool:
        """Whether a tensor's rows are frames the optimiser updates row by row (unpruned frame-row tensors)."""
        return spec.rows == "frame" and self.mask(spec.name) is None

    def _priced_values(
        self, spec, w: torch.Tensor, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | float]:
        """The values and rows of a frame-row tensor that the batch of `rows` prices (priced_rows) and the
        weight that scales them to the whole tensor: with a chain each row's (plan_epoch), else the tensor's
        rows over the batch's."""
        y = self._rows_of(spec.name, w, rows)
        if (pick := self._priced_positions(rows)) is not None:
            y, rows = y[pick], rows[pick]
        scale = self._read_weights(rows).view(-1, 1, 1, 1) if self.chain else spec.shape[0] / len(rows)
        return y, rows, scale

    def _rows_of(self, name: str, w: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """w[rows]: the started batch's leaf where `rows` are its rows, else an indexed copy."""
        if self._batch is not None and self._batch[0] is rows and name in self._batch[1]:
            return self._batch[1][name]
        return w[rows]

    def effective_params(self, hard: bool | None = None, rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The parameters the network runs on: masked, and quantised (fully, or by Quant-Noise in training).
        With `rows` (sorted, distinct: the frames a batch reads), an unpruned tensor whose rows are frames is
        given in those rows only, in that order (the network is then called with rows=rows)."""
        hard = (not self.training) if hard is None else hard
        params = dict(self.base.named_parameters())
        out = {}
        for i, spec in enumerate(self.layout):
            w = params[spec.name]
            part = rows is not None and self._compact(spec)
            if part:
                w = self._rows_of(spec.name, w, rows)
                if self._windowed(rows):
                    w = torch.where(self._trains.view(-1, *[1] * (w.dim() - 1)), w, w.detach())
            m = self.mask(spec.name)
            if m is not None:
                w = w * m
            if self.quantise:
                step = self.steps(spec)
                y = w if step is None else w / step
                q = round_ste(y)
                if not hard and self.noise_rate < 1.0:
                    pick = torch.rand(y.shape, generator=self._generator(w.device, i), device=w.device)
                    if self.latent_noise and spec.role is Role.LATENT:
                        y = y + torch.rand(y.shape, generator=self._generator(w.device, 500 + i), device=w.device) - 0.5
                    q = torch.where(pick < self.noise_rate, q, y)
                w = q if step is None else q * step
            out[spec.name] = w
        return out

    def batch_rows(
        self,
        view: torch.Tensor,
        frame: torch.Tensor,
        always: bool = False,
        trained: bool = False,
        priced: bool = False,
    ) -> torch.Tensor | None:
        """The rows of the frame-row tensors a training batch reads, sorted (None in eval mode or without such
        tensors, unless `always`): the batch's frames, and with prediction along time (chain) every earlier
        frame of their views; with `trained`, those of them the step trains (see chain_window); with
        `priced`, those of them its rate term prices (the batch's frames alone with price_frames)."""
        if not (self.frame_rows and (self.training or always)):
            return None
        first = view * self.cfg.frames
        if not self.chain or (priced and self.price_frames):
            return torch.unique(first + frame)
        window = self.chain_window if (trained or priced) and self.chain_window is not None else self.cfg.frames
        runs = [
            torch.arange(a + max(0, t - window), a + t + 1) for a, t in zip(first.tolist(), frame.tolist(), strict=True)
        ]
        return torch.unique(torch.cat(runs)).to(view.device)

    def start_batch(self, view: torch.Tensor, frame: torch.Tensor) -> torch.Tensor | None:
        """Before a training step: the batch's rows (batch_rows), each unpruned frame-row tensor's rows copied
        to a leaf tensor of its own, which the step's forward and rate term read. The step then never touches
        the whole tensors (at 320x180 x 64 frames, 4.9M values filled with zero gradients, copied and clipped
        at every step: BENCHMARKS.md, issue 14, experiment 12); batch_grads() hands the leaves' gradients to
        the row-lazy optimiser, which updates those rows alone."""
        rows = self.batch_rows(view, frame)
        self._batch, self._trained, self._trains, self._priced = None, None, None, None
        self._batch_of = (view, frame)
        if rows is not None:
            params = dict(self.base.named_parameters())
            leaves = {
                spec.name: params[spec.name].detach()[rows].requires_grad_()
                for spec in self.layout
                if self._compact(spec)
            }
            self._batch = (rows, leaves)
            if self.chain and self.chain_window is not None:
                self._trained = torch.searchsorted(rows, self.batch_rows(view, frame, trained=True))
                self._trains = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
                self._trains[self._trained] = True
            if self.chain and (self.price_frames or self.chain_window is not None):
                self._priced = torch.searchsorted(rows, self.batch_rows(view, frame, trained=True, priced=True))
        return rows

    def _windowed(self, rows: torch.Tensor | None) -> bool:
        """Whether `rows` are the started batch's and only some of them train (chain_window)."""
        return self._trained is not None and self._batch is not None and self._batch[0] is rows

    def _priced_positions(self, rows: torch.Tensor) -> torch.Tensor | None:
        """The positions in `rows` that the rate term prices, where `rows` are the started batch's and that is
        not all of them (chain_window, price_frames); else None."""
        if self._priced is None or self._batch is None or self._batch[0] is not rows:
            return None
        return self._priced

    def step_rows(self) -> torch.Tensor | None:
        """The started batch's rows that its optimiser step updates (batch_grads' rows)."""
        if self._batch is None:
            return None
        rows = self._batch[0]
        return rows if self._trained is None else rows[self._trained]

    def priced_rows(self) -> torch.Tensor | None:
        """The started batch's rows that its rate term prices (all it reads unless chain_window or price_frames
        leave some out)."""
        if self._batch is None:
            return None
        rows = self._batch[0]
        return rows if self._priced is None else rows[self._priced]

    def batch_leaves(self) -> list[torch.Tensor]:
        """The started batch's leaf tensors (their .grad after backward)."""
        return [] if self._batch is None else list(self._batch[1].values())

    def batch_grads(self) -> dict[torch.Tensor, torch.Tensor]:
        """After backward: the gradient of each frame-row parameter in the started batch's rows (parameter ->
        gradient of shape (len(rows), ...)), for RowAdam.step(rows, grads)."""
        if self._batch is None:
            return {}
        params = dict(self.base.named_parameters())
        pick = self._trained
        return {
            params[name]: leaf.grad if pick is None else leaf.grad[pick]
            for name, leaf in self._batch[1].items()
            if leaf.grad is not None
        }

    def forward(self, view: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.frame_rows):
            if self.plain:
                return self.base(view, frame)
            return functional_call(self.base, self.effective_params(), (view, frame))
        # the started batch if it is this one (its rows alone do not tell: the priced rows depend on the frames)
        started = self._batch is not None and self._batch_of is not None
        if started and all(torch.equal(a, b) for a, b in zip(self._batch_of, (view, frame), strict=True)):
            rows = self._batch[0]
        else:
            rows = self.start_batch(view, frame)
        params = self.effective_params(rows=rows)
        if self.plain:  # the batch's leaves, every other tensor as it is
            params = {name: params[name] for name in self._batch[1]}
        return functional_call(self.base, params, (view, frame), {"rows": rows})

    def rate_bits(self, rows: torch.Tensor | None = None) -> torch.Tensor | None:
        """The rate term R in bits (None without quantisation): the relaxed symbols' code length under
        Gaussians fitted to them (a context-coded latent's to its rounded values, as the encoder's), the
        tails beyond the extreme symbols folded as the range coder does.
        With `rows` (the frames a batch reads), a context-coded tensor whose rows are frames is priced in
        those of them the batch prices (priced_rows: all it reads, unless a chain's chain_window or
        price_frames leave some out), scaled to the whole tensor (a chain's at plan_epoch's weights), under
        Gaussians measured on the whole tensor (not differentiated): an estimate exact on average over an
        epoch, at the cost of the batch's rows. Without a chain its gradients reach each row once an epoch,
        as the distortion's do, which only the row-lazy optimiser (train/optim.py) follows stably
        (BENCHMARKS.md, issue 14, experiments 6 and 7); a chain's early rows are priced by most steps, or,
        with price_frames, once an epoch while the distortion reaches them at every step that reads them.
        Every other tensor is priced whole."""
        if not self.quantise:
            return None
        params = dict(self.base.named_parameters())
        networks: dict[str, list[torch.Tensor]] = {}
        total = torch.zeros((), device=next(self.parameters()).device)
        for i, spec in enumerate(self.layout):
            if spec.role is Role.BIAS:
                continue
            plan = plan_for(spec)
            mode = plan.model_mode
            if mode in (MODEL_CONTEXT, MODEL_PHASED):
                total = total + self._context_bits(spec, params, rows, 1000 + i)
                continue
            if mode in LAPLACE_MODES:
                total = total + self._laplace_bits(spec, params, rows, 1000 + i)
                continue
            if mode == MODEL_ARM:  # one network for every such tensor: rounded once
                if spec.arm not in networks:
                    networks[spec.arm] = self.arm_layers(spec, params)
                total = total + self._arm_bits(spec, params, rows, 1000 + i, networks[spec.arm])
                continue
            step, mask = self.steps(spec), self.mask(spec.name)
            y = params[spec.name] if step is None else params[spec.name] / step
            noise = torch.rand(spec.shape, generator=self._generator(y.device, 1000 + i), device=y.device) - 0.5
            y = y + noise
            mean, std = group_stats(y, mask, plan.group_axis)
            with torch.no_grad():
                rounded = torch.round(y)
                kept = rounded if mask is None else rounded[mask]
                lo, hi = (kept.min(), kept.max()) if kept.numel() else (rounded.new_zeros(()),) * 2
            total = total + gaussian_bits(y, mean, std, lo, hi, mask)
        return total

    def param_groups(self, lr: float, step_lr: float) -> list[dict]:
        """Optimiser groups: the network's parameters at lr times their role's scale (the architecture's
        lr_scales), the log steps at step_lr; the tensors whose rows are frames in groups marked "rows",
        which train/optim.RowAdam updates in the batch's rows only."""
        scales = arch_of(self.cfg).lr_scales
        params = dict(self.base.named_parameters())
        by_scale: dict[tuple[float, bool], list] = {}
        for spec in self.layout:
            lazy = spec.rows == "frame" and self.mask(spec.name) is None
            by_scale.setdefault((scales.get(spec.role, 1.0), lazy), []).append(params[spec.name])
        groups = [{"params": ps, "lr": lr * s, "lr_scale": s, "rows": lazy} for (s, lazy), ps in by_scale.items()]
        if len(groups) == 1:  # one group: the parameters in the order the network registers them
            groups[0]["params"] = list(self.base.parameters())
        if len(self.log_steps):
            groups.append({"params": list(self.log_steps.parameters()), "lr": step_lr, "lr_scale": step_lr / lr})
        return groups


def stored_steps(model: CompressibleModel, name: str, scale: float = 1.0) -> np.ndarray:
    """The steps of a tensor as stored: bfloat16 values (row steps then column steps for row x column); a
    latent's is the unit step."""
    key = _key(name)
    if name in model.arm_names:  # fixed whatever the rate control's scale: the decoder needs the 2^-8 grid
        return np.full(1, ARM_STEP, np.float32)
    log = model.log_steps[key].detach().float().cpu() if key in model.log_steps else torch.zeros(1)
    s = (torch.exp(log) * scale).clamp(*STEP_RANGE)
    return s.to(torch.bfloat16).float().numpy()


@torch.no_grad()
def export_tensors(model: CompressibleModel, step_scale: float = 1.0) -> list[ExportedTensor]:
    """The coded tensors of a quantising model, in stream order. step_scale multiplies every step (rate
    control after training); at 1.0 the values equal the model's eval-mode parameters bit for bit."""
    params = dict(model.base.named_parameters())
    out, symbols_of, index_of = [], {}, {spec.name: i for i, spec in enumerate(model.layout)}
    for spec in model.layout:
        w = params[spec.name].detach().float().cpu()
        m = model.mask(spec.name)
        mask = None if m is None else m.cpu().numpy().astype(bool)
        if m is not None:
            w = w * m.cpu()
        steps = stored_steps(model, spec.name, step_scale)
        plan = plan_for(spec)
        grid = step_grid(plan.step_mode, plan.step_axis, torch.from_numpy(steps), spec.shape)
        symbols = torch.round(w / grid).numpy()
        if spec.role is Role.ARM:
            limit = arm.WEIGHT_MAX / ARM_STEP
            symbols = np.clip(symbols, -limit, limit)
        symbols_of[spec.name] = np.clip(symbols, -MAX_SYMBOL, MAX_SYMBOL).astype(np.int32)  # as coded
        context = None
        if plan.model_mode in LATENT_MODES:
            ref = index_of[spec.coarse] if spec.coarse else NO_REF
            if ref != NO_REF and ref >= index_of[spec.name]:
                raise ValueError(f"{spec.name}: its coarser level {spec.coarse} comes after it in the layout")
            context = LatentContext(ref, symbols_of.get(spec.coarse), model._row_period(spec))
            if plan.model_mode == MODEL_ARM:
                first = index_of[spec.arm]
                if first + 6 > index_of[spec.name]:
                    raise ValueError(f"{spec.name}: its entropy model {spec.arm} does not come before it")
                net = arm.layers_of([e.values for e in out[first : first + 6]])
                context = LatentContext(context.coarse_ref, context.coarse_symbols, context.row_period, first, net)
        out.append(code_symbols(spec, symbols, steps, mask, plan, context=context))
    return out
