"""Intra-coding lab bench (issue 14, experiment 22): a latent-pyramid image codec outside the product, to
measure in minutes which of Cool-Chic's tools close MV-Pyramid's intra gap, before any is built into the
codec. Each view's frame is one image; one synthesis (and one entropy model) serves all views.

The rate is the ideal code length of the rounded latents under the model (no range coder, no side
information) plus --weight-bits per network parameter; the quality is PSNR-YUV (6:1:1) of the rounded
8-bit output. So the figures compare variants with each other; BENCHMARKS.md calibrates the baseline
against a real mvenc stream. Variants (each a flag):

  --up bilinear|learned   each level bilinearly upsampled to the frame (MV-Pyramid) | a cascade of x2
                          stages with a learned separable symmetric 8-tap filter a stage (bicubic init)
  --synth light|residual  MV-Pyramid's 1x1 24, 1x1 24, 3x3 | 1x1 40, 1x1 3, two residual 3x3 (zero init)
  --entropy factorised|context|arm   a Gaussian per level fitted to its values | MV-Pyramid's mode 2 (a
                          Gaussian per context of the coarser level, measured on the relaxed values
                          as the codec did before experiment 24) | a Laplace whose mean and scale an
                          MLP predicts from 12 causal neighbours and the coarser level (Cool-Chic's ARM)
  --batch N, --rgb        N views a step (experiment 23) | RGB through a sigmoid, converted to YUV 4:2:0
  --proxy noise|mixed     y + U(-1/2, 1/2) for distortion and rate, hard rounding (straight-through) over
                          the last --hard fraction | MV-Pyramid's Quant-Noise mix (rounded or continuous)

    python tools/intra_lab.py /tmp/intra/v*_texture_320x180_yuv420p.yuv --fps 6 --lmbda 512
"""

from __future__ import annotations

import json
import math
import time

import click
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mvcodec.color import ColorSpec, rgb_to_yuv420
from mvcodec.compress.arm import CAUSAL  # the codec's causal neighbours (mode 3), the lab's too
from mvcodec.compress.context import context_stats, contexts
from mvcodec.compress.gaussian import gaussian_bits
from mvcodec.io import open_source
from mvcodec.io.formats import parse_fps

