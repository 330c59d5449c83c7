"""The architecture contract: what a network must declare to be trained, coded, stored and decoded.

An architecture is one module holding a subclass of `Architecture` and its config dataclass; one line in
`mvcodec/model/registry.py` (or a call to `register`) makes every layer use it:

    class Tiny(Architecture):
        id, name, config_type = 0xF001, "tiny", TinyConfig
        def build(self, cfg): ...
        def layout(self, cfg): ...           # [ParamSpec(name, shape, Role.GRID), ...] in stream order
        def config_bytes(self, cfg, w): ...  # the header fields, written with a ByteWriter
        def parse_config(self, r, shape): ...# read back with a ByteReader, every field validated
        def size_for(self, shape, params): ...
        def macs_per_pixel(self, cfg): ...
        def describe(self, cfg): ...         # one line for mvinfo and mvenc

The network that `build` returns maps index tensors (view, frame) of shape (B,) to RGB (B, 3, height, width)
in [0, 1]; its named parameters are exactly the layout's names and shapes. A network with frame-row tensors
(ParamSpec.rows == "frame") also takes `rows` (sorted row indices): when given, those tensors hold only these
rows of axis 0, in that order (training hands it a batch's rows alone). An architecture with `chain` set
predicts along time: frame t of a view reads the frame-row tensors' rows of frames 0..t of that view, and
with `rows` it is handed all of those.

A network may also have a band path for the decoder: `band_input(view, frame)`, what the batch's frames are
synthesised from, and `band(inputs, r0, r1)`, their RGB rows r0..r1 (B, 3, r1 - r0, width). The decoder then
decodes a frame too large for its memory limit band by band (and with `band_reference`, every frame).
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from mvcodec.bitstream.syntax import ByteReader, ByteWriter


class Role(enum.Enum):
    """What the coding of a parameter tensor needs (bitstream_spec.md, section 10)."""

    CONV_WEIGHT = "conv_weight"  # (out, in, ...): prunable, a step per row x a step per column, one Gaussian
    GRID = "grid"  # (n, channels, ...): latent grids and embeddings; a step and a Gaussian per channel (axis 1)
    LATENT = "latent"  # (n, channels, ...): latents on the integer grid (unit step, their scale is learned in
    # their values, as C3's and Cool-Chic's), a Gaussian per channel
    BIAS = "bias"  # 1-d: one step and one Gaussian; not in the rate term
    ARM = "arm"  # the latents' entropy-model network (model_mode 3): the fixed step 2^-8, one Gaussian


@dataclass(frozen=True)
class ParamSpec:
    """One parameter tensor of a network: its name in the stream, its shape and its coding role."""

    name: str
    shape: tuple[int, ...]
    role: Role
    rows: str | None = None  # "frame": axis 0 is indexed by view * frames + frame (training prices a batch's rows)
    coarse: str | None = None  # a latent's coarser level (half its height and width, earlier in the layout)
    arm: str | None = None  # a latent coded by an entropy-model network (model_mode 3): its first tensor's name
    laplace: bool = False  # a latent coded under a Laplace per context (model_mode 4) rather than a Gaussian
    # a latent whose contexts add its decoded neighbours, decoded in phases (model_mode 5; with laplace,
    # model_mode 6: each Laplace also located at the neighbours' median)
    phased: bool = False
    compact: bool = False  # a phased latent's parameter pairs in the compact table (spec section 7.7)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Shape:
    """What the sequence and segment headers fix for a segment's network: views, frames, frame size."""

    views: int
    frames: int
    height: int
    width: int


@dataclass(frozen=True)
class ArchConfig:
    """Base of the architecture configs (frozen dataclasses): what the sequence and segment fix, then the
    architecture's own fields."""

    views: int
    frames: int
    height: int  # frame size the output is cropped to
    width: int

    def to_dict(self) -> dict:
        """The config as plain JSON values (checkpoints, mvinfo --json)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> Any:
        """The config of a to_dict() record; ValueError on unknown fields."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @property
    def shape(self) -> Shape:
        return Shape(self.views, self.frames, self.height, self.width)


# the colour conversion of a decoded frame (mvcodec/color.py): RGB, Y'PbPr, YCbCr and their temporaries
COLOUR_FLOATS_PER_PIXEL = 16


