"""Compressing the fitted network: adaptive pruning, learned quantisation steps with QAT, and a Gaussian rate
model (the MV-HiNeRV / NVRC recipe, on MV-MGINR), then export to coded tensors.

Pruning scores every conv weight by |w| / P_layer ** 0.5 (P_layer: the layer's weight count) and drops the
lowest `sparsity` fraction over all layers with one threshold; the masks stay fixed afterwards.

Quantisation: every parameter tensor has learned log-domain steps: conv weights a step per output row times
a step per input column (step[i, j] = exp(a_i) * exp(b_j)), grids and grid embeddings a step per channel,
biases one step. During training, Quant-Noise replaces a random fraction of the weights by their quantised
values (straight-through rounding, so the steps get LSQ gradients); the fraction rises linearly to 1.
Evaluation always uses the quantised network.

Rate: symbols y = w / step are relaxed to y + U(-1/2, 1/2); each row (conv weights) or channel (grids, grid
embeddings) has a Gaussian whose mean and standard deviation are computed from its current symbols at
every step (as MV-HiNeRV), and R = -sum log2 P(y) in bits. At export the same statistics of the final
integer symbols, stored as float32, drive the range coder, so the file size is the trained rate term
evaluated on the integers. Biases are quantised but not regularised (they are a few hundred values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from mvcodec.bitstream.tensor import (
    MODEL_PER_AXIS,
    MODEL_SCALAR,
    STEP_PER_AXIS,
    STEP_RANGE,
    STEP_ROW_COLUMN,
    STEP_SCALAR,
    CodedTensor,
)
from mvcodec.compress.quantize import ExportedTensor, code_symbols, group_stats, is_conv_weight, step_grid
from mvcodec.errors import InputError
from mvcodec.model import MVMGINR, parameter_layout

PRUNE_EXPONENT = 0.5  # lambda of the pruning score |w| / P_layer ** lambda
INIT_LEVELS = 63  # initial steps: the largest weight of a row or channel is 63 steps (7-bit symbols)
NOISE_RAMP = 0.75  # the Quant-Noise rate reaches 1 after this fraction of the QAT steps
NOISE_START = 0.1


def prunable(name: str) -> bool:
    """Pruning applies to conv weights only (the synthesis blocks and the head), as in HiNeRV."""
    return is_conv_weight(name)


def coding_plan(name: str, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(step mode, step axis, model mode, model axis) of a tensor: conv weights row x column steps and one
    Gaussian (the row and column steps already bring every row's symbols to one scale, and a Gaussian per
    row would cost 64 bits for rows of a few dozen weights); grids and grid embeddings a step and a
    Gaussian per channel (axis 1); biases one of each."""
    if len(shape) == 1:
        return STEP_SCALAR, 0, MODEL_SCALAR, 0
    if prunable(name):
        return STEP_ROW_COLUMN, 0, MODEL_SCALAR, 0
    return STEP_PER_AXIS, 1, MODEL_PER_AXIS, 1


def regularised(name: str) -> bool:
    """The rate term covers grids, grid embeddings and conv weights, not the biases."""
    return not name.endswith("bias")


def prune_masks(model: MVMGINR, sparsity: float) -> dict[str, torch.Tensor]:
    """Keep-masks (bool) of the conv weights: one global threshold on |w| / P_layer ** 0.5 removes the
    `sparsity` fraction of all of them."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    weights = {n: p.detach() for n, p in model.named_parameters() if prunable(n)}
    scores = {n: w.abs().float() / w.numel() ** PRUNE_EXPONENT for n, w in weights.items()}
    flat = torch.cat([s.flatten() for s in scores.values()])
    drop = int(round(sparsity * flat.numel()))
    if drop == 0:
        return {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    threshold = torch.kthvalue(flat.cpu(), drop).values.item()
    masks = {n: s > threshold for n, s in scores.items()}
    # ties at the threshold: drop exactly `drop` weights overall (lowest scores first, in layer order)
    excess = drop - sum(int((~m).sum()) for m in masks.values())
    for n in masks:
        if excess <= 0:
            break
        tied = ((scores[n] == threshold) & masks[n]).flatten().nonzero().flatten()[:excess]
        masks[n].view(-1)[tied] = False
        excess -= len(tied)
    return masks


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest (ties to even) with the identity gradient."""
    return x + (torch.round(x) - x).detach()


def bfloat16_ste(x: torch.Tensor) -> torch.Tensor:
    """x rounded to bfloat16 values (as stored in the stream), with the identity gradient."""
    return x + (x.to(torch.bfloat16).float() - x).detach()


def _key(name: str) -> str:
    return name.replace(".", "_")


