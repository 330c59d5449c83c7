"""Explicit motion masks: Farneback optical flow between neighbouring frames of each view (OpenCV).

Flow is computed on the luma plane scaled down so that its longer side is at most MAX_SIDE pixels.
The mask of frame t is the flow magnitude between frames t-1 and t (frame 0 uses 0 and 1), divided by
the view's 99.5th percentile magnitude and clipped to [0, 1]: higher = more motion. Masks are kept
(and cached) at that reduced size as uint8 and upsampled bilinearly per training batch.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from mvcodec.device import cv2_threads
from mvcodec.fsutil import atomic_write
from mvcodec.io import MultiViewSource
from mvcodec.progress import Progress

MAX_SIDE = 320
_FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def mask_size(height: int, width: int) -> tuple[int, int]:
    """(rows, columns) at which masks are computed for a frame size."""
    scale = min(1.0, MAX_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _luma8(source: MultiViewSource, view: int, t: int, size: tuple[int, int]) -> np.ndarray:
    y = source.read(view, t).y.astype(np.float32) / (1 << (source.fmt.bit_depth - 8))
    return np.clip(cv2.resize(y, size[::-1], interpolation=cv2.INTER_AREA), 0, 255).astype(np.uint8)


def view_masks(source: MultiViewSource, view: int) -> np.ndarray:
    """Motion masks (frames, h, w) in [0, 1] as float32 for one view."""
    size = mask_size(source.fmt.height, source.fmt.width)
    n = source.num_frames
    if n < 2:
        return np.zeros((n, *size), np.float32)
    lumas = [_luma8(source, view, t, size) for t in range(n)]
    mags = []
    for t in range(n):
        a, b = (lumas[0], lumas[1]) if t == 0 else (lumas[t - 1], lumas[t])
        flow = cv2.calcOpticalFlowFarneback(a, b, None, **_FARNEBACK)
        mags.append(np.hypot(flow[..., 0], flow[..., 1]))
    mags = np.stack(mags)
    scale = np.percentile(mags, 99.5)
    return np.clip(mags / scale, 0, 1).astype(np.float32) if scale > 0 else np.zeros_like(mags)


def backward_flow(luma: np.ndarray, bit_depth: int) -> np.ndarray:
    """Dense backward optical flow (DIS, OpenCV's medium preset) of a view's frames (frames, h, w): for
    frame t, the displacement (x, y) in pixels at which each of its pixels is found in frame t - 1
    (frames, h, w, 2) float32, zero for frame 0."""
    y8 = np.clip(luma.astype(np.float32) / (1 << (bit_depth - 8)), 0, 255).astype(np.uint8)
    out = np.zeros((*y8.shape, 2), np.float32)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    for t in range(1, len(y8)):
        out[t] = dis.calc(y8[t], y8[t - 1], None)
    return out


def source_fingerprint(source: MultiViewSource) -> str:
    """A short hash of the source's description and a few of its samples (for caches and resumes)."""
    h = hashlib.sha256(json.dumps(source.describe(), sort_keys=True).encode())
    for v in range(source.num_views):
        for t in sorted({0, source.num_frames - 1}):
            h.update(source.read(v, t).y[::7, ::7].tobytes())
    return h.hexdigest()[:16]


def motion_masks(
    source: MultiViewSource, cache: Path | None = None, progress: bool = True, key: str | None = None
) -> np.ndarray:
    """Masks (views, frames, h, w) as uint8 (255 = most motion), computed with all cores or read from cache.

    key: the source's fingerprint where the caller has it already (computing it reads every view).
    """
    key = key or source_fingerprint(source)
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return z["masks"]
    bar = Progress(source.num_views, "motion masks", "views", enabled=progress)
    cv2_threads()
    workers = min(source.num_views, torch.get_num_threads())  # --threads
    # OpenCV releases the GIL inside Farneback; separate readers keep container decoding per view.
    with ThreadPoolExecutor(workers) as pool:
        out = []
        for m in pool.map(lambda v: view_masks(source, v), range(source.num_views)):
            out.append(np.rint(m * 255).astype(np.uint8))
            bar.update()
    bar.close()
    masks = np.stack(out)
    if cache is not None:
        with atomic_write(cache) as f:
            np.savez(f, key=np.array(key), masks=masks)
    return masks
