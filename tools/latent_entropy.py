"""How much rate a better entropy model could save on a stream's context-coded latents: for each such tensor
(mode 2; mode 4: a Laplace per context; mode 5: 36 contexts with decoded neighbours; mode 6: 12, each Laplace
located at the neighbours' median), its ideal bits under
the stored models, and under models fitted to its own symbols (the side information not counted):

- `refit`: the tensor's own mode's contexts, a Gaussian per context and channel fitted to the symbols (modes
  4 and 6: a Laplace, mode 6's fitted to the symbols less their predictions);
- `checkerboard`: anchors (i + j even) as mode 2, the others also by the activity of their 4 anchor
  neighbours (a two-pass spatial context a decoder can run in parallel): 36 contexts;
- `causal`: mode 2's contexts times the activity of the left, upper-left, upper and upper-right neighbours
  (what a symbol-by-symbol decoder could use): 27 contexts;
- `phased`: model mode 5's 36 contexts (mode 2's refined by decoded neighbours in seven sub-lattices,
  bitstream_spec.md section 7.5);
- `predicted`: model mode 6's 12 contexts (without a coarser level's) and a Laplace per context located at
  the median of the decoded neighbours (bitstream_spec.md section 7.6);
- `first_apart`: mode 2's contexts, those of the first row of each run (a view's frame 0: MV-Pyramid-MC's
  intra latents, where the previous-frame context is always 0) kept apart from the other rows': 18 contexts;
- `laplace`: mode 2's contexts, a discretised Laplace per context (median, mean absolute deviation);
- `histogram`: mode 2's contexts, the symbols' own frequencies per context (a lower bound for any model
  that codes a context's symbols alike, its side information not counted).

Activity is min(|symbol|, 2), as in bitstream_spec.md section 7.2. Figures in kB (1000 bytes).
BENCHMARKS.md, issue 14, experiment 13:

    python tools/latent_entropy.py STREAM.mvinr [--segment 0] [--json OUT.json]
"""

from __future__ import annotations

import json
from dataclasses import replace

import click
import numpy as np
import torch

from mvcodec.bitstream import read_index, read_segment_tensors
from mvcodec.bitstream.tensor import CONTEXT_MODES, LAPLACE_MODES, MODEL_CONTEXT, MODEL_PHASED, MODEL_PREDICTED, NO_REF
from mvcodec.compress.context import CLAMP, NUM_CONTEXTS, context_stats
from mvcodec.compress.decoding import decode_segment, ideal_bits, tensor_contexts, tensor_predictions
from mvcodec.compress.gaussian import gaussian_bits


def gaussian_fit_bits(symbols: np.ndarray, ctx: np.ndarray, channels: int) -> float:
    """Ideal bits of the symbols under a Gaussian per (context, channel) fitted to them (context_stats)."""
    y = torch.from_numpy(symbols.astype(np.float64))
    c = torch.from_numpy(ctx).long()
    means, stds = context_stats(y, c, channels, count=int(c.max()) + 1)
    group = c * channels + torch.arange(channels).view(1, -1, 1, 1)
    return float(gaussian_bits(y, means[group].double(), stds[group].double(), y.min(), y.max()))


def laplace_cdf(x: np.ndarray, mu: float, b: float) -> np.ndarray:
    return np.where(x < mu, 0.5 * np.exp((x - mu) / b), 1 - 0.5 * np.exp(-(x - mu) / b))


def laplace_bits(symbols: np.ndarray, ctx: np.ndarray) -> float:
    """Ideal bits under a discretised Laplace per context (tails folded into the extreme symbols)."""
    total, lo, hi = 0.0, symbols.min(), symbols.max()
    for k in np.unique(ctx):
        s = symbols[ctx == k].astype(np.float64)
        mu = float(np.median(s))
        b = max(float(np.mean(np.abs(s - mu))), 0.05)
        upper = np.where(s >= hi, 1.0, laplace_cdf(s + 0.5, mu, b))
        lower = np.where(s <= lo, 0.0, laplace_cdf(s - 0.5, mu, b))
        total += float(-np.log2(np.clip(upper - lower, 1e-9, 1.0)).sum())
    return total


def histogram_bits(symbols: np.ndarray, ctx: np.ndarray) -> float:
    """Empirical entropy of the symbols in each context, times their count."""
    total = 0.0
    for k in np.unique(ctx):
        _, counts = np.unique(symbols[ctx == k], return_counts=True)
        total += float(-(counts * np.log2(counts / counts.sum())).sum())
    return total