ROWS = [(dy, dx) for dy in (-1, -2) for dx in (-2, -1, 0, 1, 2)] + [(-3, 0), (-3, -1), (-3, 1)]  # rows above only
CROSS = [(-1, 0), (0, -1), (0, 1), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1), (-2, 0), (0, -2), (0, 2), (2, 0)]
BICUBIC_HALF = [-0.0234375, -0.0703125, 0.2265625, 0.8671875]  # x2 bicubic (a = -0.75) taps, one half


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x moved so that out[i, j] = x[i + dy, j + dx] (zero outside)."""
    h, w = x.shape[-2:]
    p = F.pad(x, (3, 3, 3, 3))
    return p[..., 3 + dy : 3 + dy + h, 3 + dx : 3 + dx + w]


class Up2(nn.Module):
    """x2 upsampling with a learned separable symmetric 8-tap transposed-conv filter (bicubic init)."""

    def __init__(self) -> None:
        super().__init__()
        self.taps = nn.Parameter(torch.tensor(BICUBIC_HALF))

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        k = torch.cat([self.taps, self.taps.flip(0)])
        c = x.shape[1]
        x = F.pad(x, (2, 2, 2, 2), mode="replicate")
        x = F.conv_transpose2d(x, k.view(1, 1, 1, 8).expand(c, 1, 1, 8), stride=(1, 2), groups=c)
        x = F.conv_transpose2d(x, k.view(1, 1, 8, 1).expand(c, 1, 8, 1), stride=(2, 1), groups=c)
        return x[..., 7 : 7 + size[0], 7 : 7 + size[1]]


class Lab(nn.Module):
    def __init__(self, views: int, h: int, w: int, levels: int, up: str, synth: str, entropy: str, context: str):
        super().__init__()
        self.context = context
        self.sizes = [(math.ceil(h / 2**k), math.ceil(w / 2**k)) for k in range(levels)]
        self.latents = nn.ParameterList([nn.Parameter(torch.zeros(views, 1, *s)) for s in self.sizes])
        self.up, self.synth_kind, self.entropy = up, synth, entropy
        if up == "learned":
            self.ups = nn.ModuleList([Up2() for _ in range(levels - 1)])
        if synth == "light":
            self.synth = nn.ModuleList([nn.Conv2d(levels, 24, 1), nn.Conv2d(24, 24, 1), nn.Conv2d(24, 3, 3, padding=1)])
        else:
            self.synth = nn.ModuleList(
                [
                    nn.Conv2d(levels, 40, 1),
                    nn.Conv2d(40, 3, 1),
                    nn.Conv2d(3, 3, 3, padding=1),
                    nn.Conv2d(3, 3, 3, padding=1),
                ]
            )
            for conv in self.synth[2:]:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
        if entropy == "arm":
            k = len(CAUSAL) + 1
            self.arm = nn.Sequential(
                nn.Conv2d(k, 24, 1), nn.ReLU(), nn.Conv2d(24, 24, 1), nn.ReLU(), nn.Conv2d(24, 2, 1)
            )

    def net_params(self) -> int:
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith("latents"))

    def upsample(self, ys: list[torch.Tensor]) -> torch.Tensor:
        full = self.sizes[0]
        if self.up == "bilinear":
            return torch.cat(
                [ys[0]] + [F.interpolate(y, size=full, mode="bilinear", align_corners=False) for y in ys[1:]], 1
            )
        acc = ys[-1]
        for lv in range(len(ys) - 2, -1, -1):
            acc = torch.cat([ys[lv], self.ups[lv](acc, self.sizes[lv])], 1)
        return acc

    def decode(self, ys: list[torch.Tensor]) -> torch.Tensor:
        x = self.upsample(ys)
        if self.synth_kind == "light":
            x = F.gelu(self.synth[0](x))
            x = F.gelu(self.synth[1](x))
            return self.synth[2](x) + 0.5
        x = F.relu(self.synth[0](x))
        x = self.synth[1](x)
        x = F.relu(x + self.synth[2](x))
        return x + self.synth[3](x) + 0.5

    def contexts(self, y: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """The ARM's inputs at every position: the neighbours a decoder has when it decodes that position."""
        if self.context == "causal":
            return torch.cat([shifted(y, dy, dx) for dy, dx in CAUSAL] + [coarse], 1)
        if self.context == "rows":
            return torch.cat([shifted(y, dy, dx) for dy, dx in ROWS[: len(CAUSAL)]] + [coarse], 1)
        # checkerboard: anchors (i + j even) first from the coarse level only, then the rest from the anchors
        h, w = y.shape[-2:]
        ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        anchor = ((ii + jj) % 2 == 0).to(y.dtype)
        ya = y * anchor
        near = torch.cat([shifted(ya, dy, dx) for dy, dx in CROSS] + [coarse], 1)
        return near * (1 - anchor) + torch.cat([torch.zeros_like(near[:, :-1]), coarse], 1) * anchor

    def bits(self, ys: list[torch.Tensor]) -> torch.Tensor:
        total = ys[0].new_zeros(())
        for lv, y in enumerate(ys):
            if self.entropy == "factorised":
                mu, sd = y.mean().detach(), y.std().detach().clamp_min(0.05)
                d = torch.distributions.Normal(mu, sd)
                p = d.cdf(y + 0.5) - d.cdf(y - 0.5)
            elif self.entropy == "context":  # MV-Pyramid's mode 2: a Gaussian per context of the coarser level
                with torch.no_grad():
                    c = torch.round(ys[lv + 1]) if lv + 1 < len(ys) else None
                    ctx = contexts(y.shape, c, None, y.device)
                    mean, std = context_stats(y, ctx, 1)
                    lo, hi = torch.round(y).min(), torch.round(y).max()
                total = total + gaussian_bits(y, mean[ctx], std[ctx], lo, hi)
                continue
            else:
                coarse = (
                    F.interpolate(ys[lv + 1], size=y.shape[-2:], mode="nearest")
                    if lv + 1 < len(ys)
                    else torch.zeros_like(y)
                )
                out = self.arm(self.contexts(y, coarse))
                mu, b = out[:, :1], torch.exp(out[:, 1:2] - 1).clamp(1e-3, 1e3)
                p = laplace_cdf(y + 0.5, mu, b) - laplace_cdf(y - 0.5, mu, b)
            total = total - torch.log2(p.clamp_min(2**-16)).sum()
        return total


