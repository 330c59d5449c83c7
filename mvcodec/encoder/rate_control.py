"""Rate control after training (--bpp, -b): every step of a segment scaled by one factor 2^k, k found by
bisection so that the segment's tensors take its share of the target size."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from mvcodec.bitstream.headers import implied_tensors
from mvcodec.bitstream.stream import lean_payload
from mvcodec.bitstream.syntax import CHUNK_OVERHEAD
from mvcodec.bitstream.tensor import CODING_FLOAT32
from mvcodec.compress.coding import ExportedTensor, segment_message
from mvcodec.compress.qat import CompressibleModel, export_tensors

MIN_LOG2_SCALE, MAX_LOG2_SCALE = -6.0, 12.0  # steps from 1/64 to 4096 times the trained ones
BISECTIONS = 14


def tensor_bytes(exported: list[ExportedTensor], lean: bool, exact: bool = False) -> int:
    """Bytes the tensors take in the stream: TNSR chunks with their length, type and CRC, or with `lean` a
    TNSL chunk. Its message is coded unless `exact` is False: then counted as the tensors' own words, a few
    bytes a tensor more than the one message takes (each message's last word), a bound that saves coding the
    message at every bisection step."""
    tensors = [e.tensor for e in exported]
    if not lean:
        return sum(len(t.to_bytes()) + CHUNK_OVERHEAD for t in tensors)
    if exact:
        return CHUNK_OVERHEAD + len(lean_payload(tensors, segment_message(tensors)))
    coded = [t for t in tensors if t.coding != CODING_FLOAT32]
    words = sum(len(t.words) + (0 if t.mask_words is None else len(t.mask_words)) for t in coded)
    return CHUNK_OVERHEAD + sum(len(t.lean_bytes()) for t in tensors) + 4 * words


def export_for_target(model: CompressibleModel, target: int | None) -> tuple[list[ExportedTensor], float]:
    """The model's coded tensors and the step scale used: the trained steps (scale 1) without a target;
    with one, the scale 2^k that brings the tensors' bytes closest to the target without exceeding it
    (bisection on k; the size falls as the steps grow)."""
    if target is None:
        return export_tensors(model), 1.0
    size = partial(tensor_bytes, lean=implied_tensors(model.cfg))
    lo, hi = MIN_LOG2_SCALE, MAX_LOG2_SCALE
    best = export_tensors(model, 2.0**lo)
    if size(best) <= target:
        return best, 2.0**lo
    best = export_tensors(model, 2.0**hi)
    if size(best) > target:
        return best, 2.0**hi
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        trial = export_tensors(model, 2.0**mid)
        if size(trial) <= target:
            hi, best = mid, trial
        else:
            lo = mid
    return best, 2.0**hi


def fit_to_target(
    models: list[CompressibleModel],
    frames: list[int],
    target_bytes: int | None,
    overhead_of: Callable[[list[list[ExportedTensor]]], int],
) -> tuple[list[list[ExportedTensor]], list[float]]:
    """Each segment's coded tensors and step scale: the trained steps without a target; with one, each
    segment gets the target less the stream's fixed overhead (`overhead_of` the trained export), shared
    in proportion to its frames."""
    exported = [export_tensors(m) for m in models]
    scales = [1.0] * len(models)
    if target_bytes is None:
        return exported, scales
    overhead = overhead_of(exported) - sum(
        tensor_bytes(e, implied_tensors(m.cfg), exact=True) for e, m in zip(exported, models, strict=True)
    )
    for k, (model, count) in enumerate(zip(models, frames, strict=True)):
        share = int((target_bytes - overhead) * count / sum(frames))
        exported[k], scales[k] = export_for_target(model, share)
    return exported, scales