def neighbour_activity(activity: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
    """The largest activity among the neighbours at (i - di, j - dj) inside the frame, for each (di, dj)."""
    out = np.zeros_like(activity)
    h, w = activity.shape[-2:]
    for di, dj in offsets:
        src = activity[..., max(0, -di) : h - max(0, di), max(0, -dj) : w - max(0, dj)]
        dst = out[..., max(0, di) : h - max(0, -di), max(0, dj) : w - max(0, -dj)]
        np.maximum(dst, src, out=dst)
    return out


def first_rows(shape: tuple[int, ...], period: int) -> np.ndarray:
    """1 at the elements of the first row of each run of `period` rows (all rows without runs), else 0."""
    rows = np.arange(shape[0]) % period == 0 if period else np.ones(shape[0], dtype=bool)
    return np.broadcast_to(rows.reshape(-1, *[1] * (len(shape) - 1)), shape).astype(np.int64)


def tensor_rows(t, symbols: np.ndarray, coarse: np.ndarray | None) -> dict:
    own = tensor_contexts(t, symbols, coarse)  # the tensor's own mode's (mode 5: 36)
    own_pred = tensor_predictions(t, symbols)
    as_predicted = replace(t, model_mode=MODEL_PREDICTED)
    pred = tensor_predictions(as_predicted, symbols)
    predicted_ctx = tensor_contexts(as_predicted, symbols, None)
    ctx = tensor_contexts(replace(t, model_mode=MODEL_CONTEXT), symbols, coarse)  # mode 2's, for the others
    channels = t.shape[1]
    by_channel = np.arange(channels).reshape(1, -1, 1, 1)
    activity = np.minimum(np.abs(symbols), CLAMP).astype(np.int64)
    h, w = symbols.shape[-2:]
    anchor = (np.add.outer(np.arange(h), np.arange(w)) % 2) == 0
    around = neighbour_activity(np.where(anchor, activity, 0), [(0, 1), (0, -1), (1, 0), (-1, 0)])
    causal = neighbour_activity(activity, [(0, 1), (1, 1), (1, 0), (1, -1)])
    return {
        "name": t.name,
        "shape": list(t.shape),
        "stored": ideal_bits(t, symbols, coarse) / 8e3,
        "refit": (
            laplace_bits(symbols - (0 if own_pred is None else own_pred), own * channels + by_channel)
            if t.model_mode in LAPLACE_MODES
            else gaussian_fit_bits(symbols, own, channels)
        )
        / 8e3,
        "checkerboard": gaussian_fit_bits(symbols, np.where(anchor, ctx, NUM_CONTEXTS + 3 * ctx + around), channels)
        / 8e3,
        "causal": gaussian_fit_bits(symbols, 3 * ctx + causal, channels) / 8e3,
        "phased": gaussian_fit_bits(
            symbols, tensor_contexts(replace(t, model_mode=MODEL_PHASED), symbols, coarse), channels
        )
        / 8e3,
        "predicted": laplace_bits(symbols - pred, predicted_ctx * channels + by_channel) / 8e3,
        "first_apart": gaussian_fit_bits(
            symbols, ctx + NUM_CONTEXTS * first_rows(symbols.shape, t.row_period), channels
        )
        / 8e3,
        "laplace": laplace_bits(symbols, ctx) / 8e3,
        "histogram": histogram_bits(symbols, ctx) / 8e3,
    }


COLUMNS = ("stored", "refit", "checkerboard", "causal", "phased", "predicted", "first_apart", "laplace", "histogram")


@click.command()
@click.argument("stream", type=click.Path(exists=True, dir_okay=False))
@click.option("--segment", default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the rows here.")
def main(stream, segment, json_out):
    with open(stream, "rb") as f:
        index = read_index(f)
        if not 0 <= segment < len(index.segments):
            raise click.BadParameter(f"the stream has {len(index.segments)} segments", param_hint="--segment")
        tensors = read_segment_tensors(f, index.segments[segment])
    decoded = decode_segment(tensors)
    rows = []
    for i, t in enumerate(tensors):
        if t.model_mode not in CONTEXT_MODES:
            continue
        coarse = decoded.symbols[t.coarse_ref] if t.coarse_ref != NO_REF else None
        rows.append(tensor_rows(t, decoded.symbols[i], coarse))
    if not rows:
        raise click.ClickException("no context-coded tensor (model mode 2, 4, 5 or 6) in this segment")
    total = {"name": "total", "shape": [], **{k: sum(r[k] for r in rows) for k in COLUMNS}}
    click.echo("| tensor | shape | " + " | ".join(COLUMNS) + " |")
    click.echo("|---|---|" + "---|" * len(COLUMNS))
    for r in [*rows, total]:
        shape = "x".join(map(str, r["shape"]))
        click.echo(f"| {r['name']} | {shape} | " + " | ".join(f"{r[k]:.1f}" for k in COLUMNS) + " |")
    if json_out:
        with open(json_out, "w") as f:
            json.dump({"stream": stream, "segment": segment, "unit": "kB", "rows": [*rows, total]}, f, indent=1)


if __name__ == "__main__":
    main()
