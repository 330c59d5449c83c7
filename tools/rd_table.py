"""Markdown tables for BENCHMARKS.md from one or more tools/rd_bench.py records.

    python tools/rd_table.py bench/rd_cpu_post_optimization_320x180.json bench/rd_cpu_4_cam_recording_320x180.json

Prints, per record, the RD points; then BD-rate / BD-PSNR of mvcodec against each anchor per sequence and
their average over the sequences (a figure that is undefined for one sequence leaves the average
undefined); then encode time, decode speed and decoder memory of mvcodec next to x265 at the points
closest in rate; and what x265 gains from coding the views in one stream. --replot redraws the plots from the records.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from bdrate import bd_psnr, bd_rate
from rd_bench import bd_figure, bd_table, fmt_bd, markdown, plot, source_name


def sequence_name(rec: dict) -> str:
    """The source's name; with the frame count and size when the tables hold other runs of the same source."""
    return rec.get("name") or source_name(rec)


def bd_rows(records: list[dict], metric: str) -> list[str]:
    key = f"bd_{metric}"
    anchors = list(records[0][key])
    lines = [
        f"| mvcodec vs ({metric.replace('_', '-').upper()}) | "
        + " | ".join(f"{sequence_name(r)} BD-rate / BD-PSNR" for r in records)
        + " | average BD-rate / BD-PSNR |",
        "|---" * (len(records) + 2) + "|",
    ]
    for a in anchors:
        cells, rates, psnrs = [], [], []
        for r in records:
            row = r[key][a]
            rates.append(row["bd_rate_pchip"])
            psnrs.append(row["bd_psnr_pchip"])
            if row["psnr_gap"]:
                gap = f" (no overlap: anchor's worst {fmt_bd(row['psnr_gap'], 'dB')})"
            elif row["psnr_overlap"] < 0.75:
                gap = f" (overlap {row['psnr_overlap']:.0%})"
            else:
                gap = ""
            cells.append(f"{fmt_bd(row['bd_rate_pchip'], '%')}{gap} / {fmt_bd(row['bd_psnr_pchip'], 'dB')}")
        avg_rate = None if None in rates else sum(rates) / len(rates)
        avg_psnr = None if None in psnrs else sum(psnrs) / len(psnrs)
        label = records[0]["runs"][a]["label"]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {fmt_bd(avg_rate, '%')} / {fmt_bd(avg_psnr, 'dB')} |")
    return lines


def multiview_rows(records: list[dict]) -> list[str]:
    """What x265 gains from the neighbouring views: each one-stream anchor against its simulcast."""
    lines = ["| sequence | x265 preset | BD-rate (PCHIP) | BD-PSNR (PCHIP) |", "|---|---|---|---|"]
    for r in records:
        for name in [n for n in r["runs"] if n.startswith("x265") and n.endswith("-mv")]:
            sim, mv = r["runs"][name[: -len("-mv")]]["points"], r["runs"][name]["points"]
            args = ([p["bpp"] for p in sim], [p["psnr_yuv"] for p in sim], [p["bpp"] for p in mv])
            args += ([p["psnr_yuv"] for p in mv],)
            cells = [fmt_bd(bd_figure(fn, *args)[0], unit) for fn, unit in ((bd_rate, "%"), (bd_psnr, "dB"))]
            cells = [c.replace("n/a", "n/a (no overlap)") for c in cells]  # the two ladders miss each other
            lines.append(f"| {sequence_name(r)} | {name.split('-')[1]} | {cells[0]} | {cells[1]} |")
    return lines


def speed_rows(records: list[dict]) -> list[str]:
    lines = [
        "| sequence | codec | setting | bpp | PSNR-YUV | encode (s) | decode (fps, all views) | decoder peak (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        anchors = [n for n in r["runs"] if n.startswith("x265") and not n.endswith("-mv")]
        for p in r["runs"]["mvcodec"]["points"]:
            rows = [("mvcodec", p)]
            for name in anchors:
                rows.append(
                    (r["runs"][name]["label"], min(r["runs"][name]["points"], key=lambda a: abs(a["bpp"] - p["bpp"])))
                )
            for label, q in rows:
                lines.append(
                    f"| {sequence_name(r)} | {label} | {q['setting']} | {q['bpp']:.4f} | {q['psnr_yuv']:.2f} | "
                    f"{q['encode_seconds']:.1f} | {q['decode_fps']:.0f} | {q['decoder_peak_mib']:.0f} |"
                )
    return lines


@click.command()
@click.argument("records", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replot", is_flag=True, help="Redraw each record's RD plot as RECORD.png (next to the JSON).")
def main(records, replot):
    recs = [json.loads(p.read_text()) for p in records]
    if replot:
        for p, r in zip(records, recs, strict=True):
            plot(r, p.with_suffix(".png"))
    names = [sequence_name(r) for r in recs]
    for r, name in zip(recs, names, strict=True):
        if names.count(name) > 1:
            r["name"] = f"{name}, {r['source']['frames']} frames, {r['source']['size']}"
    for r in recs:  # recomputed from the points, so every table uses the same tools/bdrate.py
        r["bd_psnr_yuv"], r["bd_psnr_y"] = bd_table(r["runs"], "psnr_yuv"), bd_table(r["runs"], "psnr_y")
    for r in recs:
        click.echo(f"### {sequence_name(r)}\n\nCommand: `{r['command']}`\n")
        click.echo(markdown(r) + "\n")
    click.echo("### BD-rate and BD-PSNR (PCHIP), per sequence and average\n")
    click.echo("\n".join(bd_rows(recs, "psnr_yuv")) + "\n")
    click.echo("\n".join(bd_rows(recs, "psnr_y")) + "\n")
    click.echo("### x265: all views in one stream against simulcast (PSNR-YUV)\n")
    click.echo("\n".join(multiview_rows(recs)) + "\n")
    click.echo("### Speed and memory, mvcodec and x265 at the nearest rate\n")
    click.echo("\n".join(speed_rows(recs)))


if __name__ == "__main__":
    main()
