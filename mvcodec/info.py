"""What is in a stream (mvinfo): headers, rate, model, chunks, per-tensor coded and ideal bits, hashes."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from mvcodec.bitstream import parameter_hash, read_index, read_segment_tensors
from mvcodec.bitstream.syntax import CHUNK_OVERHEAD, FILE_HEADER_BYTES
from mvcodec.bitstream.tensor import CODING_FLOAT32, CodedTensor
from mvcodec.compress.decoding import segment_ideal_bits, shared_message
from mvcodec.decoder import decode_segment, segment_needs, size_text
from mvcodec.errors import ResourceLimit
from mvcodec.io.formats import format_fps
from mvcodec.metrics import bits_per_pixel, kbps
from mvcodec.model.registry import arch_of


def coded_bits(t: CodedTensor) -> int | None:
    """Bits the tensor's coded data takes in the stream: range-coded words (symbols and mask), or floats; None
    where its symbols are in its segment's one message (TNSL), which has no per-tensor share."""
    if t.coding == CODING_FLOAT32:
        return 32 * t.numel
    if t.message is not None:
        return None
    return 32 * (len(t.words) + (len(t.mask_words) if t.mask_words is not None else 0))


def message_bits(tensors: list[CodedTensor]) -> int:
    """Bits of a TNSL segment's one range-coded message (0 for a segment of tensor chunks)."""
    message = shared_message(tensors)
    return 0 if message is None else 32 * len(message)


def stream_report(path: Path, max_memory: int | None = None, available: bool = False) -> dict:
    """Everything mvinfo shows, as a JSON-ready dict; checks CRCs and the parameter hashes. A segment whose
    parameters would need more than `max_memory` bytes to decode is refused (ResourceLimit) before any is
    decoded (`available`: that is the memory the machine has)."""
    with open(path, "rb") as f:
        index = read_index(f)
        seq = index.sequence
        needs = [segment_needs(index, k, arch_of(seg.config).cpu_decode_batch) for k, seg in enumerate(index.segments)]
        # the least: one frame a pass in bands of two rows, where the network decodes in bands
        least = [
            segment_needs(index, k, 1, rows=2 if arch_of(seg.config).bands else None)
            for k, seg in enumerate(index.segments)
        ]
        for k, seg in enumerate(index.segments):
            host = needs[k].host
            if max_memory and host > max_memory:
                where = (
                    f"the {size_text(max_memory)} available" if available else f"--max-memory {size_text(max_memory)}"
                )
                raise ResourceLimit(
                    f"segment {k}'s {arch_of(seg.config).params(seg.config)} parameters need about {size_text(host)} "
                    f"to decode, more than {where}; raise --max-memory (0: no limit)"
                )
        segments = []
        for k, seg in enumerate(index.segments):
            tensors = read_segment_tensors(f, seg)
            decoded = decode_segment(tensors, k)
            arrays = decoded.values
            ideal = segment_ideal_bits(tensors, decoded.symbols, decoded.masks)
            digest = parameter_hash(arrays)
            arch = arch_of(seg.config)
            segments.append(
                {
                    "first_frame": seg.header.first_frame,
                    "frames": seg.header.frames,
                    "arch": arch.name,
                    "arch_id": arch.id,
                    "model": seg.config.to_dict(),
                    "description": arch.describe(seg.config),
                    "macs_per_pixel": arch.macs_per_pixel(seg.config),
                    "macs_per_frame": needs[k].macs_per_frame,
                    "decode_batch": arch.cpu_decode_batch,
                    "decode_memory": needs[k].memory,
                    "decode_memory_least": least[k].memory,
                    "decode_bands": arch.bands,  # whether the least is in bands of rows (else one whole frame)
                    "params": arch.params(seg.config),
                    "param_split": arch.param_split(seg.config),
                    "param_hash": seg.digest.hex(),
                    "hash_ok": digest == seg.digest,
                    "message_bits": message_bits(tensors),
                    "tensors": [
                        {
                            "name": t.name,
                            "shape": list(t.shape),
                            "coding": "float32" if t.coding == CODING_FLOAT32 else "quantised",
                            "symbols": t.numel,
                            "coded_bits": coded_bits(t),
                            "ideal_bits": round(bits, 1),
                            "chunk_bytes": None if ref is None else ref.total_bytes,
                        }
                        for t, bits, ref in zip(
                            tensors, ideal, [None] * len(tensors) if seg.lean else seg.tensors, strict=True
                        )
                    ],
                }
            )
    pixels = seq.views * seq.frames * seq.width * seq.height
    coded = sum(s["message_bits"] + sum(t["coded_bits"] or 0 for t in s["tensors"]) for s in segments)
    ideal_total = sum(t["ideal_bits"] for s in segments for t in s["tensors"])
    return {
        "version": f"{index.version[0]}.{index.version[1]}",
        "views": seq.views,
        "view_names": list(seq.view_names),
        "frames": seq.frames,
        "width": seq.width,
        "height": seq.height,
        "pix_fmt": seq.pix_fmt.name,
        "bit_depth": seq.bit_depth,
        "color": {"matrix": seq.color.matrix, "full_range": seq.color.full_range, "siting": seq.color.chroma_siting},
        "fps": float(seq.fps),
        "fps_fraction": f"{seq.fps.numerator}/{seq.fps.denominator}",
        "bytes": index.size,
        "bpp": bits_per_pixel(index.size, seq.views, seq.frames, seq.width, seq.height),
        "kbps": kbps(index.size, seq.frames, float(seq.fps)),
        "params": sum(s["params"] for s in segments),
        "param_hash": ",".join(s["param_hash"] for s in segments),
        "hash_ok": all(s["hash_ok"] for s in segments),
        "coded_bits": coded,
        "ideal_bits": round(ideal_total, 1),
        "side_bytes": index.size - coded // 8,
        "side_share": (index.size - coded / 8) / index.size,
        "header_bytes": FILE_HEADER_BYTES,
        "chunks": [{"type": c.type, "bytes": c.length + CHUNK_OVERHEAD} for c in index.chunks],
        "segments": segments,
        "encoder_info": index.info,
        "pixels": pixels,
        "decode_memory": max(s["decode_memory"] for s in segments),
    }


