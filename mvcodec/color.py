"""YUV 4:2:0 <-> RGB at any bit depth: BT.709 / BT.601 / BT.2020 matrices, limited or full range.

Code values follow ITU-T H.273: at bit depth b, limited range is Y = (16 + 219 E'Y) * 2^(b-8) and
C = (128 + 224 E'P) * 2^(b-8); full range is Y = (2^b - 1) E'Y and C = 2^(b-1) + (2^b - 1) E'P.
RGB is float in [0, 1] (nominal; conversions do not clip unless asked).

Chroma siting (H.273 chroma_sample_loc_type):
- "left" (type 0, MPEG-2/H.264/HEVC default): chroma co-sited with even luma columns, midway
  between luma rows. Down: [1 2 1]/4 horizontally at even columns x [1 1]/2 vertically.
  Up: copy at even columns, mean of neighbours at odd columns; linear (centre) vertically.
- "center" (type 1, JPEG/MPEG-1): chroma at the centre of each 2x2 luma block. Down: 2x2 mean.
  Up: bilinear (align_corners=False).
- "top-left" (type 2, DV-PAL, Y4M's C420paldv): chroma co-sited with even luma columns and even rows.
  Down: [1 2 1]/4 at even columns x [1 2 1]/4 at even rows. Up: as "left" in both directions.
Edges repeat the last sample. Every function takes torch tensors, or numpy arrays and then returns
numpy arrays; planes may carry any leading batch dimensions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mvcodec.io.formats import Planes

# (Kr, Kb) luma coefficients.
MATRICES: dict[str, tuple[float, float]] = {
    "bt709": (0.2126, 0.0722),
    "bt601": (0.299, 0.114),
    "bt2020": (0.2627, 0.0593),
}
SITINGS = ("left", "center", "top-left")


@dataclass(frozen=True)
class ColorSpec:
    """How YUV code values relate to RGB: matrix, range and chroma siting."""

    matrix: str = "bt709"
    full_range: bool = False
    chroma_siting: str = "left"

    def __post_init__(self) -> None:
        if self.matrix not in MATRICES:
            raise ValueError(f"unknown colour matrix {self.matrix!r}; use one of {', '.join(MATRICES)}")
        if self.chroma_siting not in SITINGS:
            raise ValueError(f"unknown chroma siting {self.chroma_siting!r}; use one of {', '.join(SITINGS)}")


def _numpy_in_numpy_out(fn):
    """Let a torch function take numpy arrays (converted to float64 tensors) and return numpy arrays."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        as_np = any(isinstance(a, np.ndarray) for a in args)
        if as_np:
            args = tuple(
                torch.from_numpy(np.asarray(a, dtype=np.float64)) if isinstance(a, np.ndarray) else a for a in args
            )
        out = fn(*args, **kwargs)
        if not as_np:
            return out
        if isinstance(out, tuple):
            return tuple(o.numpy() for o in out)
        return out.numpy()

    return wrapper