def _along(v: torch.Tensor, ndim: int, axis: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2))))


class CompressibleMVMGINR(nn.Module):
    """MV-MGINR with fixed pruning masks and (optionally) learned quantisation steps and a rate term.

    forward(view, frame) runs the network on the masked, (noisily) quantised parameters; in eval mode
    on the fully quantised ones, which are what the decoder rebuilds from the stream."""

    def __init__(self, base: MVMGINR, masks: dict[str, torch.Tensor] | None = None, quantise: bool = False):
        super().__init__()
        self.base, self.cfg, self.quantise = base, base.cfg, quantise
        self.layout = parameter_layout(base.cfg)
        params = dict(base.named_parameters())
        for name, _ in self.layout:
            if prunable(name):
                m = masks[name] if masks is not None else torch.ones_like(params[name], dtype=torch.bool)
                self.register_buffer(f"mask_{_key(name)}", m.to(params[name].device).clone())
        self.log_steps = nn.ParameterDict()
        if quantise:
            for name, shape in self.layout:
                self._init_steps(name, shape, params[name].detach())
        self.noise_rate = 1.0
        self.noise_seed = 0
        self.step_index = 0

    def _init_steps(self, name: str, shape: tuple[int, ...], w: torch.Tensor) -> None:
        step_mode, step_axis, _, _ = coding_plan(name, shape)
        w = w * self.mask(name) if prunable(name) else w
        if step_mode == STEP_SCALAR:
            peak = w.abs().max().reshape(1)
        else:
            axis = 0 if step_mode == STEP_ROW_COLUMN else step_axis
            peak = w.abs().transpose(0, axis).flatten(1).max(dim=1).values
        peak = torch.where(peak > 0, peak, peak.max().clamp_min(1e-6))
        log = torch.log(peak / INIT_LEVELS).float()
        if step_mode == STEP_ROW_COLUMN:
            log = torch.cat([log, torch.zeros(shape[1], device=w.device)])
        self.log_steps[_key(name)] = nn.Parameter(log)

    def mask(self, name: str) -> torch.Tensor | None:
        return getattr(self, f"mask_{_key(name)}", None)

    def masks(self) -> dict[str, torch.Tensor]:
        """The keep-mask of every pruned tensor, by parameter name."""
        return {n: m for n, _ in self.layout if (m := self.mask(n)) is not None}

    def steps(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """The float32 step of every element (broadcastable to shape), as the decoder forms it."""
        step_mode, step_axis, _, _ = coding_plan(name, shape)
        s = bfloat16_ste(torch.exp(self.log_steps[_key(name)]).clamp(*STEP_RANGE))
        if step_mode == STEP_SCALAR:
            return s
        if step_mode == STEP_PER_AXIS:
            return _along(s, len(shape), step_axis)
        return _along(s[: shape[0]], len(shape), 0) * _along(s[shape[0] :], len(shape), 1)

    def set_step(self, step: int, total: int) -> None:
        """Called by the training loop before every optimiser step: the Quant-Noise rate and noise seed."""
        self.step_index = step
        ramp = max(1.0, NOISE_RAMP * total)
        self.noise_rate = min(1.0, NOISE_START + (1 - NOISE_START) * step / ramp)

    def _generator(self, device: torch.device, salt: int) -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed((self.noise_seed * 1_000_003 + self.step_index * 7919 + salt) % (2**63))
        return g

    def effective_params(self, hard: bool | None = None) -> dict[str, torch.Tensor]:
        """The parameters the network runs on: masked, and quantised (fully, or by Quant-Noise in training)."""
        hard = (not self.training) if hard is None else hard
        params = dict(self.base.named_parameters())
        out = {}
        for i, (name, shape) in enumerate(self.layout):
            w = params[name]
            m = self.mask(name)
            if m is not None:
                w = w * m
            if self.quantise:
                step = self.steps(name, shape)
                y = w / step
                q = round_ste(y)
                if not hard and self.noise_rate < 1.0:
                    pick = torch.rand(shape, generator=self._generator(w.device, i), device=w.device)
                    q = torch.where(pick < self.noise_rate, q, y)
                w = q * step
            out[name] = w
        return out

    def forward(self, view: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, self.effective_params(), (view, frame))

    def rate_bits(self) -> torch.Tensor:
        """The rate term R in bits: the relaxed symbols' code length under Gaussians fitted to them."""
        params = dict(self.base.named_parameters())
        total = torch.zeros((), device=next(self.parameters()).device)
        for i, (name, shape) in enumerate(self.layout):
            if not regularised(name):
                continue
            y = params[name] / self.steps(name, shape)
            noise = torch.rand(shape, generator=self._generator(y.device, 1000 + i), device=y.device) - 0.5
            total = total + gaussian_rate(name, y + noise, self.mask(name))
        return total

    def param_groups(self, lr: float, step_lr: float) -> list[dict]:
        """Optimiser groups: the network's parameters at lr, the log steps at step_lr."""
        groups = [{"params": list(self.base.parameters()), "lr": lr, "lr_scale": 1.0}]
        if len(self.log_steps):
            groups.append({"params": list(self.log_steps.parameters()), "lr": step_lr, "lr_scale": step_lr / lr})
        return groups


def gaussian_rate(name: str, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Bits of (relaxed) symbols y under the tensor's Gaussians fitted to them (kept elements only), with
    the tails beyond the extreme symbols folded into the end symbols, as the range coder does."""
    _, _, model_mode, model_axis = coding_plan(name, tuple(y.shape))
    mean, std = group_stats(y, mask, model_axis if model_mode == MODEL_PER_AXIS else None)
    with torch.no_grad():
        rounded = torch.round(y)
        kept = rounded if mask is None else rounded[mask]
        lo, hi = (kept.min(), kept.max()) if kept.numel() else (rounded.new_zeros(()),) * 2
    upper = torch.where(rounded >= hi, torch.ones_like(y), _std_normal_cdf((y + 0.5 - mean) / std))
    lower = torch.where(rounded <= lo, torch.zeros_like(y), _std_normal_cdf((y - 0.5 - mean) / std))
    bits = -torch.log2((upper - lower).clamp_min(1e-9))
    return (bits * mask).sum() if mask is not None else bits.sum()


def stored_steps(model: CompressibleMVMGINR, name: str, scale: float = 1.0) -> np.ndarray:
    """The steps of a tensor as stored: bfloat16 values (row steps then column steps for row x column)."""
    s = (torch.exp(model.log_steps[_key(name)].detach().float().cpu()) * scale).clamp(*STEP_RANGE)
    return s.to(torch.bfloat16).float().numpy()


@torch.no_grad()
def export_tensors(model: CompressibleMVMGINR, step_scale: float = 1.0) -> list[ExportedTensor]:
    """The coded tensors of a quantising model, in stream order. step_scale multiplies every step (rate
    control after training); at 1.0 the values equal the model's eval-mode parameters bit for bit."""
    params = dict(model.base.named_parameters())
    out = []
    for name, shape in model.layout:
        w = params[name].detach().float().cpu()
        m = model.mask(name)
        mask = None if m is None else m.cpu().numpy().astype(bool)
        if m is not None:
            w = w * m.cpu()
        steps = stored_steps(model, name, step_scale)
        plan = coding_plan(name, shape)
        t = CodedTensor(name, shape, step_mode=plan[0], step_axis=plan[1], steps=steps)
        grid = torch.from_numpy(np.ascontiguousarray(step_grid(t)))
        symbols = torch.round(w / grid).numpy()
        out.append(code_symbols(name, shape, symbols, steps, mask, plan))
    return out


@dataclass(frozen=True)
class CompressConfig:
    """The compression stages after the fit: prune + fine-tune, then QAT with the rate term."""

    sparsity: float = 0.4
    prune_epochs: int = 10
    qat_epochs: int = 25
    rate_lambda: float = 8.0  # lambda of L = R + lambda * D, with R in bits per pixel and D the fit's loss
    prune_lr: float = 0.2  # fine-tuning learning rate, as a fraction of the fit's
    qat_lr: float = 0.1  # QAT learning rate of the network's parameters, as a fraction of the fit's
    step_lr: float = 25.0  # QAT learning rate of the log steps, as a multiple of the fit's


COMPRESS_PRESETS: dict[str, dict] = {
    "fast": dict(prune_epochs=3, qat_epochs=7),
    "medium": dict(prune_epochs=10, qat_epochs=25),
    "paper": dict(prune_epochs=25, qat_epochs=75),
    "slow": dict(prune_epochs=50, qat_epochs=150),
}


def compress_config(preset: str, **overrides) -> CompressConfig:
    """The preset's CompressConfig with the given fields replaced (None keeps the preset's value)."""
    cfg = CompressConfig(**COMPRESS_PRESETS[preset])
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if not 0.0 <= cfg.sparsity < 1.0:
        raise InputError(f"--sparsity must be at least 0 and below 1, got {cfg.sparsity}")
    if cfg.prune_epochs < 0 or cfg.qat_epochs < 0:
        raise InputError("--prune-epochs and --qat-epochs must be 0 or more")
    if not cfg.rate_lambda > 0:
        raise InputError(f"--lambda must be positive, got {cfg.rate_lambda}")
    return cfg
