"""The training optimiser: Adam, with row-lazy updates for tensors whose rows are frames.

A tensor whose axis 0 is indexed by (view, frame) (ParamSpec.rows == "frame") gets a gradient only in the
rows a batch reads, once an epoch. Plain Adam moves every row at every step on its momentum, and at a visit
by about lr (1 - beta1) / sqrt(1 - beta2^visits) per unit of gradient, several times the learning rate; on
unit-step latents that never settles (BENCHMARKS.md, issue 14, experiments 6 and 7). Here such a tensor's
rows are updated only when a batch reads them, each row with its own step count, as Adam would update a
tensor that held that row alone (lazy Adam, as for embeddings); the moments of the other rows stay put.
The gradient of those rows comes either in the parameter's .grad or, where training differentiated a copy
of the batch's rows alone (CompressibleModel.start_batch), compact in `grads`; the two add.
"""

from __future__ import annotations

import torch


class RowAdam(torch.optim.Adam):
    """torch.optim.Adam, except in parameter groups marked {"rows": True}: there step(rows) updates only the
    given rows of axis 0. State of such a parameter: exp_avg, exp_avg_sq (its shape) and row_step (one count
    a row)."""

    @torch.no_grad()
    def step(self, closure=None, rows: torch.Tensor | None = None, grads: dict | None = None):
        """One step; in the row groups, of the given rows (all where None), with their gradient from .grad
        and/or grads[p] (shape (len(rows), ...))."""
        if closure is not None:
            raise ValueError("RowAdam takes no closure")
        grads = grads or {}
        for group in self.param_groups:
            if not group.get("rows"):
                continue
            if group["weight_decay"] or group["amsgrad"] or group["maximize"]:
                raise ValueError("RowAdam's row groups support plain Adam only")
            for p in group["params"]:
                if p.grad is None and p not in grads:
                    continue
                self._row_update(p, group, rows, grads.get(p))
                p.grad = None  # Adam below skips a parameter without a gradient
        return super().step()

    def _row_update(
        self, p: torch.Tensor, group: dict, rows: torch.Tensor | None, compact: torch.Tensor | None
    ) -> None:
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            state["row_step"] = torch.zeros(p.shape[0], dtype=torch.float32, device=p.device)
        if rows is None:
            rows = torch.arange(p.shape[0], device=p.device)
        if compact is not None and compact.shape != (len(rows), *p.shape[1:]):
            shape = tuple(compact.shape)
            raise ValueError(f"a compact gradient of shape {shape} for {len(rows)} rows of {tuple(p.shape)}")
        beta1, beta2 = group["betas"]
        g = p.grad[rows] if p.grad is not None else compact
        if p.grad is not None and compact is not None:
            g = g + compact
        m = state["exp_avg"][rows].mul_(beta1).add_(g, alpha=1 - beta1)
        v = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(g, g, value=1 - beta2)
        t = state["row_step"][rows] + 1
        view = (-1,) + (1,) * (p.ndim - 1)
        bias1 = (1 - beta1**t).view(view)
        bias2 = (1 - beta2**t).view(view)
        update = (m / bias1) / ((v / bias2).sqrt_().add_(group["eps"]))
        p[rows] -= group["lr"] * update
        state["exp_avg"][rows] = m
        state["exp_avg_sq"][rows] = v
        state["row_step"][rows] = t
