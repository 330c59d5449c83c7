"""Experiment 43 (BENCHMARKS.md, issue 14): the sizes of streams kept by tools/pyramid_sweep.py (--keep DIR) as
mvenc wrote them before (TNSC chunks, full compact tables), in one TNSL chunk with full tables, and in TNSL with
the costly pairs left out (mvenc now): the same symbols and parameters, each table re-derived from the symbols
as the encoder derives it, each stream repacked with tools/repack.py's functions and its hashes checked.

    python bench/patches/exp43_sizes.py ANCHOR.json DIR:SWEEP.jsonl [DIR:SWEEP.jsonl ...]

prints each point's sizes and the BD against the anchor's x265 medium points of each layout (the ladders from
-q 0 and from -q 1), and writes DIR_sizes3.json. The sweep's experimental architecture (MV-Pyramid-MC, motion at
level 4) is registered as pyramid_sweep registers it.
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import mvcodec.bitstream  # noqa: F401  (import order)
import mvcodec.decoder  # noqa: F401
from mvcodec.bitstream.tensor import LAPLACE_MODES, NO_REF, TABLE_COMPACT, context_count
from mvcodec.compress.coding import without_costly_pairs
from mvcodec.compress.context import (
    context_grid,
    context_laplace_stats,
    context_stats,
    phased_order,
    stored_gaussians,
)
from mvcodec.compress.decoding import decode_segment, tensor_contexts, tensor_predictions
from mvcodec.compress.range_coding import gaussian_encode

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import pyramid_sweep  # noqa: E402
from bdrate import bd_psnr, bd_rate  # noqa: E402
from repack import read_stream, repacked  # noqa: E402

LAYOUTS = ("tnsc_full", "tnsl_full", "tnsl_pruned")


def retabled(seg, prune: bool):
    """The segment with each compact table derived from its symbols (full, or without the costly pairs)."""
    decoded = decode_segment(seg.tensors)
    out = []
    for i, t in enumerate(seg.tensors):
        if t.table_format == TABLE_COMPACT:
            sym = decoded.symbols[i]
            coarse = decoded.symbols[t.coarse_ref] if t.coarse_ref != NO_REF else None
            ctx, pred = tensor_contexts(t, sym, coarse), tensor_predictions(t, sym)
            stats = context_laplace_stats if t.model_mode in LAPLACE_MODES else context_stats
            y = torch.from_numpy(sym.astype(np.float64) - (0 if pred is None else pred))
            m, s = stats(y, torch.from_numpy(ctx), t.shape[1], context_count(t.model_mode))
            m, s = stored_gaussians(t.model_mode, m, s, True)
            t = replace(t, means=m.numpy(), stds=s.numpy())
            if prune:
                m, s = without_costly_pairs(t, sym, ctx, pred)
                t = replace(t, means=m, stds=s)
            gm, gs = context_grid(t, ctx, pred)
            order = phased_order(t.shape, t.row_period)
            laplace = t.model_mode in LAPLACE_MODES
            t.words = gaussian_encode(
                sym.ravel()[order], t.sym_min, t.sym_max, gm.ravel()[order], gs.ravel()[order], laplace
            )
        out.append(t)
    return replace(seg, tensors=out)


def curve(points):
    points = sorted(points)
    return [p[0] for p in points], [p[1] for p in points]


def main() -> None:
    pyramid_sweep.variant(None, None, 0, None, flow_level=4)
    anchor = sorted(json.load(open(sys.argv[1]))["runs"]["x265-medium"]["points"], key=lambda p: p["bpp"])
    x265 = ([p["bpp"] for p in anchor], [p["psnr_yuv"] for p in anchor])
    for arg in sys.argv[2:]:
        folder, sweep = arg.split(":")
        rows = [json.loads(line) for line in open(sweep) if line.strip()]
        points = {k: [] for k in LAYOUTS}
        records = []
        for r in rows:
            index, segments = read_stream(Path(folder) / f"q{r['q']}.mvinr")
            seq = index.sequence
            pixels = seq.views * seq.frames * seq.width * seq.height
            full, pruned = [retabled(s, False) for s in segments], [retabled(s, True) for s in segments]
            size = {
                "tnsc_full": len(repacked(index, full, "tnsc")),
                "tnsl_full": len(repacked(index, full, "tnsl")),
                "tnsl_pruned": len(repacked(index, pruned, "tnsl")),
            }
            for k, n in size.items():
                points[k].append((8 * n / pixels, r["psnr_yuv"], r["q"]))
            bpp = {f"bpp_{k}": 8 * n / pixels for k, n in size.items()}
            records.append({"q": r["q"], "psnr_yuv": r["psnr_yuv"], "written": index.size, **size, **bpp})
            print(f"  {folder} q{r['q']}: written {index.size}, " + ", ".join(f"{k} {n}" for k, n in size.items()))
        for low in (0, 1):
            bd = []
            for k in LAYOUTS:
                mine = curve([p[:2] for p in points[k] if p[2] >= low])
                bd.append(f"{k} {bd_psnr(*x265, *mine, 'pchip'):+.2f} dB / {bd_rate(*x265, *mine, 'pchip'):+.1f}%")
            print(f"{folder} -q {low} to 6: " + ", ".join(bd), flush=True)
        json.dump(records, open(f"{folder}_sizes3.json", "w"), indent=1)


if __name__ == "__main__":
    main()
