"""Encode the bundled sample (the README's first command) with each preset and print one JSON line a preset:
encode time, rate and quality. The times that `mvenc --help` and the README quote come from this
(BENCHMARKS.md, "Presets on the bundled sample"):

    python tools/preset_times.py                       # every preset of the default architecture
    python tools/preset_times.py --presets fast,medium --arch mv-pyramid

Run it alone on the machine: a second torch job running beside it slows both several times.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from mvcodec.presets import PRESETS

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data"


@click.command()
@click.option("--presets", default=",".join(PRESETS), show_default=True, help="Comma-separated preset names.")
@click.option("--arch", help="Architecture (default: mvenc's).")
@click.option("--fps", default="6", show_default=True, help="As the README's command gives it.")
def main(presets: str, arch: str | None, fps: str) -> None:
    mvenc = Path(sys.executable).with_name("mvenc")
    for preset in presets.split(","):
        with tempfile.TemporaryDirectory() as work:
            stats = Path(work) / "stats.json"
            cmd = [str(mvenc), str(SAMPLE), str(Path(work) / "s.mvinr"), "--fps", fps, "--preset", preset]
            cmd += ["--no-progress", "--stats", str(stats)] + (["--arch", arch] if arch else [])
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                raise click.ClickException(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
            s = json.loads(stats.read_text())
        row = {"preset": preset, "arch": s["arch"], "encode_seconds": round(s["encode_seconds"], 1)}
        row.update({k: round(s[k], 4) for k in ("bpp", "psnr_y", "psnr_yuv", "ssim")})
        click.echo(json.dumps(row))


if __name__ == "__main__":
    main()