def _float(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(torch.float32)


def _scales(bit_depth: int, full_range: bool) -> tuple[float, float, float, float]:
    """(luma offset, luma scale, chroma offset, chroma scale) mapping E'Y, E'P to code values."""
    if full_range:
        peak = float((1 << bit_depth) - 1)
        return 0.0, peak, float(1 << (bit_depth - 1)), peak
    k = 2.0 ** (bit_depth - 8)
    return 16.0 * k, 219.0 * k, 128.0 * k, 224.0 * k


@_numpy_in_numpy_out
def rgb_to_yuv444(rgb: torch.Tensor, bit_depth: int, spec: ColorSpec = ColorSpec()) -> torch.Tensor:
    """RGB (..., 3, H, W) in [0, 1] -> Y, Cb, Cr code values (..., 3, H, W), unrounded."""
    kr, kb = MATRICES[spec.matrix]
    r, g, b = _float(rgb).unbind(-3)
    y = kr * r + (1 - kr - kb) * g + kb * b
    pb = (b - y) / (2 * (1 - kb))
    pr = (r - y) / (2 * (1 - kr))
    yo, ys, co, cs = _scales(bit_depth, spec.full_range)
    return torch.stack((yo + ys * y, co + cs * pb, co + cs * pr), dim=-3)


@_numpy_in_numpy_out
def yuv444_to_rgb(yuv: torch.Tensor, bit_depth: int, spec: ColorSpec = ColorSpec()) -> torch.Tensor:
    """Y, Cb, Cr code values (..., 3, H, W) -> RGB (..., 3, H, W), nominally [0, 1], not clipped."""
    kr, kb = MATRICES[spec.matrix]
    yo, ys, co, cs = _scales(bit_depth, spec.full_range)
    yc, cb, cr = _float(yuv).unbind(-3)
    y = (yc - yo) / ys
    pb = (cb - co) / cs
    pr = (cr - co) / cs
    r = y + 2 * (1 - kr) * pr
    b = y + 2 * (1 - kb) * pb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    return torch.stack((r, g, b), dim=-3)


def _as_nchw(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    lead = x.shape[:-2]
    return x.reshape(-1, 1, *x.shape[-2:]), lead


@_numpy_in_numpy_out
def downsample_chroma(c: torch.Tensor, siting: str = "left") -> torch.Tensor:
    """A full-resolution chroma plane (..., H, W) -> (..., H/2, W/2) at the given siting."""
    x, lead = _as_nchw(_float(c))
    if siting == "center":
        out = F.avg_pool2d(x, 2)
    elif siting == "top-left":
        taps = x.new_tensor([1.0, 2.0, 1.0])
        kernel = (taps.view(3, 1) * taps.view(1, 3)).div_(16).view(1, 1, 3, 3)
        out = F.conv2d(F.pad(x, (1, 0, 1, 0), mode="replicate"), kernel, stride=2)
    else:
        kernel = x.new_tensor([[1.0, 2.0, 1.0], [1.0, 2.0, 1.0]]).div_(8).view(1, 1, 2, 3)
        out = F.conv2d(F.pad(x, (1, 0, 0, 0), mode="replicate"), kernel, stride=2)
    return out.reshape(*lead, *out.shape[-2:])


def _cosited_up(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Twice the samples along `dim` (-1 or -2): the sample at even positions, the mean of it and the next
    one (the last repeated) at odd positions."""
    nxt = torch.cat((x.narrow(dim, 1, x.shape[dim] - 1), x.narrow(dim, x.shape[dim] - 1, 1)), dim=dim)
    out = torch.stack((x, (x + nxt) / 2), dim=dim)
    shape = list(x.shape)
    shape[dim] *= 2
    return out.reshape(shape)


@_numpy_in_numpy_out
def upsample_chroma(c: torch.Tensor, siting: str = "left") -> torch.Tensor:
    """A 4:2:0 chroma plane (..., H/2, W/2) -> (..., H, W) at the given siting."""
    x, lead = _as_nchw(_float(c))
    h, w = x.shape[-2:]
    if siting == "center":
        out = F.interpolate(x, size=(2 * h, 2 * w), mode="bilinear", align_corners=False)
    elif siting == "top-left":
        out = _cosited_up(_cosited_up(x, -2), -1)
    else:
        out = _cosited_up(F.interpolate(x, size=(2 * h, w), mode="bilinear", align_corners=False), -1)
    return out.reshape(*lead, *out.shape[-2:])


@_numpy_in_numpy_out
def rgb_to_yuv420(
    rgb: torch.Tensor, bit_depth: int, spec: ColorSpec = ColorSpec()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RGB (..., 3, H, W) in [0, 1] -> Y (..., H, W), U, V (..., H/2, W/2) code values, unrounded."""
    y, cb, cr = rgb_to_yuv444(rgb, bit_depth, spec).unbind(-3)
    return y, downsample_chroma(cb, spec.chroma_siting), downsample_chroma(cr, spec.chroma_siting)


@_numpy_in_numpy_out
def yuv420_to_rgb(
    y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, bit_depth: int, spec: ColorSpec = ColorSpec()
) -> torch.Tensor:
    """Y (..., H, W), U, V (..., H/2, W/2) code values -> RGB (..., 3, H, W), nominally [0, 1]."""
    up = [upsample_chroma(_float(c), spec.chroma_siting) for c in (u, v)]
    return yuv444_to_rgb(torch.stack((_float(y), *up), dim=-3), bit_depth, spec)


@_numpy_in_numpy_out
def quantize(x: torch.Tensor, bit_depth: int) -> torch.Tensor:
    """Code values rounded half up (floor(x + 0.5)) and clipped to [0, 2^b - 1], still as floats."""
    return torch.floor(x + 0.5).clamp_(0, (1 << bit_depth) - 1)


def rgb_to_planes(rgb: torch.Tensor, bit_depth: int, color: ColorSpec) -> list[Planes]:
    """Network output (B, 3, H, W) -> YUV 4:2:0 code values at `bit_depth`, one Planes per frame."""
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    ys, us, vs = (
        quantize(p, bit_depth).cpu().numpy().astype(dtype) for p in rgb_to_yuv420(rgb.float(), bit_depth, color)
    )
    return [Planes(ys[i], us[i], vs[i]) for i in range(rgb.shape[0])]
