"""Adaptive pruning (MV-HiNeRV / HiNeRV): conv weights scored by |w| / P_layer ** 0.5 (P_layer: the layer's
weight count), the lowest `sparsity` fraction over all layers dropped with one threshold."""

from __future__ import annotations

import torch

from mvcodec.model.base import ParamSpec, Role

PRUNE_EXPONENT = 0.5  # lambda of the pruning score |w| / P_layer ** lambda


def prunable(spec: ParamSpec) -> bool:
    """Pruning applies to conv weights only, as in HiNeRV."""
    return spec.role is Role.CONV_WEIGHT


def prune_masks(params: dict[str, torch.Tensor], layout: list[ParamSpec], sparsity: float) -> dict[str, torch.Tensor]:
    """Keep-masks (bool) of the conv weights among `params` (by name): one global threshold on
    |w| / P_layer ** 0.5 removes the `sparsity` fraction of all of them."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    weights = {p.name: params[p.name].detach() for p in layout if prunable(p)}
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