class Architecture:
    """Base class of the registered architectures (see the module docstring for the contract)."""

    id: ClassVar[int]  # u16 in the stream; 0 is MV-MGINR (the ARCH chunk), 0x8000-0xFFFF private use
    legacy_ids: ClassVar[tuple[int, ...]] = ()  # private-use ids it had while experimental, still decoded
    name: ClassVar[str]  # the --arch name
    config_type: ClassVar[type]
    # How the encoder's plan sizes it (mvcodec/encoder/plan.py); MV-MGINR's measured values by default.
    params_per_pixel_at_4: ClassVar[float] = 0.002  # -q 4's budget per pixel of all views and frames
    min_params_at_4: ClassVar[int] = 50_000  # -q 4's floor for small inputs (it scales with the level)
    bits_per_param: ClassVar[float] = 3.0  # file bits per parameter after compression: rate control's first guess
    lambda_at_4: ClassVar[float] = 8.0  # -q 4's lambda of L = D + R / lambda (R in bits per pixel), x2 a level
    # How it trains, where it differs from MV-MGINR's: TrainConfig fields, the preset table (None: the
    # default table of mvcodec/presets.py), and learning-rate multipliers by role.
    train_defaults: ClassVar[dict[str, Any]] = {}
    presets: ClassVar[dict[str, tuple] | None] = None
    lr_scales: ClassVar[dict[Role, float]] = {}
    sparsity: ClassVar[float | None] = None  # the fraction of conv weights its pruning phase prunes (None: 0.4)
    # at most how many times its preset's epochs a segment shorter than presets.REFERENCE_VIEW_FRAMES trains
    short_segment_scale: ClassVar[float] = 1.0
    chain: ClassVar[bool] = False  # frame t reads the frame-row tensors' rows of frames 0..t (see above)
    cpu_decode_batch: ClassVar[int] = 4  # frames a forward pass of the decoder on the CPU (mvdec --batch)
    # The network's `band` path (see the module's docstring) is the decoder's reference path, whole frames
    # included; else the decoder runs `forward` on whole frames and `band` only where they do not fit.
    band_reference: ClassVar[bool] = False
    bands: ClassVar[bool] = False  # the network has a band path

    def build(self, cfg: Any) -> nn.Module:
        """The network of a config, freshly initialised (seeded by the caller)."""
        raise NotImplementedError

    def layout(self, cfg: Any) -> list[ParamSpec]:
        """Every parameter tensor of the network, in stream order."""
        raise NotImplementedError

    def config_bytes(self, cfg: Any, w: ByteWriter) -> None:
        """Write the config's header fields."""
        raise NotImplementedError

    def parse_config(self, r: ByteReader, shape: Shape) -> Any:
        """The config of a header payload, each field checked with r.check (the caller checks r.end())."""
        raise NotImplementedError

    def size_for(self, shape: Shape, params: int) -> Any:
        """A config of about `params` parameters; InputError where none is near enough."""
        raise NotImplementedError

    def macs_per_pixel(self, cfg: Any) -> float:
        """Multiply-accumulates of the decoder's forward pass per output (luma) pixel."""
        raise NotImplementedError

    def describe(self, cfg: Any) -> str:
        """One line on the network's structure (mvinfo, mvenc)."""
        raise NotImplementedError

    def decode_floats_per_pixel(self, cfg: Any, chain: int = 1) -> float:
        """At most how many float32 values the decoder's forward pass of a whole frame, its colour conversion
        included, holds at once per output pixel; `chain`: the frames a motion chain runs through to reach it
        (architectures with `chain`). mvdec checks its memory budget with it before it decodes anything. By
        default a trace of the pass on the meta device (shapes, no data; about a second the first time): an
        architecture may give a closed form, which tests/test_decoder_limits.py holds to the trace."""
        return trace_band_floats(self, cfg, cfg.height, chain) / (cfg.height * cfg.width)

    def band_floats(self, cfg: Any, rows: int, chain: int = 1) -> float:
        """At most how many float32 values the decoder's pass of a band of `rows` output rows of a frame holds
        at once, its colour conversion included (for `rows` >= the height, or a network without a `band`
        path: the whole frame's; an architecture with `bands` gives its own, or mvdec could not size a band)."""
        return self.decode_floats_per_pixel(cfg, chain) * cfg.height * cfg.width

    def param_split(self, cfg: Any) -> dict[str, int]:
        """Parameter count by part (default: by role)."""
        split: dict[str, int] = {}
        for p in self.layout(cfg):
            split[p.role.value] = split.get(p.role.value, 0) + p.numel
        return split

    def params(self, cfg: Any) -> int:
        """Parameter count of a config."""
        return sum(p.numel for p in self.layout(cfg))

    def split_text(self, cfg: Any) -> str:
        """The parameter count and its split by part, in percent (as MV-MGINR's Table V prints it)."""
        split, total = self.param_split(cfg), self.params(cfg)
        parts = ", ".join(f"{name.replace('_', ' ')} {n / total:.2%}" for name, n in split.items())
        return f"{total} parameters: {parts}"


def trace_band_floats(arch: Architecture, cfg: Any, rows: int, chain: int = 1, batch: int = 1) -> float:
    """The peak float32 values a frame's pass of `rows` output rows (a band in the middle of the frame, or the
    whole frame) and its colour conversion (BT.709, 8 bits) hold, as the decoder runs it, traced on the meta
    device; with `chain`, of frame chain - 1 (a chain through that many)."""
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode

    from mvcodec.color import rgb_to_yuv420  # colour is decoder-side; imported on use

    class LiveBytes(TorchDispatchMode):
        """Follows the bytes of the storages that operations create while a tensor holds them, and their peak
        (on the meta device nothing is allocated; views and in-place results share their input's storage)."""

        def __init__(self):
            super().__init__()
            self.live = self.peak = 0
            self.holders: dict[int, int] = {}  # storage -> tensors holding it

        def _release(self, key: int, n: int) -> None:
            self.holders[key] -= 1
            if not self.holders[key]:
                del self.holders[key]
                self.live -= n

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    storage = t.untyped_storage()
                    key, n = storage._cdata, storage.nbytes()
                    if key not in self.holders:
                        self.live += n
                        self.peak = max(self.peak, self.live)
                    self.holders[key] = self.holders.get(key, 0) + 1
                    weakref.finalize(t, self._release, key, n)
            return out

    with torch.device("meta"):
        model = arch.build(cfg)
    model.train(False)
    view = torch.arange(batch) % cfg.views
    frame = torch.full((batch,), min(chain, cfg.frames) - 1)
    rows = min(rows, cfg.height)
    with torch.inference_mode(), LiveBytes() as live:
        if rows < cfg.height or arch.band_reference:
            r0 = (cfg.height - rows) // 2 // 2 * 2
            rgb = model.band(model.band_input(view, frame), r0, r0 + rows)
        else:
            rgb = model(view, frame)
        planes = rgb_to_yuv420(rgb, 8)
        del planes, rgb
    return live.peak / 4 / batch