def report_lines(r: dict) -> list[str]:
    """mvinfo's text output."""
    lines = [
        f"version   {r['version']}",
        f"views     {r['views']} ({', '.join(r['view_names'])})",
        f"frames    {r['frames']} in {len(r['segments'])} segment(s)",
        f"size      {r['width']}x{r['height']} {r['pix_fmt']} ({r['color']['matrix']}, "
        f"{'full' if r['color']['full_range'] else 'limited'} range, chroma {r['color']['siting']})",
        f"fps       {format_fps(Fraction(r['fps_fraction']))}",
        f"rate      {r['bytes']} bytes, {r['bpp']:.5f} bpp, {r['kbps']:.2f} kbps",
        f"params    {r['params']}",
        f"coded     {r['coded_bits']} bits of tensor data, {r['ideal_bits']:.0f} ideal "
        f"({100 * (r['coded_bits'] / r['ideal_bits'] - 1) if r['ideal_bits'] else 0:+.2f}%); "
        f"side information {100 * r['side_share']:.1f}% of the file",
        f"hash      {r['param_hash']} ({'verified' if r['hash_ok'] else 'MISMATCH'})",
    ]
    counts: dict[str, list[int]] = {}
    for c in r["chunks"]:
        counts.setdefault(c["type"], [0, 0])
        counts[c["type"]][0] += 1
        counts[c["type"]][1] += c["bytes"]
    lines.append("chunks    " + ", ".join(f"{t} x{n} {b} B" for t, (n, b) in counts.items()))
    for k, s in enumerate(r["segments"]):
        lines.append(
            f"segment {k}: frames {s['first_frame']}-{s['first_frame'] + s['frames'] - 1}, {s['arch']}, "
            f"{s['params']} params, {s['macs_per_pixel']:.0f} MACs/pixel, {s['description']}"
        )
        lines.append(
            f"  decoding needs about {size_text(s['decode_memory'])} on the CPU ({s['decode_batch']} frame"
            f"{'s' if s['decode_batch'] > 1 else ''} a pass; at least {size_text(s['decode_memory_least'])}, "
            f"{'in bands of rows' if s['decode_bands'] else 'one whole frame a pass'}) and "
            f"{s['macs_per_frame'] / 1e6:.1f} M MACs a frame"
        )
        lines.append(f"  {'tensor':<22} {'shape':<18} {'symbols':>9} {'coded bits':>11} {'ideal bits':>11}")
        for t in s["tensors"]:
            shape = "x".join(map(str, t["shape"]))
            coded = "in message" if t["coded_bits"] is None else t["coded_bits"]
            lines.append(f"  {t['name']:<22} {shape:<18} {t['symbols']:>9} {coded:>11} {t['ideal_bits']:>11.0f}")
        if s["message_bits"]:
            lines.append(f"  {'message (TNSL)':<22} {'':<18} {'':>9} {s['message_bits']:>11}")
    if r["encoder_info"]:
        info = r["encoder_info"]
        said = f"{info.get('encoder', '?')}: {info.get('command', '')}"
        lines.append("encoder   " + "".join(c if c.isprintable() else "?" for c in said))
        filters = info.get("source_filters")
        if isinstance(filters, dict) and filters:  # untrusted text: shown without control characters
            shown = ", ".join(f"{k} {v}" for k, v in filters.items())
            lines.append("source    " + "".join(c if c.isprintable() else "?" for c in shown) + " (as read by mvenc)")
    return lines