def laplace_cdf(v: torch.Tensor, mu: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.5 * torch.sign(v - mu) * (1 - torch.exp(-(v - mu).abs() / b))


def yuv420(x: torch.Tensor) -> list[torch.Tensor]:
    return [x[:, 0], F.avg_pool2d(x[:, 1:2], 2)[:, 0], F.avg_pool2d(x[:, 2:3], 2)[:, 0]]


def yuv420_of(x: torch.Tensor, rgb: bool, color: ColorSpec) -> list[torch.Tensor]:
    """The synthesis output as YUV 4:2:0 in [0, 1]: direct, or RGB through a sigmoid converted as mvenc trains."""
    if not rgb:
        return yuv420(x)
    return [p / 255 for p in rgb_to_yuv420(torch.sigmoid(x - 0.5), 8, color)]


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--fps", default="6")
@click.option("--steps", default=3200, show_default=True)
@click.option("--lmbda", default=512.0, show_default=True, help="L = D + bits per pixel / lmbda (mvenc -q 4: 512).")
@click.option("--levels", default=5, show_default=True)
@click.option("--up", type=click.Choice(["bilinear", "learned"]), default="bilinear")
@click.option("--synth", type=click.Choice(["light", "residual"]), default="light")
@click.option("--entropy", type=click.Choice(["factorised", "context", "arm"]), default="factorised")
@click.option("--batch", default=0, help="Views a step (0: all); the rate is priced on every view's latents.")
@click.option("--rgb", is_flag=True, help="Output RGB through a sigmoid, converted to YUV 4:2:0 (as MV-Pyramid).")
@click.option("--context", type=click.Choice(["causal", "rows", "checkerboard"]), default="causal")
@click.option("--proxy", type=click.Choice(["noise", "mixed"]), default="noise")
@click.option("--warm", default=0.0, show_default=True, help="Fraction of the steps first fitted with no rate term.")
@click.option("--hard", default=0.1, show_default=True, help="Fraction of the steps trained on rounded latents.")
@click.option("--lr", default=1e-2, show_default=True)
@click.option("--latent-lr", default=30.0, show_default=True, help="The latents' lr as a multiple of --lr.")
@click.option("--weight-bits", default=6.0, show_default=True, help="Bits counted per network parameter.")
@click.option("--seed", default=0)
def main(
    inputs,
    fps,
    steps,
    lmbda,
    levels,
    up,
    synth,
    entropy,
    batch,
    rgb,
    context,
    proxy,
    warm,
    hard,
    lr,
    latent_lr,
    weight_bits,
    seed,
):
    torch.manual_seed(seed)
    src = open_source(list(inputs), fps=parse_fps(fps), frames=1)
    planes = [next(iter(src.frames(v))) for v in range(src.num_views)]
    color = ColorSpec(chroma_siting=getattr(src, "siting", "left"))
    src.close()
    target = [torch.from_numpy(np.stack([p[i] for p in planes]).astype(np.float32) / 255) for i in range(3)]
    views, (h, w) = len(planes), target[0].shape[-2:]
    pixels = views * h * w
    model = Lab(views, h, w, levels, up, synth, entropy, context)
    latents = list(model.latents.parameters())
    others = [p for n, p in model.named_parameters() if not n.startswith("latents")]
    opt = torch.optim.Adam([{"params": latents, "scale": latent_lr}, {"params": others, "scale": 1.0}], lr=lr)
    start, hard_from, warm_steps = time.monotonic(), round((1 - hard) * steps), round(warm * steps)
    for step in range(steps):
        # the warm fit and the rest each have a cosine of their own (as mvenc's fit and QAT phases)
        at, span = (step, warm_steps) if step < warm_steps else (step - warm_steps, steps - warm_steps)
        for g in opt.param_groups:
            g["lr"] = lr * g["scale"] * 0.5 * (1 + math.cos(math.pi * at / span))
        is_hard = step >= hard_from
        if step < warm_steps:
            ys = list(model.latents)
        elif is_hard:
            ys = [y + (torch.round(y) - y).detach() for y in model.latents]
        elif proxy == "noise":
            ys = [y + torch.rand_like(y) - 0.5 for y in model.latents]
        else:
            rate = 0.1 + 0.9 * min(1.0, at / (0.75 * span))
            ys = [torch.where(torch.rand_like(y) < rate, y + (torch.round(y) - y).detach(), y) for y in model.latents]
        pick = torch.randperm(views)[:batch] if batch else torch.arange(views)
        out = model.decode([y[pick] for y in ys])
        planes = yuv420_of(out, rgb, color)
        d = sum(wt * (p - t[pick]).square().mean() for wt, p, t in zip((6, 1, 1), planes, target, strict=True)) / 8
        loss = d
        if step >= warm_steps:
            r_in = ys if proxy == "noise" or is_hard else [y + torch.rand_like(y) - 0.5 for y in model.latents]
            loss = d + model.bits(r_in) / pixels / lmbda
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 400 == 0 or step == steps - 1:
            click.echo(
                f"step {step}: D {d.item():.6f} ({-10 * math.log10(d.item()):.2f} dB) loss {loss.item():.6f}", err=True
            )
    with torch.no_grad():
        ys = [torch.round(y) for y in model.latents]
        out = model.decode(ys)
        bits = float(model.bits(ys)) + weight_bits * model.net_params()
        psnr = []
        for wt, p, t in zip((6, 1, 1), yuv420_of(out, rgb, color), target, strict=True):
            mse = ((torch.round(p.clamp(0, 1) * 255) - t * 255).square().mean(dim=(1, 2)) / 255**2).clamp_min(1e-12)
            psnr.append(wt * (-10 * torch.log10(mse)))
        psnr_yuv = float((sum(psnr) / 8).mean())
    row = {
        "up": up, "synth": synth, "entropy": entropy, "batch": batch, "rgb": rgb, "context": context,
        "proxy": proxy, "warm": warm, "hard": hard,
        "lmbda": lmbda, "steps": steps, "lr": lr, "latent_lr": latent_lr, "levels": levels,
        "bpp": bits / pixels, "psnr_yuv": psnr_yuv,
        "latent_bits": bits - weight_bits * model.net_params(), "net_params": model.net_params(),
        "seconds": time.monotonic() - start,
    }  # fmt: skip
    click.echo(json.dumps(row))


if __name__ == "__main__":
    main()
